package catalogs

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// fleetChanges builds a small fleet's changes through Diff: five web nodes
// move nginx to 1.26, the canary also gets a new motd, a db node loses a
// service and gains a file, and one node does not change.
func fleetChanges() map[string]Change {
	web := func(node, motd, nginx string) *Catalog {
		return &Catalog{Node: node, Resources: []Resource{
			res("file:/etc/motd", "roles/base.toml:3", map[string]any{"path": "/etc/motd", "content": motd, "mode": "0644"}),
			res("package:nginx", "roles/web.toml:1", map[string]any{"name": "nginx", "ensure": nginx}),
			res("service:nginx", "roles/web.toml:5", map[string]any{"name": "nginx", "run": []string{"/usr/sbin/nginx", "-g", "daemon off;"}, "env": map[string]string{"A": "1"}}, "package:nginx"),
		}}
	}
	motd := "Welcome.\nManaged by Herd.\n"
	out := map[string]Change{}
	for i := 1; i <= 5; i++ {
		n := fmt.Sprintf("web-%03d", i)
		out[n] = Diff(web(n, motd, "1.24"), web(n, motd, "1.26"), nil)
	}
	out["web-canary"] = Diff(web("web-canary", motd, "1.24"), web("web-canary", "Welcome.\nManaged by Herd.\nThe canary: changes land here first.\n", "1.26"), nil)
	out["web-same"] = Diff(web("web-same", motd, "1.26"), web("web-same", motd, "1.26"), nil)
	db := func(svc bool, run []string) *Catalog {
		c := &Catalog{Node: "db-01", Resources: []Resource{
			res("file:/etc/pg.conf", "roles/db.toml:1", map[string]any{"path": "/etc/pg.conf", "content": "max_connections = 100\n"}),
			res("service:postgres", "roles/db.toml:5", map[string]any{"name": "postgres", "run": run, "env": map[string]string{"PGDATA": "/var/lib/pg", "TZ": "UTC"}}),
		}}
		if svc {
			c.Resources = append(c.Resources, res("service:old-backup", "roles/db.toml:9", map[string]any{"name": "old-backup"}))
		} else {
			c.Resources = append([]Resource{res("file:/etc/backup.conf", "roles/db.toml:12", map[string]any{"path": "/etc/backup.conf"})}, c.Resources...)
		}
		return c
	}
	out["db-01"] = Diff(db(true, []string{"/usr/bin/postgres"}), db(false, []string{"/usr/bin/postgres", "-c", "fsync=on"}), nil)
	return out
}

func TestGroupChanges(t *testing.T) {
	t.Parallel()
	groups := GroupChanges(fleetChanges())
	var got [][]string
	for _, g := range groups {
		got = append(got, g.Nodes)
	}
	want := [][]string{{"web-001", "web-002", "web-003", "web-004", "web-005"}, {"db-01"}, {"web-canary"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("GroupChanges nodes (-want +got):\n%s", diff)
	}
	if g := groups[0].Change; len(g.Changed) != 1 || g.Changed[0].ID != "package:nginx" {
		t.Errorf("biggest group's change = %+v, want package:nginx alone", g)
	}
	if got := GroupChanges(nil); len(got) != 0 {
		t.Errorf("GroupChanges(nil) = %v, want none", got)
	}
}

func TestWriteChanges(t *testing.T) {
	t.Parallel()
	groups := GroupChanges(fleetChanges())
	for _, tt := range []struct {
		name string
		opts WriteOptions
	}{{"plain", WriteOptions{}}, {"color", WriteOptions{Color: true}}} {
		var b bytes.Buffer
		if err := WriteChanges(&b, groups, tt.opts); err != nil {
			t.Fatal(err)
		}
		if !tt.opts.Color && strings.Contains(b.String(), "\x1b") {
			t.Errorf("plain output has escapes:\n%s", b.String())
		}
		golden(t, "testdata/changes/"+tt.name+".golden", b.Bytes())
	}
}

// TestWriteChangesHostile: text from a catalog cannot put escapes or
// forged lines on the reader's terminal.
func TestWriteChangesHostile(t *testing.T) {
	t.Parallel()
	a := &Catalog{Resources: []Resource{res("file:/x\x1b[2J\n+ file:/forged", "", map[string]any{"content": "a\n", "owner": "root"})}}
	b := &Catalog{Resources: []Resource{res("file:/x\x1b[2J\n+ file:/forged", "", map[string]any{"content": "\x1b]0;pwned\x07b\n", "owner": "x\n+ file:/forged2"})}}
	var out bytes.Buffer
	if err := WriteChanges(&out, GroupChanges(map[string]Change{"n": Diff(a, b, nil)}), WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	if strings.ContainsAny(s, "\x1b\x07") {
		t.Errorf("output carries control characters:\n%q", s)
	}
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "+ file:/forged") {
			t.Errorf("output has a forged line %q in:\n%s", l, s)
		}
	}
}
