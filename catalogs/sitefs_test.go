package catalogs

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"
)

// writeSite writes a minimal valid site into a fresh directory and returns
// it; files maps extra relative paths to contents.
func writeSite(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	all := map[string]string{
		"nodes.toml":     "[[node]]\nroles = [\"web\"]\n",
		"roles/web.toml": "[[file]]\npath = \"/etc/motd\"\ncontent = \"hi\"\n",
		"files/ok":       "static",
	}
	for k, v := range files {
		all[k] = v
	}
	for rel, data := range all {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestLoadRefusesWhatIsNotARegularFile puts in a site what an attacker who
// can push to it would: links to the server's secrets, to /dev/zero, a
// FIFO, oversized files. Each must be refused by name, without reading
// outside the site and without blocking.
func TestLoadRefusesWhatIsNotARegularFile(t *testing.T) {
	t.Parallel()
	secret := filepath.Join(t.TempDir(), "ca.key")
	if err := os.WriteFile(secret, []byte("SECRET KEY"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string)
		file  string // the file the diagnostic must name
		want  string
	}{
		{"link to a secret in files", func(t *testing.T, dir string) {
			mustSymlink(t, secret, filepath.Join(dir, "files/cakey"))
		}, "files/cakey", "a symbolic link (to " + secret + ")"},
		{"link to a secret as a template", func(t *testing.T, dir string) {
			mustSymlink(t, secret, filepath.Join(dir, "templates/x.tmpl"))
		}, "templates/x.tmpl", "a symbolic link"},
		{"relative link climbing out", func(t *testing.T, dir string) {
			mustSymlink(t, "../../../../../../../../"+secret, filepath.Join(dir, "data/common.toml"))
		}, "data/common.toml", "a symbolic link"},
		{"link inside the site", func(t *testing.T, dir string) {
			mustSymlink(t, "../nodes.toml", filepath.Join(dir, "files/alias"))
		}, "files/alias", "a symbolic link (to ../nodes.toml)"},
		{"link to /dev/zero", func(t *testing.T, dir string) {
			mustSymlink(t, "/dev/zero", filepath.Join(dir, "files/zero"))
		}, "files/zero", "a symbolic link"},
		{"linked directory", func(t *testing.T, dir string) {
			mustSymlink(t, filepath.Dir(secret), filepath.Join(dir, "templates/dir"))
		}, "templates/dir", "a symbolic link"},
		{"fifo", func(t *testing.T, dir string) {
			if err := syscall.Mkfifo(filepath.Join(dir, "templates/pipe"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, "templates/pipe", "a named pipe"},
		{"oversized role", func(t *testing.T, dir string) {
			sparse(t, filepath.Join(dir, "roles/big.toml"), MaxSourceFile+1)
		}, "roles/big.toml", "1048577 bytes, more than the 1 MiB a site allows for it"},
		{"oversized static file", func(t *testing.T, dir string) {
			sparse(t, filepath.Join(dir, "files/big.iso"), MaxStaticFile+1)
		}, "files/big.iso", "more than the 64 MiB a site allows for it"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := writeSite(t, map[string]string{"templates/ok.tmpl": "ok"})
			tt.setup(t, dir)
			_, err := Load(context.Background(), dir, LoadOptions{Version: "test"})
			if err == nil {
				t.Fatal("Load succeeded, want an error")
			}
			var ds Diagnostics
			if !errors.As(err, &ds) {
				t.Fatalf("Load error %v is %T, want Diagnostics", err, err)
			}
			if !strings.Contains(err.Error(), tt.file+": ") || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Load error = %q, want it to name %s and say %q", err, tt.file, tt.want)
			}
			if strings.Contains(err.Error(), "SECRET") {
				t.Errorf("Load error %q quotes the secret", err)
			}
		})
	}
}

func mustSymlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

// sparse makes a file of size bytes that takes no disk space.
func sparse(t *testing.T, path string, size int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
}

// TestLoadCapsTheWholeTree checks the caps on the tree as a whole, with
// limits shrunk so that the test writes little.
func TestLoadCapsTheWholeTree(t *testing.T) {
	t.Parallel()
	base := fstest.MapFS{
		"nodes.toml":     {Data: []byte("[[node]]\nroles = [\"web\"]\n")},
		"roles/web.toml": {Data: []byte("")},
		"files/a":        {Data: []byte(strings.Repeat("a", 600))},
		"files/b":        {Data: []byte(strings.Repeat("b", 600))},
	}
	tests := []struct {
		name   string
		limits siteLimits
		want   string
	}{
		{"total size", siteLimits{source: 1000, static: 1000, total: 1000, files: 100}, "files/b: the site holds more than 1000 bytes"},
		{"file count", siteLimits{source: 1000, static: 1000, total: 10000, files: 5}, "the site has more than 5 files and directories"},
		{"within", siteLimits{source: 1000, static: 1000, total: 10000, files: 6}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, _, err := loadFS(fsSiteDir(base), LoadOptions{Version: "test"}, tt.limits)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("loadFS: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("loadFS error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// TestSiteReadFile reads a static file the way the server stores it and
// masterless apply serves it, then swaps it for what an attacker would.
func TestSiteReadFile(t *testing.T) {
	t.Parallel()
	secret := filepath.Join(t.TempDir(), "ca.key")
	if err := os.WriteFile(secret, []byte("static"), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := writeSite(t, nil)
	s, err := Load(context.Background(), dir, LoadOptions{Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	files := s.Files()
	if len(files) != 1 || files[0].Path != "files/ok" {
		t.Fatalf("Files() = %v, want files/ok", files)
	}
	ref := files[0]
	b, err := s.ReadFile(ref)
	if err != nil || string(b) != "static" {
		t.Fatalf("ReadFile(%v) = %q, %v; want \"static\"", ref, b, err)
	}
	p := filepath.Join(dir, "files/ok")
	tests := []struct {
		name  string
		setup func(t *testing.T)
		ref   FileRef
		want  string
	}{
		{"edited", func(t *testing.T) {
			if err := os.WriteFile(p, []byte("edited"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, ref, "changed in the site since the catalog was compiled"},
		// The secret has the very same content: only the confinement
		// refuses it, not the digest.
		{"swapped for a link out", func(t *testing.T) {
			mustSymlink(t, secret, p)
		}, ref, "a symbolic link"},
		{"swapped for a fifo", func(t *testing.T) {
			if err := syscall.Mkfifo(p, 0o644); err != nil {
				t.Fatal(err)
			}
		}, ref, "a named pipe"},
		{"a path outside files", func(t *testing.T) {}, FileRef{Path: "../ca.key", Digest: ref.Digest}, "not a path under files/"},
		{"a site file not under files", func(t *testing.T) {}, FileRef{Path: "nodes.toml", Digest: ref.Digest}, "not a path under files/"},
	}
	for _, tt := range tests {
		// Not parallel: each case replaces the same file.
		if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		tt.setup(t)
		if _, err := os.Lstat(p); os.IsNotExist(err) {
			if err := os.WriteFile(p, []byte("static"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		_, err := s.ReadFile(tt.ref)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: ReadFile = %v, want an error containing %q", tt.name, err, tt.want)
		}
	}
}

// TestPolicyFiles: every policies/**/*.rego is read at Load, sorted,
// through the confined reader (a link is refused, the size cap holds), and
// changes the site's content version; other files under policies/ are not
// policies.
func TestPolicyFiles(t *testing.T) {
	t.Parallel()
	files := map[string]string{
		"policies/gate.rego":       "package herd.gate\n",
		"policies/gate_test.rego":  "package herd.gate_test\n",
		"policies/audit/ssh.rego":  "package herd.audit\n",
		"policies/audit.rego":      "package herd.audit2\n",
		"policies/README.md":       "notes",
		"policies/notes.rego.orig": "x",
	}
	dir := writeSite(t, files)
	s, err := Load(context.Background(), dir, LoadOptions{ContentVersion: true})
	if err != nil {
		t.Fatal(err)
	}
	want := []SourceFile{
		{"policies/audit.rego", []byte("package herd.audit2\n")},
		{"policies/audit/ssh.rego", []byte("package herd.audit\n")},
		{"policies/gate.rego", []byte("package herd.gate\n")},
		{"policies/gate_test.rego", []byte("package herd.gate_test\n")},
	}
	if diff := cmp.Diff(want, s.PolicyFiles()); diff != "" {
		t.Errorf("PolicyFiles() (-want +got):\n%s", diff)
	}

	// A changed policy is a new site version.
	if err := os.WriteFile(filepath.Join(dir, "policies", "gate.rego"), []byte("package herd.gate\n# changed\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s2, err := Load(context.Background(), dir, LoadOptions{ContentVersion: true})
	if err != nil {
		t.Fatal(err)
	}
	if s2.Version == s.Version {
		t.Errorf("Version %s did not change when policies/gate.rego did", s.Version)
	}

	// A link is refused like any site file's.
	outside := filepath.Join(t.TempDir(), "secret.rego")
	if err := os.WriteFile(outside, []byte("package x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "policies", "link.rego")); err != nil {
		t.Fatal(err)
	}
	_, err = Load(context.Background(), dir, LoadOptions{Version: "test"})
	if err == nil || !strings.Contains(err.Error(), "policies/link.rego: reading the site: not a regular file: a symbolic link") {
		t.Errorf("Load with a linked policy = %v, want it refused", err)
	}

	// The source-file cap holds for policies.
	big := fstest.MapFS{
		"nodes.toml":        {Data: []byte("[[node]]\nroles = [\"web\"]\n")},
		"roles/web.toml":    {Data: []byte("")},
		"policies/big.rego": {Data: []byte(strings.Repeat("#", 2048))},
	}
	limits := defaultLimits
	limits.source = 1024
	_, _, err = loadFS(fsSiteDir(big), LoadOptions{Version: "test"}, limits)
	if err == nil || !strings.Contains(err.Error(), "policies/big.rego: reading the site: 2048 bytes, more than the 1 KiB a site allows") {
		t.Errorf("Load with a 2 KiB policy under a 1 KiB cap = %v, want it refused", err)
	}
}
