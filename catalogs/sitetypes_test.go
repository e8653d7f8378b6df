package catalogs

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/herdcm/herd/facts"
)

// compileFiles writes a site (slash path → content) and compiles node
// web-01 from it.
func compileFiles(t *testing.T, files map[string]string) (*Catalog, error) {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return compileDir(t, dir)
}

func compileDir(t *testing.T, dir string) (*Catalog, error) {
	t.Helper()
	s, err := Load(context.Background(), dir, LoadOptions{Version: "test"})
	if err != nil {
		return nil, err
	}
	return s.Compile("web-01", facts.Facts{})
}

// TestImplicitEdgesOfNewTypes: an authorized key waits for its managed
// user, as a file waits for its owner; a package installed by name waits
// for every apt source (one from a site .deb for none).
func TestImplicitEdgesOfNewTypes(t *testing.T) {
	t.Parallel()
	cat, err := compileFiles(t, map[string]string{
		"nodes.toml":        "[[node]]\nroles = [\"r\"]\n",
		"files/vendor.asc":  "-----BEGIN PGP PUBLIC KEY BLOCK-----\n",
		"files/local_1.deb": "not really a deb",
		"roles/r.toml": `
[[user]]
name = "alice"

[[apt_repository]]
name = "vendor"
uris = ["https://deb.example.com/debian"]
suites = ["bookworm"]
components = ["main"]
key = "vendor.asc"

[[apt_repository]]
name = "local"
uris = ["file:/srv/repo"]
suites = ["./"]

[[package]]
name = "nginx"

[[package]]
name = "local"
source = "local_1.deb"

[[authorized_key]]
name = "alice@laptop"
user = "alice"
key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"

[[file]]
path = "/etc/cron.d"
ensure = "directory"

[[file]]
path = "/etc/sysctl.d"
ensure = "directory"

[[file]]
path = "/etc/apt/keyrings"
ensure = "directory"

[[cron]]
name = "cleanup"
schedule = "@daily"
command = "/bin/true"

[[sysctl]]
name = "vm.swappiness"
value = 10
`,
	})
	if err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string][]string{
		"authorized_key:alice@laptop": {"user:alice"},
		"package:nginx":               {"apt_repository:local", "apt_repository:vendor"},
		"package:local":               nil,
		// A job, a parameter and a source wait for the managed
		// directory they write in.
		"cron:cleanup":          {"file:/etc/cron.d"},
		"sysctl:vm.swappiness":  {"file:/etc/sysctl.d"},
		"apt_repository:vendor": {"file:/etc/apt/keyrings"},
	} {
		r, ok := cat.Resource(id)
		if !ok {
			t.Fatalf("no %s in the catalog", id)
		}
		if !slices.Equal(r.Require, want) {
			t.Errorf("%s requires %v, want %v", id, r.Require, want)
		}
	}
	// The key ships by digest like any static file.
	r, _ := cat.Resource("apt_repository:vendor")
	if r.String("key") != "files/vendor.asc" || r.String("key_digest") != Digest([]byte("-----BEGIN PGP PUBLIC KEY BLOCK-----\n")) {
		t.Errorf("apt_repository:vendor's key = %q %q", r.String("key"), r.String("key_digest"))
	}
	if !slices.ContainsFunc(cat.Files, func(f FileRef) bool { return f.Path == "files/vendor.asc" }) {
		t.Errorf("the catalog does not ship the key: %+v", cat.Files)
	}
}

