package catalogs

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

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
`,
	})
	if err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string][]string{
		"authorized_key:alice@laptop": {"user:alice"},
		"package:nginx":               {"apt_repository:local", "apt_repository:vendor"},
		"package:local":               nil,
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
