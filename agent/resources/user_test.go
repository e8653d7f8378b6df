package resources

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/herdcm/herd/testkit"
)

// accountsNeedShadow skips a test that needs the shadow tools when this
// machine has none.
func accountsNeedShadow(t *testing.T) {
	t.Helper()
	testkit.NeedTools(t, "useradd", "usermod", "userdel", "groupadd", "groupmod", "groupdel")
}

// shadowRoot is why a test that changes or removes an account needs root:
// usermod and userdel chroot into the host root (--prefix).
const shadowRoot = "usermod and userdel chroot into the host root"

// editFile replaces old with new in the root's file, as an admin's editor would.
func editFile(t *testing.T, root, rel, old, new string) {
	t.Helper()
	p := filepath.Join(root, rel)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), old) {
		t.Fatalf("%s has no %q:\n%s", rel, old, b)
	}
	if err := os.WriteFile(p, []byte(strings.Replace(string(b), old, new, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestUserLifecycle creates an account in a sandbox root with the real
// shadow tools, checks it in sync without a process, puts a hand edit
// back (noop sees it and changes nothing), changes uid, groups and home,
// and removes it with its home.
func TestUserLifecycle(t *testing.T) {
	t.Parallel()
	accountsNeedShadow(t)
	testkit.NeedRoot(t, shadowRoot)
	h, _ := newSandboxTestHost(t)
	ctx := context.Background()
	for name, gid := range map[string]int64{"admins": 3000, "devs": 3001, "ops": 3002} {
		g := res("group", name, map[string]any{"gid": gid})
		pkgConverge(t, h, &Group{}, &g)
	}
	runs := pkgCountRuns(h)
	typ := &User{}
	attrs := map[string]any{
		"uid": int64(2001), "gid": "admins", "groups": []string{"users", "devs"},
		"home": "/home/alice", "shell": "/bin/bash", "comment": "Alice Admin", "managehome": true,
	}
	r := res("user", "alice", attrs)

	p, got := pkgCheck(t, h, typ, &r)
	want := []string{
		"create ensure: absent → present", "create uid:  → 2001", "create gid:  → admins",
		"create groups:  → [devs users]", "create home:  → /home/alice", "create shell:  → /bin/bash",
		"create comment:  → Alice Admin",
	}
	if !cmp.Equal(want, got) {
		t.Fatalf("Check on a fresh root (-want +got):\n%s", cmp.Diff(want, got))
	}
	if err := typ.Apply(ctx, h, p); err != nil {
		t.Fatalf("Apply: %v\n%s", err, p.Output)
	}
	u, ok, err := LookupUser(h.Root, "alice")
	wantU := Account{Name: "alice", ID: 2001, GID: 3000, Comment: "Alice Admin", Home: "/home/alice", Shell: "/bin/bash"}
	if err != nil || !ok || !cmp.Equal(wantU, u) {
		t.Fatalf("after Apply, etc/passwd has %+v, %v, %v; want %+v", u, ok, err, wantU)
	}
	// The home is under the root, from the root's skeleton, owned by alice.
	fi, err := os.Stat(filepath.Join(h.Root, "home/alice/.profile"))
	if err != nil {
		t.Fatalf("managehome: %v", err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != 2001 || st.Gid != 3000 {
		t.Errorf("home/alice/.profile is owned by %d:%d, want 2001:3000", st.Uid, st.Gid)
	}
	if b, _ := os.ReadFile(filepath.Join(h.Root, "home/alice/.profile")); !strings.Contains(string(b), "herd sandbox") {
		t.Errorf("home/alice/.profile = %q: not the root's skeleton", b)
	}
	if _, err := os.Stat("/home/alice"); err == nil {
		t.Log("note: this machine has a /home/alice of its own")
	}

	// In sync, without spawning anything.
	before := runs.Load()
	if _, got := pkgCheck(t, h, typ, &r); len(got) != 0 {
		t.Fatalf("Check after Apply = %v, want in sync", got)
	}
	if n := runs.Load() - before; n != 0 {
		t.Errorf("an in-sync Check spawned %d processes, want 0", n)
	}

	// Drift: the shell edited by hand. Noop shows it and changes nothing.
	editFile(t, h.Root, "etc/passwd", "Alice Admin:/home/alice:/bin/bash", "Alice Admin:/home/alice:/bin/sh")
	hash := treeHash(t, h.Root)
	p, got = pkgCheck(t, h, typ, &r)
	if want := []string{"update shell: /bin/sh → /bin/bash"}; !cmp.Equal(want, got) {
		t.Errorf("Check after a hand edit (-want +got):\n%s", cmp.Diff(want, got))
	}
	if treeHash(t, h.Root) != hash {
		t.Error("Check of a drifted user changed the host")
	}
	if err := typ.Apply(ctx, h, p); err != nil {
		t.Fatalf("Apply after drift: %v\n%s", err, p.Output)
	}
	if _, got := pkgCheck(t, h, typ, &r); len(got) != 0 {
		t.Errorf("Check after fixing drift = %v, want in sync", got)
	}

	// Drift in memberships: removed from a group by hand.
	editFile(t, h.Root, "etc/group", "devs:x:3001:alice", "devs:x:3001:")
	if _, got := pkgCheck(t, h, typ, &r); !cmp.Equal([]string{"update groups: [users] → [devs users]"}, got) {
		t.Errorf("Check after a membership edit = %v", got)
	}

	// Change uid, primary group (by number), groups (order does not
	// matter), home (moved) and comment in one usermod.
	r2 := res("user", "alice", map[string]any{
		"uid": int64(2002), "gid": "3002", "groups": []string{"ops", "users", "ops"},
		"home": "/home/alice2", "comment": "Alice", "managehome": true,
	})
	p, got = pkgCheck(t, h, typ, &r2)
	want = []string{
		"update uid: 2001 → 2002", "update gid: 3000 → 3002", "update groups: [users] → [ops users]",
		"update home: /home/alice → /home/alice2", "update comment: Alice Admin → Alice",
	}
	if !cmp.Equal(want, got) {
		t.Errorf("Check for changes (-want +got):\n%s", cmp.Diff(want, got))
	}
	if err := typ.Apply(ctx, h, p); err != nil {
		t.Fatalf("Apply changes: %v\n%s", err, p.Output)
	}
	if _, got := pkgCheck(t, h, typ, &r2); len(got) != 0 {
		t.Errorf("Check after changes = %v, want in sync", got)
	}
	fi, err = os.Stat(filepath.Join(h.Root, "home/alice2/.profile"))
	if err != nil {
		t.Fatalf("the home was not moved: %v", err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != 2002 {
		t.Errorf("home/alice2/.profile is owned by uid %d, want 2002", st.Uid)
	}
	// An empty list means no supplementary groups at all.
	r3 := res("user", "alice", map[string]any{"groups": []string{}})
	if _, got = pkgCheck(t, h, typ, &r3); !cmp.Equal([]string{"update groups: [ops users] → []"}, got) {
		t.Errorf("Check for no groups = %v", got)
	}
	pkgConverge(t, h, typ, &r3)
	db, err := readAccountsDB(h.Root)
	if err != nil {
		t.Fatal(err)
	}
	if gs := db.memberships("alice"); len(gs) != 0 {
		t.Errorf("after groups = [], alice is still a member of %v", gs)
	}

	// Removal takes the home with it.
	gone := res("user", "alice", map[string]any{"ensure": "absent", "managehome": true})
	p, got = pkgCheck(t, h, typ, &gone)
	if !cmp.Equal([]string{"delete ensure: present → absent"}, got) {
		t.Errorf("Check for removal = %v", got)
	}
	if err := typ.Apply(ctx, h, p); err != nil {
		t.Fatalf("Apply removal: %v\n%s", err, p.Output)
	}
	if _, ok, _ := LookupUser(h.Root, "alice"); ok {
		t.Error("alice is still in etc/passwd")
	}
	if _, err := os.Stat(filepath.Join(h.Root, "home/alice2")); !os.IsNotExist(err) {
		t.Errorf("the home is still there: %v", err)
	}
	if _, got := pkgCheck(t, h, typ, &gone); len(got) != 0 {
		t.Errorf("Check after removal = %v, want in sync", got)
	}
}

// TestUserJoinsExistingGroup checks that a user without a gid joins the
// group named after it when one exists, where useradd alone would refuse
// to create its private group.
func TestUserJoinsExistingGroup(t *testing.T) {
	t.Parallel()
	accountsNeedShadow(t)
	h, _ := newSandboxTestHost(t)
	g := res("group", "web", map[string]any{"gid": int64(4000)})
	pkgConverge(t, h, &Group{}, &g)
	r := res("user", "web", map[string]any{"system": true})
	pkgConverge(t, h, &User{}, &r)
	u, _, _ := LookupUser(h.Root, "web")
	if u.GID != 4000 || u.ID >= 1000 {
		t.Errorf("user web = %+v; want gid 4000 and a system uid", u)
	}
	// Without a group of its name, Debian's login.defs makes one.
	r = res("user", "bob", nil)
	pkgConverge(t, h, &User{}, &r)
	u, _, _ = LookupUser(h.Root, "bob")
	if g, ok, _ := LookupGroup(h.Root, "bob"); !ok || g.ID != u.GID || u.ID < 1000 {
		t.Errorf("user bob = %+v, group bob = %+v, %v; want a private group and a uid from 1000", u, g, ok)
	}
}

// TestUserCheckWithoutTools checks plans against accounts written by hand.
func TestUserCheckWithoutTools(t *testing.T) {
	t.Parallel()
	h, _ := newTestHost(t)
	if err := os.MkdirAll(filepath.Join(h.Root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name, s string) {
		if err := os.WriteFile(filepath.Join(h.Root, "etc", name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("passwd", "root:x:0:0:root:/root:/bin/bash\nalice:x:1001:100:Alice:/home/alice:/bin/sh\n")
	write("group", "root:x:0:\nusers:x:100:\nadm:x:4:alice\nsudo:x:27:alice,bob\nstaff:x:50:\n")
	runs := pkgCountRuns(h)
	for _, tc := range []struct {
		attrs map[string]any
		want  []string
		argv  string
	}{
		{map[string]any{"uid": int64(1001), "gid": "users", "groups": []string{"sudo", "adm"}, "shell": "/bin/sh"}, nil, ""},
		{map[string]any{"gid": "100", "groups": []string{"27", "4"}}, nil, ""},
		{map[string]any{"uid": 2001}, []string{"update uid: 1001 → 2001"}, "usermod --prefix ROOT --uid 2001 alice"},
		{map[string]any{"gid": "staff"}, []string{"update gid: users → staff"}, "usermod --root ROOT --gid staff alice"},
		{map[string]any{"groups": []string{"adm", "sudo", "staff"}}, []string{"update groups: [adm sudo] → [adm staff sudo]"}, "usermod --prefix ROOT --groups adm,staff,sudo alice"},
		{map[string]any{"shell": "/bin/bash", "ignore": []string{"shell"}}, nil, ""},
		{map[string]any{"home": "/srv/alice", "managehome": true}, []string{"update home: /home/alice → /srv/alice"}, "usermod --prefix ROOT --home /srv/alice --move-home alice"},
		{map[string]any{"comment": ""}, []string{"update comment: Alice → "}, "usermod --prefix ROOT --comment  alice"},
		{map[string]any{"ensure": "absent"}, []string{"delete ensure: present → absent"}, "userdel --prefix ROOT alice"},
	} {
		r := res("user", "alice", tc.attrs)
		p, got := pkgCheck(t, h, &User{}, &r)
		if !cmp.Equal(tc.want, got) {
			t.Errorf("Check(%v) (-want +got):\n%s", tc.attrs, cmp.Diff(tc.want, got))
		}
		if st, ok := p.State.(*accountState); ok || tc.argv != "" {
			argv := ""
			if ok {
				argv = strings.ReplaceAll(strings.Join(st.argv, " "), h.Root, "ROOT")
			}
			if argv != tc.argv {
				t.Errorf("Check(%v) plans %q, want %q", tc.attrs, argv, tc.argv)
			}
		}
	}
	r := res("user", "carol", map[string]any{"uid": int64(3000), "managehome": true, "system": true})
	p, _ := pkgCheck(t, h, &User{}, &r)
	argv := strings.ReplaceAll(strings.Join(p.State.(*accountState).argv, " "), h.Root, "ROOT")
	if want := "useradd --prefix ROOT --uid 3000 --system --create-home --skel ROOT/etc/skel --no-log-init carol"; argv != want {
		t.Errorf("creating carol plans %q, want %q", argv, want)
	}
	if n := runs.Load(); n != 0 {
		t.Errorf("Checks spawned %d processes, want 0", n)
	}
	// On a real host no --prefix, no --no-log-init.
	real := &Host{Root: "/"}
	r = res("user", "herd-test-no-such-user", map[string]any{"shell": "/bin/sh"})
	p, err := (&User{}).Check(context.Background(), real, &r)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(p.State.(*accountState).argv, " "), "useradd --shell /bin/sh --no-create-home herd-test-no-such-user"; got != want {
		t.Errorf("on /, creating a user plans %q, want %q", got, want)
	}
	for _, bad := range []map[string]any{{"ensure": "gone"}} {
		r := res("user", "alice", bad)
		if _, err := (&User{}).Check(context.Background(), h, &r); err == nil {
			t.Errorf("Check(%v): no error", bad)
		}
	}
	for _, name := range []string{"-ofoo", "a:b", "a b", ""} {
		r := res("user", name, nil)
		if _, err := (&User{}).Check(context.Background(), h, &r); err == nil {
			t.Errorf("Check(user %q): no error", name)
		}
	}
}

// TestUserPasswordCheck: the password is compared with the root's
// etc/shadow in process; a change is sensitive and carries no value; a
// field that would corrupt etc/shadow is refused without quoting it.
func TestUserPasswordCheck(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{
		"passwd": "alice:x:2001:2001::/home/alice:/bin/sh\n",
		"group":  "alice:x:2001:\n",
		"shadow": "root:*:19000:0:99999:7:::\nalice:$6$old$oldhash:19000:0:99999:7:::\n",
	} {
		if err := os.WriteFile(filepath.Join(root, "etc", name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	h := &Host{Root: root, Run: func(context.Context, Cmd) (Result, error) {
		t.Fatal("Check ran a command")
		return Result{}, nil
	}}
	for _, tt := range []struct {
		name, password string
		changes        int
		err            string
	}{
		{"in sync", "$6$old$oldhash", 0, ""},
		{"changed", "$6$new$newhash", 1, ""},
		{"colon", "$6$x$y:0:0", 0, "not a crypt(3) hash"},
		{"newline", "$6$x$y\nroot::0", 0, "not a crypt(3) hash"},
	} {
		r := res("user", "alice", map[string]any{"password": tt.password})
		p, err := (&User{}).Check(context.Background(), h, &r)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) || strings.Contains(err.Error(), tt.password) {
				t.Errorf("%s: Check = %v, want an error %q that does not quote the value", tt.name, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: Check: %v", tt.name, err)
		}
		if len(p.Changes) != tt.changes {
			t.Fatalf("%s: Check = %+v, want %d changes", tt.name, p.Changes, tt.changes)
		}
		for _, c := range p.Changes {
			if c.Attr != "password" || !c.Sensitive || c.From != "" || c.To != "" {
				t.Errorf("%s: change %+v, want a sensitive password change without values", tt.name, c)
			}
			st := p.State.(*accountState)
			if len(st.argv) != 0 || string(st.passwd) != "alice:"+tt.password+"\n" {
				t.Errorf("%s: state %+v, want only chpasswd's input", tt.name, st)
			}
		}
	}
}