// writeTree writes files (slash path → content) into dir; a path in execs
// is made executable.
func writeTree(t *testing.T, dir string, files map[string]string, execs ...string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o644)
		if slices.Contains(execs, name) {
			mode = 0o755
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSourceDirectory: a file whose source is a directory of the site
// becomes the directory and one resource per file and directory below,
// each file shipped by digest with the site's executable bit (or mode),
// each directory with dir_mode and purge; what waits for the top waits for
// the whole tree, and what the top notifies each file notifies. The
// catalog is the same bytes on every compile.
func TestSourceDirectory(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{
		"nodes.toml":              "[[node]]\nroles = [\"r\"]\n",
		"files/app/bin/run":       "#!/bin/sh\n",
		"files/app/conf/app.conf": "x = 1\n",
		"files/app/README":        "read me\n",
		"files/other":             "not in the tree\n",
		"roles/r.toml": `
[[file]]
path = "/opt/app"
source = "files/app/"
dir_mode = "0750"
owner = "root"
purge = true
notify = ["service:app"]

[[file]]
path = "/opt/app2"
source = "app"
recurse = true
mode = "0600"

[[service]]
name = "app"
run = ["/opt/app/bin/run"]
require = ["file:/opt/app"]
`,
	}, "files/app/bin/run")
	if err := os.MkdirAll(filepath.Join(dir, "files/app/empty"), 0o755); err != nil {
		t.Fatal(err)
	}
	cat, err := compileDir(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"file:/opt/app":                "ensure=directory mode=0750 owner=root purge=true",
		"file:/opt/app/README":         "mode=0644 owner=root source=files/app/README",
		"file:/opt/app/bin":            "ensure=directory mode=0750 owner=root purge=true",
		"file:/opt/app/bin/run":        "mode=0755 owner=root source=files/app/bin/run",
		"file:/opt/app/conf":           "ensure=directory mode=0750 owner=root purge=true",
		"file:/opt/app/conf/app.conf":  "mode=0644 owner=root source=files/app/conf/app.conf",
		"file:/opt/app/empty":          "ensure=directory mode=0750 owner=root purge=true",
		"file:/opt/app2":               "ensure=directory",
		"file:/opt/app2/README":        "mode=0600 source=files/app/README",
		"file:/opt/app2/bin":           "ensure=directory",
		"file:/opt/app2/bin/run":       "mode=0600 source=files/app/bin/run",
		"file:/opt/app2/conf":          "ensure=directory",
		"file:/opt/app2/conf/app.conf": "mode=0600 source=files/app/conf/app.conf",
		"file:/opt/app2/empty":         "ensure=directory",
	}
	got := map[string]string{}
	for _, r := range cat.Resources {
		if r.Type != "file" {
			continue
		}
		var parts []string
		for _, k := range []string{"ensure", "mode", "owner", "purge", "source"} {
			if v, ok := r.Attrs[k]; ok {
				parts = append(parts, k+"="+fmt.Sprint(v))
			}
		}
		got[r.ID] = strings.Join(parts, " ")
		if src := r.String("source"); src != "" {
			if !slices.ContainsFunc(cat.Files, func(f FileRef) bool { return f.Path == src && f.Digest == r.String("digest") }) {
				t.Errorf("%s: the catalog does not ship %s by its digest", r.ID, src)
			}
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("the trees' resources (-want +got):\n%s", diff)
	}
	svc, _ := cat.Resource("service:app")
	for _, id := range []string{"file:/opt/app", "file:/opt/app/bin/run", "file:/opt/app/conf/app.conf", "file:/opt/app/empty"} {
		if !slices.Contains(svc.Require, id) {
			t.Errorf("service:app does not wait for %s: %v", id, svc.Require)
		}
	}
	run, _ := cat.Resource("file:/opt/app/bin/run")
	if !slices.Contains(run.Notify, "service:app") || !slices.Contains(run.Require, "file:/opt/app/bin") {
		t.Errorf("file:/opt/app/bin/run notifies %v and requires %v", run.Notify, run.Require)
	}
	first, _ := cat.Encode()
	again, err := compileDir(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := again.Encode(); string(b) != string(first) {
		t.Error("two compiles of the same tree differ")
	}
}

// TestSourceDirectoryRefusesLinks: a symbolic link anywhere in a source
// directory of the site (to a file outside it, like /etc/shadow, or to a
// directory) fails the load, naming the link; nothing is shipped.
func TestSourceDirectoryRefusesLinks(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ name, link, target string }{
		{"a file", "files/app/shadow", "/etc/shadow"},
		{"a directory", "files/app/etc", "/etc"},
		{"inside the site", "files/app/again", "../other"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			writeTree(t, dir, map[string]string{
				"nodes.toml":   "[[node]]\nroles = [\"r\"]\n",
				"files/app/ok": "ok\n",
				"files/other":  "other\n",
				"roles/r.toml": "[[file]]\npath = \"/opt/app\"\nsource = \"files/app/\"\n",
			})
			if err := os.Symlink(tt.target, filepath.Join(dir, filepath.FromSlash(tt.link))); err != nil {
				t.Fatal(err)
			}
			_, err := compileDir(t, dir)
			if err == nil || !strings.Contains(err.Error(), tt.link) || !strings.Contains(err.Error(), "symbolic link") {
				t.Errorf("compile = %v, want an error naming %s as a symbolic link", err, tt.link)
			}
		})
	}
}

