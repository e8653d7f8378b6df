package catalogs

import (
	"bytes"
	"fmt"
	"slices"
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
	changes := fleetChanges()
	groups := GroupChanges(changes)
	type group struct {
		Nodes []string
		IDs   []string // "+id", "-id", "~id"
	}
	var got []group
	for _, g := range groups {
		got = append(got, group{g.Nodes, changeIDs(g.Change)})
	}
	// The canary's nginx bump is the web nodes' one: one group of six; its
	// motd alone is its own.
	want := []group{
		{[]string{"web-001", "web-002", "web-003", "web-004", "web-005", "web-canary"}, []string{"~package:nginx"}},
		{[]string{"db-01"}, []string{"+file:/etc/backup.conf", "-service:old-backup", "~service:postgres"}},
		{[]string{"web-canary"}, []string{"~file:/etc/motd"}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("GroupChanges (-want +got):\n%s", diff)
	}
	// Regrouped, nothing is lost or made up: every node's change is back.
	if diff := cmp.Diff(changes, ungroup(groups, changes)); diff != "" {
		t.Errorf("the groups do not add up to the nodes' changes (-want +got):\n%s", diff)
	}
	if got := GroupChanges(nil); len(got) != 0 {
		t.Errorf("GroupChanges(nil) = %v, want none", got)
	}
}

// changeIDs lists a change's resources as "+id", "-id" and "~id".
func changeIDs(c Change) []string {
	var ids []string
	for _, part := range []struct {
		mark string
		rcs  []ResourceChange
	}{{"+", c.Added}, {"-", c.Removed}, {"~", c.Changed}} {
		for _, rc := range part.rcs {
			ids = append(ids, part.mark+rc.ID)
		}
	}
	return ids
}

// ungroup gives each node of groups back the resource changes of its
// groups, sorted by id as Diff sorts them; the nodes of like (unchanged
// ones, absent from every group) get an empty change.
func ungroup(groups []ChangeGroup, like map[string]Change) map[string]Change {
	out := map[string]Change{}
	for n := range like {
		out[n] = Change{}
	}
	for _, g := range groups {
		for _, n := range g.Nodes {
			c := out[n]
			c.Added = append(c.Added, g.Change.Added...)
			c.Removed = append(c.Removed, g.Change.Removed...)
			c.Changed = append(c.Changed, g.Change.Changed...)
			out[n] = c
		}
	}
	byID := func(a, b ResourceChange) int { return strings.Compare(a.ID, b.ID) }
	for n, c := range out {
		slices.SortFunc(c.Added, byID)
		slices.SortFunc(c.Removed, byID)
		slices.SortFunc(c.Changed, byID)
		out[n] = c
	}
	return out
}

// TestGroupChangesFleet: 800 nodes share an nginx bump and each changes
// its own templated motd. The bump is one group of 800 nodes and one line;
// the motds are 800 one-node groups, FoldAfter of them printed and the
// rest counted in one line.
func TestGroupChangesFleet(t *testing.T) {
	t.Parallel()
	const fleet = 800
	node := func(i int) string { return fmt.Sprintf("web-%03d", i) }
	cat := func(n, motd, nginx string) *Catalog {
		return &Catalog{Node: n, Resources: []Resource{
			res("file:/etc/motd", "roles/base.toml:3", map[string]any{"path": "/etc/motd", "content": motd}),
			res("package:nginx", "roles/web.toml:1", map[string]any{"name": "nginx", "ensure": nginx}),
		}}
	}
	changes := map[string]Change{}
	for i := 1; i <= fleet; i++ {
		n := node(i)
		changes[n] = Diff(cat(n, "Welcome.\n", "1.24"), cat(n, "Welcome to "+n+".\n", "1.26"), nil)
	}
	groups := GroupChanges(changes)
	if len(groups) != fleet+1 {
		t.Fatalf("%d groups, want %d (the bump, then one motd per node)", len(groups), fleet+1)
	}
	if g := groups[0]; len(g.Nodes) != fleet || !slices.Equal(changeIDs(g.Change), []string{"~package:nginx"}) {
		t.Errorf("first group: %d nodes, changes %v; want %d nodes, [~package:nginx]", len(g.Nodes), changeIDs(g.Change), fleet)
	}
	for i, g := range groups[1:] {
		if !slices.Equal(g.Nodes, []string{node(i + 1)}) || !slices.Equal(changeIDs(g.Change), []string{"~file:/etc/motd"}) {
			t.Fatalf("group %d: nodes %v, changes %v; want [%s], [~file:/etc/motd]", i+1, g.Nodes, changeIDs(g.Change), node(i+1))
		}
	}
	if diff := cmp.Diff(changes, ungroup(groups, changes)); diff != "" {
		t.Errorf("the groups do not add up to the nodes' changes (-want +got):\n%s", diff)
	}

	var out bytes.Buffer
	if err := WriteChanges(&out, groups, WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	if n := strings.Count(s, "package:nginx"); n != 1 {
		t.Errorf("package:nginx shows %d times, want once:\n%s", n, s)
	}
	if !strings.HasPrefix(s, "800 nodes (web-001 … web-800)\n  ~ package:nginx  ensure: 1.24 → 1.26\n\n") {
		t.Errorf("output does not begin with the shared bump:\n%s", s)
	}
	if n := strings.Count(s, "\n1 node: "); n != FoldAfter {
		t.Errorf("%d one-node groups printed, want %d", n, FoldAfter)
	}
	if !strings.Contains(s, "+Welcome to "+node(FoldAfter)+".") || strings.Contains(s, "+Welcome to "+node(FoldAfter+1)+".") {
		t.Errorf("want the motd diffs of %s to %s printed, no more:\n%s", node(1), node(FoldAfter), s)
	}
	want := fmt.Sprintf("\n\n… and %d more nodes change file:/etc/motd (content differs per node; --node %s to see one)\n", fleet-FoldAfter, node(FoldAfter+1))
	if !strings.HasSuffix(s, want) {
		t.Errorf("output does not end with %q:\n%s", want, s)
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
