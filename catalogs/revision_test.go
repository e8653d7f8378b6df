package catalogs

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herdcm/herd/testkit"
)

// gitRepo makes a git repository in a fresh directory and returns it with
// a function running git there.
func gitRepo(t *testing.T) (string, func(args ...string) string) {
	t.Helper()
	testkit.NeedTools(t, "git")
	dir := t.TempDir()
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false"}, args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v: %s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	run("init", "-q", "-b", "main")
	return dir, run
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for rel, data := range files {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestLoadRevision loads a site kept in a sub-directory of a real git
// repository at two commits, with an uncommitted edit in the work tree:
// each revision gives its own content, the version is the full commit id,
// static files stay readable for diffs, and nothing is left in the
// temporary directory. Not parallel: it points TMPDIR at its own
// directory to see what LoadRevision leaves there.
func TestLoadRevision(t *testing.T) {
	repo, git := gitRepo(t)
	site := filepath.Join(repo, "ops", "site")
	writeFiles(t, site, map[string]string{
		"nodes.toml":     "[[node]]\nroles = [\"web\"]\n",
		"roles/web.toml": "[[package]]\nname = \"nginx\"\nensure = \"1.24\"\n\n[[file]]\npath = \"/etc/motd\"\nsource = \"motd\"\n",
		"files/motd":     "one\n",
	})
	writeFiles(t, repo, map[string]string{"README": "not the site\n"})
	git("add", ".")
	git("commit", "-q", "-m", "one")
	first := git("rev-parse", "HEAD")
	writeFiles(t, site, map[string]string{
		"roles/web.toml": "[[package]]\nname = \"nginx\"\nensure = \"1.26\"\n\n[[file]]\npath = \"/etc/motd\"\nsource = \"motd\"\n",
		"files/motd":     "two\n",
	})
	git("commit", "-q", "-am", "two")
	second := git("rev-parse", "HEAD")
	// Uncommitted: not in any revision.
	writeFiles(t, site, map[string]string{"files/motd": "three\n"})

	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	for _, tt := range []struct {
		rev, commit, ensure, motd string
	}{
		{"HEAD~1", first, "1.24", "one\n"},
		{first[:10], first, "1.24", "one\n"},
		{"main", second, "1.26", "two\n"},
		{"HEAD", second, "1.26", "two\n"},
	} {
		s, err := LoadRevision(context.Background(), site, tt.rev, LoadOptions{})
		if err != nil {
			t.Fatalf("LoadRevision(%s): %v", tt.rev, err)
		}
		if s.Version != tt.commit || s.Dir != "" {
			t.Errorf("LoadRevision(%s): Version %q, Dir %q; want %q and no directory", tt.rev, s.Version, s.Dir, tt.commit)
		}
		c, err := s.Compile("web-01", nil)
		if err != nil {
			t.Fatalf("Compile at %s: %v", tt.rev, err)
		}
		nginx, _ := c.Resource("package:nginx")
		motd, _ := c.Resource("file:/etc/motd")
		if nginx.String("ensure") != tt.ensure {
			t.Errorf("at %s: nginx ensure = %q, want %q", tt.rev, nginx.String("ensure"), tt.ensure)
		}
		if b, ok := s.FileContent(motd.String("digest")); !ok || string(b) != tt.motd {
			t.Errorf("at %s: FileContent(motd) = %q, %v; want %q", tt.rev, b, ok, tt.motd)
		}
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("LoadRevision left %d entries in TMPDIR (first %s)", len(left), left[0].Name())
	}

	for _, rev := range []string{"", "-h", "--output=/tmp/x", "nope", "HEAD~5", "main\nHEAD"} {
		if _, err := LoadRevision(context.Background(), site, rev, LoadOptions{}); err == nil {
			t.Errorf("LoadRevision(%q) = nil error, want one", rev)
		}
	}
	// A revision from before the site existed.
	git("commit", "-q", "--allow-empty", "-m", "empty")
	writeFiles(t, repo, map[string]string{"other/x": "x"})
	if _, err := LoadRevision(context.Background(), site, "HEAD", LoadOptions{}); err != nil {
		t.Errorf("LoadRevision(HEAD) = %v", err)
	}
	if _, err := LoadRevision(context.Background(), filepath.Join(repo, "other"), "HEAD", LoadOptions{}); err == nil || !strings.Contains(err.Error(), "has no other/: the site did not exist yet") {
		t.Errorf("LoadRevision of a directory not in HEAD = %v, want 'the site did not exist yet'", err)
	}
	if _, err := LoadRevision(context.Background(), t.TempDir(), "HEAD", LoadOptions{}); err == nil || !strings.Contains(err.Error(), "not in a git work tree") {
		t.Errorf("LoadRevision outside git = %v, want 'not in a git work tree'", err)
	}
}

// TestLoadRevisionLinkOut: a committed link leading out of the tree comes
// out of the archive as a link, and Load refuses it by name.
func TestLoadRevisionLinkOut(t *testing.T) {
	t.Parallel()
	repo, git := gitRepo(t)
	secret := filepath.Join(t.TempDir(), "secret")
	writeFiles(t, filepath.Dir(secret), map[string]string{"secret": "ca key"})
	writeFiles(t, repo, map[string]string{
		"nodes.toml":     "[[node]]\nroles = [\"web\"]\n",
		"roles/web.toml": "[[file]]\npath = \"/etc/k\"\nsource = \"key\"\n",
	})
	if err := os.MkdirAll(filepath.Join(repo, "files"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, filepath.Join(repo, "files", "key")); err != nil {
		t.Fatal(err)
	}
	git("add", ".")
	git("commit", "-q", "-m", "link")
	_, err := LoadRevision(context.Background(), repo, "HEAD", LoadOptions{})
	var ds Diagnostics
	if err == nil || !errors.As(err, &ds) || !strings.Contains(err.Error(), "files/key: reading the site: not a regular file: a symbolic link") {
		t.Fatalf("LoadRevision with a link out = %v, want the link refused as a diagnostic", err)
	}
}

// TestExtractTarHostile: entries a git archive never holds but a crafted
// stream might are refused, and nothing is written outside the directory.
func TestExtractTarHostile(t *testing.T) {
	t.Parallel()
	type entry struct {
		name, link string
		typ        byte
		data       string
	}
	small := siteLimits{source: 1 << 10, static: 16, total: 40, files: 5}
	tests := []struct {
		name    string
		entries []entry
		want    string
	}{
		{"dot-dot", []entry{{name: "../evil", typ: tar.TypeReg, data: "x"}}, `"../evil": not a plain relative path`},
		{"dot-dot inside", []entry{{name: "a/../../evil", typ: tar.TypeReg, data: "x"}}, "not a plain relative path"},
		{"absolute", []entry{{name: "/etc/evil", typ: tar.TypeReg, data: "x"}}, "not a plain relative path"},
		{"through a link", []entry{{name: "out", link: "OUTSIDE", typ: tar.TypeSymlink}, {name: "out/evil", typ: tar.TypeReg, data: "x"}}, "archive entry out/evil"},
		{"onto a link", []entry{{name: "f", link: "OUTSIDE/evil", typ: tar.TypeSymlink}, {name: "f", typ: tar.TypeReg, data: "x"}}, "archive entry f"},
		{"hard link", []entry{{name: "h", link: "/etc/passwd", typ: tar.TypeLink}}, `archive entry h: type "1"`},
		{"device", []entry{{name: "d", typ: tar.TypeChar}}, `archive entry d: type "3"`},
		{"fifo", []entry{{name: "p", typ: tar.TypeFifo}}, `type "6"`},
		{"too big", []entry{{name: "big", typ: tar.TypeReg, data: strings.Repeat("x", 17)}}, "17 bytes, more than the 16 bytes"},
		{"too much", []entry{{name: "a", typ: tar.TypeReg, data: strings.Repeat("x", 16)}, {name: "b", typ: tar.TypeReg, data: strings.Repeat("x", 16)}, {name: "c", typ: tar.TypeReg, data: strings.Repeat("x", 16)}}, "more than 40 bytes"},
		{"too many", []entry{{name: "a", typ: tar.TypeDir}, {name: "b", typ: tar.TypeDir}, {name: "c", typ: tar.TypeDir}, {name: "d", typ: tar.TypeDir}, {name: "e", typ: tar.TypeDir}, {name: "f", typ: tar.TypeDir}}, "more than 5 files"},
		{"twice", []entry{{name: "a", typ: tar.TypeReg, data: "x"}, {name: "a", typ: tar.TypeReg, data: "y"}}, "archive entry a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			outside := t.TempDir()
			var buf bytes.Buffer
			tw := tar.NewWriter(&buf)
			for _, e := range tt.entries {
				link := strings.ReplaceAll(e.link, "OUTSIDE", outside)
				hdr := &tar.Header{Name: e.name, Linkname: link, Typeflag: e.typ, Mode: 0o644, Size: int64(len(e.data))}
				if err := tw.WriteHeader(hdr); err != nil {
					t.Fatal(err)
				}
				if _, err := tw.Write([]byte(e.data)); err != nil {
					t.Fatal(err)
				}
			}
			tw.Close()
			err := extractTar(&buf, t.TempDir(), small)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("extractTar = %v, want an error containing %q", err, tt.want)
			}
			if left, _ := os.ReadDir(outside); len(left) != 0 {
				t.Errorf("extractTar wrote %s outside its directory", left[0].Name())
			}
		})
	}
}
