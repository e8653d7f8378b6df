package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/herdcm/herd/testkit"
)

// TestApplySummary runs `herd apply` into a sandbox root and reads its
// summary: a git checkout is labelled by its commit (masterless too, not
// by a content digest; an uncommitted edit says +dirty), a plain directory
// by its digest, and a run with a failure says it did not converge and
// names the failed resource's source line and its error.
func TestApplySummary(t *testing.T) {
	t.Parallel()
	testkit.NeedTools(t, "git")
	files := map[string]string{
		"nodes.toml":   "[[node]]\nroles = [\"r\"]\n",
		"roles/r.toml": "[[file]]\npath = \"/motd\"\ncontent = \"hello\\n\"\n",
	}
	site := testkit.WriteSite(t, files)
	plain := testkit.WriteSite(t, files)
	git := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-C", site, "-c", "user.name=t", "-c", "user.email=t@example.com"}, args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	git("init", "-q")
	git("add", ".")
	git("commit", "-qm", "site")
	commit := git("rev-parse", "HEAD")

	root := t.TempDir()
	out, stderr, code := herd(t, "", "apply", "--site", site, "--root", root, "--node", "n1")
	if code != 2 {
		t.Fatalf("apply exited %d:\n%s%s", code, out, stderr)
	}
	if want := regexp.MustCompile(`(?m)^converged n1 in [0-9.]+(µs|ms|s): 1 resources, 0 in sync, 1 changed, 0 failed, 0 skipped \(site ` + commit[:12] + `, run \S+\)$`); !want.MatchString(out) {
		t.Errorf("apply of a git site printed:\n%s\nwant a line matching %s", out, want)
	}

	out, _, _ = herd(t, "", "apply", "--site", site, "--root", root, "--node", "n1", "--json")
	var report struct{ Version string }
	if err := json.Unmarshal([]byte(out), &report); err != nil || report.Version != commit {
		t.Errorf("apply --json of a git site: version %q (%v), want the commit %s", report.Version, err, commit)
	}

	if err := os.WriteFile(filepath.Join(site, "roles/r.toml"), []byte("[[file]]\npath = \"/motd\"\ncontent = \"edited\\n\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _, _ = herd(t, "", "apply", "--site", site, "--root", root, "--node", "n1")
	if !strings.Contains(out, "(site "+commit[:12]+"+dirty.") {
		t.Errorf("apply of an edited git site printed:\n%s\nwant the site labelled %s+dirty.…", out, commit[:12])
	}

	out, _, _ = herd(t, "", "apply", "--site", plain, "--root", t.TempDir(), "--node", "n1")
	if !regexp.MustCompile(`\(site sha256:[0-9a-f]{12}, run`).MatchString(out) {
		t.Errorf("apply of a plain directory printed:\n%s\nwant the site labelled by its digest", out)
	}

	failing := testkit.WriteSite(t, map[string]string{
		"nodes.toml": "[[node]]\nroles = [\"r\"]\n",
		"roles/r.toml": `
[[exec]]
name = "boom"
command = ["/bin/sh", "-c", "echo broken >&2; exit 3"]

[[file]]
path = "/after"
content = "x"
require = ["exec:boom"]
`,
	})
	out, stderr, code = herd(t, "", "apply", "--site", failing, "--root", t.TempDir(), "--node", "n1")
	if code != 4 {
		t.Fatalf("failing apply exited %d, want 4:\n%s%s", code, out, stderr)
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^did not converge n1 in \S+: 2 resources, 0 in sync, 0 changed, 1 failed, 1 skipped `),
		regexp.MustCompile(`(?m)^  failed exec:boom \(roles/r\.toml:2\)\n      \S.*exited 3`),
	} {
		if !want.MatchString(out) {
			t.Errorf("failing apply printed:\n%s\nwant a match for %s", out, want)
		}
	}
	if strings.Contains(out, "\nconverged") {
		t.Errorf("a failing run claims it converged:\n%s", out)
	}
}
