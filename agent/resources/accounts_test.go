package resources

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestLookupAccounts(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name, s string) {
		if err := os.WriteFile(filepath.Join(root, "etc", name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("passwd", "root:x:0:0:root:/root:/bin/bash\n# comment\nalice:x:2001:2000:Alice Admin:/home/alice:/bin/bash\n")
	write("group", "root:x:0:\nadmins:x:2000:alice,bob\n")
	u, ok, err := LookupUser(root, "alice")
	want := Account{Name: "alice", ID: 2001, GID: 2000, Comment: "Alice Admin", Home: "/home/alice", Shell: "/bin/bash"}
	if err != nil || !ok || !cmp.Equal(u, want) {
		t.Errorf("LookupUser(alice) = %+v, %v, %v; want %+v", u, ok, err, want)
	}
	if u, ok, _ := LookupUser(root, "2001"); !ok || u.Name != "alice" {
		t.Errorf("LookupUser(2001) = %+v, %v", u, ok)
	}
	g, ok, err := LookupGroup(root, "admins")
	if err != nil || !ok || g.ID != 2000 || !cmp.Equal(g.Members, []string{"alice", "bob"}) {
		t.Errorf("LookupGroup(admins) = %+v, %v, %v", g, ok, err)
	}
	if _, ok, err := LookupUser(root, "nobody"); ok || err != nil {
		t.Errorf("LookupUser(nobody) = %v, %v; want not found", ok, err)
	}
	if _, ok, err := LookupUser(t.TempDir(), "root"); ok || err != nil {
		t.Errorf("LookupUser in an empty root = %v, %v; want not found, no error", ok, err)
	}
	write("passwd", "broken:line\n")
	if _, _, err := LookupUser(root, "x"); err == nil {
		t.Error("a malformed passwd line gave no error")
	}
}

func FuzzParseAccount(f *testing.F) {
	f.Add("alice:x:2001:2000:Alice:/home/alice:/bin/bash", true)
	f.Add("admins:x:2000:alice,bob", false)
	f.Fuzz(func(t *testing.T, line string, passwd bool) {
		a, err := parseAccount(line, passwd)
		if err == nil && (a.ID < 0 || a.GID < 0) {
			t.Fatalf("parseAccount(%q) = %+v: negative id accepted", line, a)
		}
	})
}
