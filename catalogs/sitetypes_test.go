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
// user, as a file waits for its owner.
func TestImplicitEdgesOfNewTypes(t *testing.T) {
	t.Parallel()
	cat, err := compileFiles(t, map[string]string{
		"nodes.toml": "[[node]]\nroles = [\"r\"]\n",
		"roles/r.toml": `
[[user]]
name = "alice"

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
	} {
		r, ok := cat.Resource(id)
		if !ok {
			t.Fatalf("no %s in the catalog", id)
		}
		if !slices.Equal(r.Require, want) {
			t.Errorf("%s requires %v, want %v", id, r.Require, want)
		}
	}
}