// TestSourceDirectoryErrors: a missing directory, a file where a directory
// was meant, a file also declared on its own, and misplaced attributes
// are errors naming the declaration.
func TestSourceDirectoryErrors(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ name, role, want string }{
		{"missing", "[[file]]\npath = \"/opt/app\"\nsource = \"nope/\"\n", `roles/r.toml:3:1: source "nope/": no such directory under files/`},
		{"a file", "[[file]]\npath = \"/opt/app\"\nsource = \"other\"\nrecurse = true\n", `roles/r.toml:3:1: source "other" is a file`},
		{"duplicate", "[[file]]\npath = \"/opt/app\"\nsource = \"app/\"\n\n[[file]]\npath = \"/opt/app/ok\"\ncontent = \"x\"\n", "duplicate resource file:/opt/app/ok"},
		{"dir_mode alone", "[[file]]\npath = \"/opt/app\"\nensure = \"directory\"\ndir_mode = \"0700\"\n", "dir_mode is for a source directory"},
		{"ensure file", "[[file]]\npath = \"/opt/app\"\nsource = \"app/\"\nensure = \"file\"\n", `a source directory needs ensure = "directory"`},
		{"recurse alone", "[[file]]\npath = \"/opt/app\"\nrecurse = true\n", "recurse needs source"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := compileFiles(t, map[string]string{
				"nodes.toml":   "[[node]]\nroles = [\"r\"]\n",
				"files/app/ok": "ok\n",
				"files/other":  "other\n",
				"roles/r.toml": tt.role,
			})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("compile = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// TestDiffRedactsSensitiveAttrs: herd diff says a password changed, was
// added or removed, never its hash.
func TestDiffRedactsSensitiveAttrs(t *testing.T) {
	t.Parallel()
	user := func(pw string) Resource {
		r := Resource{ID: "user:alice", Type: "user", Name: "alice", Attrs: map[string]any{"name": "alice"}}
		if pw != "" {
			r.Attrs["password"] = pw
		}
		return r
	}
	const a, b = "$6$salt$oldhasholdhash", "$6$salt$newhashnewhash"
	for _, tt := range []struct {
		name       string
		prev, next []Resource
	}{
		{"changed", []Resource{user(a)}, []Resource{user(b)}},
		{"set", []Resource{user("")}, []Resource{user(b)}},
		{"added", nil, []Resource{user(b)}},
		{"removed", []Resource{user(a)}, nil},
	} {
		ch := Diff(&Catalog{Resources: tt.prev}, &Catalog{Resources: tt.next}, nil)
		out := fmt.Sprintf("%+v", ch)
		if strings.Contains(out, "hash") || !strings.Contains(out, "sensitive:true") {
			t.Errorf("%s: Diff = %s, want the password redacted", tt.name, out)
		}
	}
}

// FuzzNewTypeValues: the checks of an authorized key, its options and a
// password hash never panic, and what they accept cannot break the line
// or the file it is written to.
func FuzzNewTypeValues(f *testing.F) {
	for _, s := range []string{
		"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
		"ssh-rsa AAAA", "", "ssh-ed25519", `from="10.0.0.0/8"`, `command="a\"b"`, "no-pty",
		"$6$salt$hash", "!", "$y$j9T$a$b", "!$5$x$y",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if typ, blob, err := SplitPublicKey(s); err == nil {
			if !KnownKeyType(typ) || strings.ContainsAny(typ+blob, " \t\r\n") {
				t.Fatalf("SplitPublicKey(%q) accepted %q %q", s, typ, blob)
			}
		}
		if CheckKeyOption(s) == nil && strings.ContainsAny(s, " \t\r\n\x00") && !strings.Contains(s, `"`) {
			t.Fatalf("CheckKeyOption(%q) accepted a space outside quotes", s)
		}
		if CheckKeyOption(s) == nil && strings.ContainsAny(s, "\r\n\x00") {
			t.Fatalf("CheckKeyOption(%q) accepted a line break", s)
		}
		if cryptHash(s) == nil && strings.ContainsAny(s, ":\r\n\x00 ") {
			t.Fatalf("cryptHash(%q) accepted a field that would break etc/shadow", s)
		}
	})
}

// TestLoadRevisionKeepsExecutableBits: a source directory compiled from a
// git revision (herd diff) ships the same modes as one compiled from the
// work tree: the archive's executable bit is kept.
func TestLoadRevisionKeepsExecutableBits(t *testing.T) {
	t.Parallel()
	repo, git := gitRepo(t)
	writeTree(t, repo, map[string]string{
		"nodes.toml":       "[[node]]\nroles = [\"r\"]\n",
		"roles/r.toml":     "[[file]]\npath = \"/opt/app\"\nsource = \"app/\"\n",
		"files/app/run":    "#!/bin/sh\n",
		"files/app/README": "x\n",
	}, "files/app/run")
	git("add", ".")
	git("commit", "-q", "-m", "tree")
	s, err := LoadRevision(context.Background(), repo, "HEAD", LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	fromGit, err := s.Compile("web-01", facts.Facts{})
	if err != nil {
		t.Fatal(err)
	}
	fromDir, err := compileDir(t, repo)
	if err != nil {
		t.Fatal(err)
	}
	for _, cat := range []*Catalog{fromGit, fromDir} {
		run, _ := cat.Resource("file:/opt/app/run")
		readme, _ := cat.Resource("file:/opt/app/README")
		if run.String("mode") != "0755" || readme.String("mode") != "0644" {
			t.Errorf("modes: run %s, README %s; want 0755 and 0644", run.String("mode"), readme.String("mode"))
		}
	}
}
