package agent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herdcm/herd/testkit"
)

// TestSiteVersionLabel: a masterless site in a git work tree is labelled
// by its HEAD commit, and the label follows HEAD across commits (the
// remembered label is keyed by HEAD, so a commit is never shown stale),
// in a linked work tree too; a plain directory keeps its content digest.
func TestSiteVersionLabel(t *testing.T) {
	t.Parallel()
	testkit.NeedTools(t, "git")
	repo := t.TempDir()
	git := func(dir string, args ...string) string {
		t.Helper()
		return testkit.Git(t, dir, args...)
	}
	write := func(dir, body string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, "nodes.toml"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	git(repo, "init", "-q")
	write(repo, "# one\n")
	git(repo, "add", ".")
	git(repo, "commit", "-qm", "one")
	first := git(repo, "rev-parse", "HEAD")

	var v siteVersions
	ctx := context.Background()
	digest := "sha256:" + strings.Repeat("a", 64)
	for range 2 {
		if got := v.label(ctx, repo, digest); got != first {
			t.Fatalf("label of a clean checkout = %q, want %s", got, first)
		}
	}
	// A new commit of the same content: the same content digest, another
	// commit.
	git(repo, "commit", "-q", "--allow-empty", "-m", "two")
	second := git(repo, "rev-parse", "HEAD")
	if got := v.label(ctx, repo, digest); got != second {
		t.Errorf("label after a commit = %q, want the new commit %s", got, second)
	}
	write(repo, "# edited\n")
	if got := v.label(ctx, repo, "sha256:"+strings.Repeat("b", 64)); got != second+"+dirty."+strings.Repeat("b", 12) {
		t.Errorf("label of an edited checkout = %q, want %s+dirty.bbbbbbbbbbbb", got, second)
	}

	linked := filepath.Join(t.TempDir(), "linked")
	git(repo, "worktree", "add", "-q", "--detach", linked, first)
	if got := v.label(ctx, linked, digest); got != first {
		t.Errorf("label of a linked work tree at %s = %q", first, got)
	}

	plain := t.TempDir()
	if got := v.label(ctx, plain, digest); got != digest {
		t.Errorf("label of a plain directory = %q, want its digest", got)
	}
}
