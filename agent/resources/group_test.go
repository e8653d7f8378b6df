package resources

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestGroupLifecycle creates, checks, repairs, renumbers and removes a
// group in a sandbox root with the real shadow tools.
func TestGroupLifecycle(t *testing.T) {
	t.Parallel()
	accountsNeedShadow(t)
	h, _ := newSandboxTestHost(t)
	runs := pkgCountRuns(h)
	ctx := context.Background()
	typ := &Group{}
	r := res("group", "ops", map[string]any{"gid": int64(3000)})

	p, got := pkgCheck(t, h, typ, &r)
	if want := []string{"create ensure: absent → present", "create gid:  → 3000"}; !cmp.Equal(want, got) {
		t.Fatalf("Check on a fresh root (-want +got):\n%s", cmp.Diff(want, got))
	}
	if err := typ.Apply(ctx, h, p); err != nil {
		t.Fatalf("Apply: %v\n%s", err, p.Output)
	}
	if g, ok, _ := LookupGroup(h.Root, "ops"); !ok || g.ID != 3000 {
		t.Fatalf("after Apply, etc/group has %+v, %v", g, ok)
	}
	before := runs.Load()
	if _, got := pkgCheck(t, h, typ, &r); len(got) != 0 {
		t.Fatalf("Check after Apply = %v, want in sync", got)
	}
	if runs.Load() != before {
		t.Error("an in-sync Check spawned a process")
	}

	// Drift: renumbered by hand; noop sees it and changes nothing.
	editFile(t, h.Root, "etc/group", "ops:x:3000:", "ops:x:3999:")
	hash := treeHash(t, h.Root)
	p, got = pkgCheck(t, h, typ, &r)
	if want := []string{"update gid: 3999 → 3000"}; !cmp.Equal(want, got) {
		t.Errorf("Check after a hand edit (-want +got):\n%s", cmp.Diff(want, got))
	}
	if treeHash(t, h.Root) != hash {
		t.Error("Check of a drifted group changed the host")
	}
	if err := typ.Apply(ctx, h, p); err != nil {
		t.Fatalf("Apply after drift: %v\n%s", err, p.Output)
	}
	if _, got := pkgCheck(t, h, typ, &r); len(got) != 0 {
		t.Errorf("Check after fixing drift = %v, want in sync", got)
	}

	// The primary group of a user cannot go; groupdel says why.
	u := res("user", "alice", map[string]any{"gid": "ops"})
	pkgConverge(t, h, &User{}, &u)
	gone := res("group", "ops", map[string]any{"ensure": "absent"})
	p, got = pkgCheck(t, h, typ, &gone)
	if want := []string{"delete ensure: present → absent"}; !cmp.Equal(want, got) {
		t.Errorf("Check for removal (-want +got):\n%s", cmp.Diff(want, got))
	}
	if err := typ.Apply(ctx, h, p); err == nil || !strings.Contains(err.Error(), "removing group ops: groupdel exited with status 8: groupdel: cannot remove the primary group of user 'alice'") {
		t.Errorf("removing a primary group = %v", err)
	}
	// groupmod renumbers the group and its users' primary gid with it.
	r = res("group", "ops", map[string]any{"gid": int64(3100)})
	pkgConverge(t, h, typ, &r)
	if a, _, _ := LookupUser(h.Root, "alice"); a.GID != 3100 {
		t.Errorf("after groupmod, alice's gid = %d, want 3100", a.GID)
	}
	uGone := res("user", "alice", map[string]any{"ensure": "absent"})
	pkgConverge(t, h, &User{}, &uGone)
	pkgConverge(t, h, typ, &gone)
	if _, ok, _ := LookupGroup(h.Root, "ops"); ok {
		t.Error("ops is still in etc/group")
	}
}

func TestGroupCheckArgv(t *testing.T) {
	t.Parallel()
	h, _ := newTestHost(t)
	for _, tc := range []struct {
		attrs map[string]any
		argv  string
	}{
		{map[string]any{"gid": int64(120), "system": true}, "groupadd --prefix ROOT --gid 120 --system web"},
		{map[string]any{"system": true}, "groupadd --prefix ROOT --system web"},
		{nil, "groupadd --prefix ROOT web"},
	} {
		r := res("group", "web", tc.attrs)
		p, err := (&Group{}).Check(context.Background(), h, &r)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.ReplaceAll(strings.Join(p.State.(*accountState).argv, " "), h.Root, "ROOT"); got != tc.argv {
			t.Errorf("Check(%v) plans %q, want %q", tc.attrs, got, tc.argv)
		}
	}
	r := res("group", "web", map[string]any{"ensure": "absent"})
	if p, err := (&Group{}).Check(context.Background(), h, &r); err != nil || !p.InSync() {
		t.Errorf("absent group in an empty root = %+v, %v; want in sync", p, err)
	}
}
