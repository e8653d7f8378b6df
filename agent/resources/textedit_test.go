package resources

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/herdcm/herd/catalogs"
	"github.com/herdcm/herd/testkit"
)

// mustParse builds a spec from attributes or fails the test.
func lineSpecOf(t *testing.T, attrs map[string]any) lineSpec {
	t.Helper()
	attrs["path"] = "/f"
	r := res("line", "l", attrs)
	s, err := parseLine(&r)
	if err != nil {
		t.Fatalf("parseLine(%v): %v", attrs, err)
	}
	return s
}

// TestLineEdit pins each edit byte for byte: the line changes, nothing
// else does, and the edit of its own result is no change.
func TestLineEdit(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		attrs     map[string]any
		old, want string // want == old: in sync
	}{
		{"present already", map[string]any{"line": "b"}, "a\nb\nc\n", "a\nb\nc\n"},
		{"append", map[string]any{"line": "d"}, "a\r\nb\n", "a\r\nb\nd\n"},
		{"append after an unterminated line", map[string]any{"line": "d"}, "a\nb", "a\nb\nd\n"},
		{"append to an empty file", map[string]any{"line": "d"}, "", "d\n"},
		{"line present anywhere wins over match", map[string]any{"line": "port 1", "match": "^port"}, "port 2\nport 1\n", "port 2\nport 1\n"},
		{"first match replaced", map[string]any{"line": "port 1", "match": "^port"}, "# x\nport 2\nport 3", "# x\nport 1\nport 3"},
		{"no match appends", map[string]any{"line": "port 1", "match": "^port"}, "x\n", "x\nport 1\n"},
		{"replace all", map[string]any{"line": "port 1", "match": "^#?port", "replace_all": true}, "port 1\n#port 2\nx\nport 3\n", "port 1\nport 1\nx\nport 1\n"},
		{"replace all, no match, line there", map[string]any{"line": "port 1", "match": "^zz", "replace_all": true}, "port 1\n", "port 1\n"},
		{"absent", map[string]any{"line": "b", "ensure": "absent"}, "b\na\nb\nc\nb", "a\nc\n"},
		{"absent, nothing there", map[string]any{"line": "b", "ensure": "absent"}, "a\n bb\n", "a\n bb\n"},
		{"absent by match", map[string]any{"match": "^#", "ensure": "absent"}, "#a\nb\n#c\n", "b\n"},
		{"whitespace is part of the line", map[string]any{"line": "a"}, " a\na \n", " a\na \na\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := lineSpecOf(t, tc.attrs)
			got, c := s.edit([]byte(tc.old))
			if string(got) != tc.want {
				t.Errorf("edit(%q) = %q, want %q", tc.old, got, tc.want)
			}
			if (c == nil) != (tc.want == tc.old) {
				t.Errorf("edit(%q) change = %+v, want one only when the content changes", tc.old, c)
			}
			if again, c := s.edit(got); c != nil || string(again) != string(got) {
				t.Errorf("edit of its own result changed %q to %q (%+v)", got, again, c)
			}
		})
	}
}

// TestINIEdit pins each ini edit byte for byte.
func TestINIEdit(t *testing.T) {
	t.Parallel()
	const conf = "; comment\n[server]\nport=80\n  host = a  ; not a comment\n\n# more\n[client]\nport = 1\n"
	for _, tc := range []struct {
		name      string
		attrs     map[string]any
		old, want string
	}{
		{"in sync", map[string]any{"section": "server", "setting": "port", "value": "80"}, conf, conf},
		{"in sync despite blanks", map[string]any{"section": "server", "setting": "port", "value": "80"}, "[server]\n port =   80 \t\r\n", "[server]\n port =   80 \t\r\n"},
		{"value replaced, spacing kept", map[string]any{"section": "server", "setting": "port", "value": "8080"}, conf, strings.Replace(conf, "port=80", "port=8080", 1)},
		{"CRLF kept", map[string]any{"section": "s", "setting": "k", "value": "2"}, "[s]\r\nk = 1\r\n", "[s]\r\nk = 2\r\n"},
		{"added after the section's last line", map[string]any{"section": "server", "setting": "workers", "value": "4"}, conf, strings.Replace(conf, "not a comment\n", "not a comment\nworkers = 4\n", 1)},
		{"added to an empty last section", map[string]any{"section": "b", "setting": "k", "value": "v"}, "[a]\nx = 1\n\n[b]", "[a]\nx = 1\n\n[b]\nk = v\n"},
		{"new section appended", map[string]any{"section": "new", "setting": "k", "value": "v"}, "[a]\nx = 1", "[a]\nx = 1\n\n[new]\nk = v\n"},
		{"new section in an empty file", map[string]any{"section": "new", "setting": "k", "value": "v"}, "", "[new]\nk = v\n"},
		{"top of the file", map[string]any{"setting": "debug", "value": "no"}, "# c\nname = x\n\n[a]\ndebug = yes\n", "# c\nname = x\ndebug = no\n\n[a]\ndebug = yes\n"},
		{"top of a file that starts with a section", map[string]any{"setting": "debug", "value": "no"}, "[a]\n", "debug = no\n[a]\n"},
		{"every occurrence set", map[string]any{"section": "a", "setting": "k", "value": "2"}, "[a]\nk = 1\n[b]\nk = 1\n[a]\nk = 3\n", "[a]\nk = 2\n[b]\nk = 1\n[a]\nk = 2\n"},
		{"absent", map[string]any{"section": "client", "setting": "port", "ensure": "absent"}, conf, strings.Replace(conf, "[client]\nport = 1\n", "[client]\n", 1)},
		{"absent, other section untouched", map[string]any{"section": "x", "setting": "port", "ensure": "absent"}, conf, conf},
		{"a section named in a comment is no section", map[string]any{"section": "a", "setting": "k", "value": "v"}, "# [a]\n", "# [a]\n\n[a]\nk = v\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.attrs["path"] = "/f.ini"
			r := res("ini", "i", tc.attrs)
			s, err := parseINISpec(&r)
			if err != nil {
				t.Fatal(err)
			}
			got, c := s.edit([]byte(tc.old))
			if string(got) != tc.want {
				t.Errorf("edit(%q) = %q, want %q", tc.old, got, tc.want)
			}
			if (c == nil) != (tc.want == tc.old) {
				t.Errorf("edit(%q) change = %+v, want one only when the content changes", tc.old, c)
			}
			if again, c := s.edit(got); c != nil || string(again) != string(got) {
				t.Errorf("edit of its own result changed %q to %q (%+v)", got, again, c)
			}
		})
	}
}

// TestFstabEdit pins each fstab edit byte for byte.
func TestFstabEdit(t *testing.T) {
	t.Parallel()
	data := map[string]any{"device": "/dev/sdb1", "fstype": "ext4"}
	for _, tc := range []struct {
		name      string
		point     string
		attrs     map[string]any
		old, want string
	}{
		{"in sync, defaults filled", "/srv", data, "# x\n/dev/sdb1  /srv ext4 defaults\n", "# x\n/dev/sdb1  /srv ext4 defaults\n"},
		{"appended", "/srv", data, fstabFixture, fstabFixture + "\n/dev/sdb1\t/srv\text4\tdefaults\t0\t0\n"},
		{"replaced in place", "/srv", data, "a /b c d 0 0\n/dev/sda9 /srv xfs defaults 0 2\n#z\n", "a /b c d 0 0\n/dev/sdb1\t/srv\text4\tdefaults\t0\t0\n#z\n"},
		{"duplicate removed", "/srv", data, "/dev/sdb1 /srv ext4 defaults 0 0\n/dev/sdc /srv ext4 defaults 0 0\n", "/dev/sdb1 /srv ext4 defaults 0 0\n"},
		{"escaped mount point", "/mnt/my disk", data, "/dev/sdb1 /mnt/my\\040disk ext4 defaults 0 0\n", "/dev/sdb1 /mnt/my\\040disk ext4 defaults 0 0\n"},
		{"escaped on write", "/mnt/my disk", data, "", "/dev/sdb1\t/mnt/my\\040disk\text4\tdefaults\t0\t0\n"},
		{"a commented entry is no entry", "/srv", data, "#/dev/sdb1 /srv ext4 defaults 0 0\n", "#/dev/sdb1 /srv ext4 defaults 0 0\n/dev/sdb1\t/srv\text4\tdefaults\t0\t0\n"},
		{"absent", "/srv", map[string]any{"ensure": "absent"}, "a /b c d\n/dev/sdb1 /srv ext4 defaults 0 0\nz /y x w", "a /b c d\nz /y x w"},
		{"absent, not there", "/srv", map[string]any{"ensure": "absent"}, "a /srv2 c d\n", "a /srv2 c d\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := res("mount", tc.point, tc.attrs)
			s, err := parseMount(&r)
			if err != nil {
				t.Fatal(err)
			}
			got, c := s.editFstab([]byte(tc.old))
			if string(got) != tc.want {
				t.Errorf("editFstab(%q) = %q, want %q", tc.old, got, tc.want)
			}
			if (c == nil) != (tc.want == tc.old) {
				t.Errorf("editFstab(%q) change = %+v, want one only when the content changes", tc.old, c)
			}
			if again, c := s.editFstab(got); c != nil {
				t.Errorf("edit of its own result changed %q to %q (%+v)", got, again, c)
			}
		})
	}
}

// TestEditPlanIsHonest checks that what noop shows is what Apply does:
// the plan's diff, applied to the file as it was, gives the file Apply
// wrote.
func TestEditPlanIsHonest(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		typ  Type
		r    catalogs.Resource
		file string
		old  string
	}{
		{&Line{}, res("line", "l", map[string]any{"path": "/etc/a.conf", "line": "x = 2", "match": "^x ="}), "etc/a.conf", "a\nx = 1\nb\n"},
		{&INI{}, res("ini", "i", map[string]any{"path": "/etc/a.ini", "section": "s", "setting": "k", "value": "v"}), "etc/a.ini", "[t]\nk = 1\n"},
		{&Mount{}, res("mount", "/srv", map[string]any{"device": "/dev/sdb1", "fstype": "ext4"}), "etc/fstab", fstabFixture},
		{&Cron{}, res("cron", "job", map[string]any{"schedule": "@daily", "command": "/bin/true"}), "etc/cron.d/job", "@daily root /bin/false\n"},
	} {
		t.Run(tc.r.ID, func(t *testing.T) {
			h, _ := newTestHost(t)
			writeRootFile(t, h, tc.file, tc.old)
			p, err := tc.typ.Check(context.Background(), h, &tc.r)
			if err != nil || p.InSync() {
				t.Fatalf("Check = %+v, %v; want changes", p, err)
			}
			diff := ""
			for _, c := range p.Changes {
				diff += c.Diff
			}
			if diff == "" {
				t.Fatalf("plan %+v shows no diff", p.Changes)
			}
			if err := tc.typ.Apply(context.Background(), h, p); err != nil {
				t.Fatal(err)
			}
			got := readFile(t, filepath.Join(h.Root, tc.file))
			patched, err := applyUnifiedDiff(tc.old, diff)
			if err != nil || patched != got {
				t.Errorf("the plan's diff applied to the old file = %q (%v); Apply wrote %q", patched, err, got)
			}
		})
	}
}

// TestEditsCompose runs several line and ini resources on one file at
// once, as the engine may (in parallel): every edit must survive, and a
// second run is in sync.
func TestEditsCompose(t *testing.T) {
	t.Parallel()
	h, _ := newTestHost(t)
	const start = "# app\n[main]\nport = 1\n"
	writeRootFile(t, h, "etc/app.conf", start)
	var rs []catalogs.Resource
	var types []Type
	for i := range 8 {
		rs = append(rs, res("line", fmt.Sprintf("l%d", i), map[string]any{"path": "/etc/app.conf", "line": fmt.Sprintf("# note %d", i)}))
		types = append(types, &Line{})
		rs = append(rs, res("ini", fmt.Sprintf("i%d", i), map[string]any{"path": "/etc/app.conf", "section": "main", "setting": fmt.Sprintf("k%d", i), "value": fmt.Sprint(i)}))
		types = append(types, &INI{})
	}
	ctx := context.Background()
	// Every Check first, as a run's noop would show them, then every
	// Apply at once: each plan was made before the others changed the file.
	plans := make([]*Plan, len(rs))
	for i := range rs {
		p, err := types[i].Check(ctx, h, &rs[i])
		if err != nil || p.InSync() {
			t.Fatalf("Check(%s) = %+v, %v; want changes", rs[i].ID, p, err)
		}
		plans[i] = p
	}
	var wg sync.WaitGroup
	for i := range rs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := types[i].Apply(ctx, h, plans[i]); err != nil {
				t.Errorf("Apply(%s): %v", rs[i].ID, err)
			}
		}()
	}
	wg.Wait()
	for i := range rs {
		if p, err := types[i].Check(ctx, h, &rs[i]); err != nil || !p.InSync() {
			t.Errorf("second run: Check(%s) = %+v, %v; want in sync", rs[i].ID, p, err)
		}
	}
	got := readFile(t, filepath.Join(h.Root, "etc/app.conf"))
	if !strings.HasPrefix(got, start) {
		t.Errorf("the file's first lines changed: %q", got)
	}
	noTempFiles(t, h.Root)
}

// TestEditKeepsModeAndOwner checks that an edited file keeps its owner,
// group and mode, and that its old content is in the content store.
func TestEditKeepsModeAndOwner(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		typ Type
		r   catalogs.Resource
	}{
		{&Line{}, res("line", "l", map[string]any{"path": "/etc/secret.conf", "line": "x"})},
		{&INI{}, res("ini", "i", map[string]any{"path": "/etc/secret.conf", "section": "s", "setting": "k", "value": "v"})},
	} {
		t.Run(tc.r.ID, func(t *testing.T) {
			h, _ := newTestHost(t)
			p := filepath.Join(h.Root, "etc/secret.conf")
			writeTestFile(t, p, "old\n", 0o640)
			uid, gid := os.Getuid(), os.Getgid()
			if os.Geteuid() == 0 {
				uid, gid = 1234, 5678
				if err := os.Chown(p, uid, gid); err != nil {
					t.Fatal(err)
				}
			}
			plan, err := tc.typ.Check(context.Background(), h, &tc.r)
			if err != nil {
				t.Fatal(err)
			}
			if err := tc.typ.Apply(context.Background(), h, plan); err != nil {
				t.Fatal(err)
			}
			mode, u, g := stat(t, p)
			if mode != 0o640 || int(u) != uid || int(g) != gid {
				t.Errorf("after the edit: mode %04o owner %d:%d, want 0640 %d:%d", mode, u, g, uid, gid)
			}
			if saved := h.Content.(*dirContent).log; len(saved) != 1 || saved[0] != "/etc/secret.conf" {
				t.Errorf("content store saved %v, want the old /etc/secret.conf", saved)
			}
		})
	}
}

// TestEditNeverWritesOutsideRoot plants links at the edited path and in
// its parents, pointing out of the host root: no edit may follow them out.
func TestEditNeverWritesOutsideRoot(t *testing.T) {
	t.Parallel()
	outside := t.TempDir()
	victim := filepath.Join(outside, "victim.conf")
	writeTestFile(t, victim, "[s]\nk = outside\n", 0o644)
	for _, tc := range []struct {
		name  string
		plant func(t *testing.T, root string)
		// wantErr is part of the error; "" means the edit happens inside
		// the root instead.
		wantErr string
	}{
		{"link at the path", func(t *testing.T, root string) {
			os.MkdirAll(filepath.Join(root, "etc"), 0o755)
			if err := os.Symlink(victim, filepath.Join(root, "etc/app.conf")); err != nil {
				t.Fatal(err)
			}
		}, "is a symbolic link"},
		{"absolute link as the parent", func(t *testing.T, root string) {
			if err := os.Symlink(outside, filepath.Join(root, "etc")); err != nil {
				t.Fatal(err)
			}
		}, "does not exist"},
		{"relative link climbing out", func(t *testing.T, root string) {
			rel, err := filepath.Rel(root, outside)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("../../../../../../../../"+rel, filepath.Join(root, "etc")); err != nil {
				t.Fatal(err)
			}
		}, "does not exist"},
	} {
		for _, r := range []catalogs.Resource{
			res("line", "l", map[string]any{"path": "/etc/victim.conf", "line": "pwned"}),
			res("ini", "i", map[string]any{"path": "/etc/victim.conf", "section": "s", "setting": "k", "value": "pwned"}),
			res("line", "l2", map[string]any{"path": "/etc/app.conf", "line": "pwned"}),
		} {
			t.Run(tc.name+"/"+r.ID+r.String("path"), func(t *testing.T) {
				h, _ := newTestHost(t)
				tc.plant(t, h.Root)
				typ := Types()[r.Type]
				p, err := typ.Check(context.Background(), h, &r)
				if err == nil && !p.InSync() {
					err = typ.Apply(context.Background(), h, p)
				}
				if got := readFile(t, victim); got != "[s]\nk = outside\n" {
					t.Fatalf("the file outside the root was changed: %q", got)
				}
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					// A link at a path the resource does not name is no
					// error: then nothing may have been written outside.
					if !(r.String("path") == "/etc/victim.conf" && tc.name == "link at the path") {
						t.Errorf("error = %v, want one containing %q", err, tc.wantErr)
					}
				}
			})
		}
	}
}

// TestNoCommandWhenInSync checks that a run that changes nothing starts
// no process: every converged line, ini, cron, sysctl and (sandboxed)
// mount resource is checked with a Host whose Run fails the test.
func TestNoCommandWhenInSync(t *testing.T) {
	t.Parallel()
	h, _ := newTestHost(t)
	writeRootFile(t, h, "etc/app.conf", "[a]\n")
	writeRootFile(t, h, "etc/fstab", fstabFixture)
	sysctlSandbox(t, h, "0\n")
	os.MkdirAll(filepath.Join(h.Root, "etc/cron.d"), 0o755)
	cases := []struct {
		typ Type
		r   catalogs.Resource
	}{
		{&Line{}, res("line", "l", map[string]any{"path": "/etc/app.conf", "line": "# x"})},
		{&INI{}, res("ini", "i", map[string]any{"path": "/etc/app.conf", "section": "a", "setting": "k", "value": "v"})},
		{&Cron{}, res("cron", "job", map[string]any{"schedule": "@daily", "command": "/bin/true"})},
		{&Sysctl{}, res("sysctl", "net.ipv4.ip_forward", map[string]any{"value": "1"})},
		{&Mount{}, res("mount", "/srv", map[string]any{"device": "/dev/sdb1", "fstype": "ext4"})},
	}
	ctx := context.Background()
	var mu sync.Mutex
	var ran []string
	h.Run = func(_ context.Context, c Cmd) (Result, error) {
		mu.Lock()
		defer mu.Unlock()
		ran = append(ran, strings.Join(c.Argv, " "))
		return Result{}, fmt.Errorf("no command may run here")
	}
	for _, tc := range cases {
		p, err := tc.typ.Check(ctx, h, &tc.r)
		if err != nil {
			t.Fatalf("Check(%s): %v", tc.r.ID, err)
		}
		if err := tc.typ.Apply(ctx, h, p); err != nil {
			t.Fatalf("Apply(%s): %v", tc.r.ID, err)
		}
	}
	for _, tc := range cases {
		if p, err := tc.typ.Check(ctx, h, &tc.r); err != nil || !p.InSync() {
			t.Errorf("Check(%s) = %+v, %v; want in sync", tc.r.ID, p, err)
		}
	}
	if len(ran) > 0 {
		t.Errorf("commands ran: %q", ran)
	}
}

// TestMountUnderSandboxSaysSo checks that ensure = mounted under a
// sandbox root manages the entry and says, in the plan, that the mount
// state is not managed, instead of pretending.
func TestMountUnderSandboxSaysSo(t *testing.T) {
	t.Parallel()
	h, _ := newTestHost(t)
	writeRootFile(t, h, "etc/fstab", "")
	r := res("mount", "/srv", map[string]any{"device": "/dev/sdb1", "fstype": "ext4"})
	p, err := (&Mount{}).Check(context.Background(), h, &r)
	if err != nil {
		t.Fatal(err)
	}
	var said bool
	for _, c := range p.Changes {
		if c.Attr == "mount state not managed under --root" {
			said = true
		}
	}
	if !said {
		t.Errorf("plan %+v does not say that the mount state is not managed", p.Changes)
	}
}

// TestEditBadInput gives each type a hand-made catalog entry the
// compiler would refuse: Check fails naming the attribute at fault.
func TestEditBadInput(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		typ  Type
		r    catalogs.Resource
		attr string
	}{
		{&Line{}, res("line", "l", map[string]any{"path": "etc/x", "line": "a"}), "path"},
		{&Line{}, res("line", "l", map[string]any{"path": "/etc/../x", "line": "a"}), "path"},
		{&Line{}, res("line", "l", map[string]any{"path": "/etc/x", "line": "a\nb"}), "line"},
		{&Line{}, res("line", "l", map[string]any{"path": "/etc/x", "line": "a", "match": "("}), "match"},
		{&Line{}, res("line", "l", map[string]any{"path": "/etc/x", "line": "a", "ensure": "gone"}), "ensure"},
		{&Line{}, res("line", "l", map[string]any{"path": "/etc/x"}), "line"},
		{&INI{}, res("ini", "i", map[string]any{"path": "/etc/x", "setting": "a=b", "value": "1"}), "setting"},
		{&INI{}, res("ini", "i", map[string]any{"path": "/etc/x", "section": "a]", "setting": "a", "value": "1"}), "section"},
		{&INI{}, res("ini", "i", map[string]any{"path": "/etc/x", "setting": "a"}), "value"},
		{&Cron{}, res("cron", "a.b", map[string]any{"schedule": "@daily", "command": "/bin/true"}), "name"},
		{&Cron{}, res("cron", "../../x", map[string]any{"schedule": "@daily", "command": "/bin/true"}), "name"},
		{&Cron{}, res("cron", "a", map[string]any{"schedule": "* * *", "command": "/bin/true"}), "schedule"},
		{&Cron{}, res("cron", "a", map[string]any{"schedule": "@daily", "command": "/bin/true\n* * * * * root /bin/evil"}), "command"},
		{&Cron{}, res("cron", "a", map[string]any{"schedule": "@daily", "command": "x", "environment": map[string]string{"A B": "x"}}), "environment"},
		{&Sysctl{}, res("sysctl", "../../etc/passwd", map[string]any{"value": "1"}), "name"},
		{&Sysctl{}, res("sysctl", "net.ipv4.ip_forward", map[string]any{"value": "1\n2"}), "value"},
		{&Mount{}, res("mount", "srv", map[string]any{"device": "/dev/sdb1", "fstype": "ext4"}), "name"},
		{&Mount{}, res("mount", "/srv", map[string]any{"device": "/dev/sdb1"}), "fstype"},
		{&Mount{}, res("mount", "/srv", map[string]any{"device": "/dev/sdb1", "fstype": "ext4", "options": "a b"}), "options"},
	} {
		t.Run(tc.r.ID, func(t *testing.T) {
			h, _ := newTestHost(t)
			_, err := tc.typ.Check(context.Background(), h, &tc.r)
			if err == nil || !strings.Contains(err.Error(), tc.attr) {
				t.Errorf("Check(%s %v) = %v, want an error naming %q", tc.r.ID, tc.r.Attrs, err, tc.attr)
			}
		})
	}
}

// TestSysctlReadsTheKernel checks a parameter of this machine's kernel
// through the real /proc/sys (read only: persist = false, no Apply).
func TestSysctlReadsTheKernel(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("/proc/sys/kernel/ostype")
	if err != nil {
		t.Skipf("no /proc/sys here: %v", err)
	}
	h, _ := newTestHost(t)
	h.Root = "/"
	r := res("sysctl", "kernel.ostype", map[string]any{"value": "  " + strings.TrimSpace(string(b)) + " ", "persist": false})
	if p, err := (&Sysctl{}).Check(context.Background(), h, &r); err != nil || !p.InSync() {
		t.Errorf("Check(kernel.ostype = %q) = %+v, %v; want in sync", b, p, err)
	}
	r = res("sysctl", "kernel.ostype", map[string]any{"value": "Plan9", "persist": false})
	p, err := (&Sysctl{}).Check(context.Background(), h, &r)
	if err != nil || len(p.Changes) != 1 || p.Changes[0].From != strings.TrimSpace(string(b)) {
		t.Errorf("Check(kernel.ostype = Plan9) = %+v, %v; want one change from %q", p, err, b)
	}
}

// TestMountReal mounts and unmounts a tmpfs under a temporary directory
// on this machine's real root, with the fstab entry kept in a temporary
// file (the machine's /etc/fstab is never touched).
func TestMountReal(t *testing.T) {
	testkit.NeedRoot(t, "mounting a tmpfs")
	t.Parallel()
	dir := t.TempDir()
	point := filepath.Join(dir, "mnt")
	if err := os.Mkdir(point, 0o755); err != nil {
		t.Fatal(err)
	}
	writeTestFile(t, filepath.Join(dir, "fstab"), "# test fstab\n", 0o644)
	t.Cleanup(func() {
		// Whatever the test did, leave nothing mounted.
		syscall.Unmount(point, syscall.MNT_DETACH)
	})
	h, _ := newTestHost(t)
	h.Root = "/"
	h.Run = func(ctx context.Context, c Cmd) (Result, error) { return RunCommand(ctx, "/", c) }
	m := &Mount{fstab: filepath.Join(dir, "fstab")}
	ctx := context.Background()
	step := func(ensure string, wantMounted bool) {
		t.Helper()
		r := res("mount", point, map[string]any{"device": "tmpfs", "fstype": "tmpfs", "options": "size=1m,mode=0700", "ensure": ensure})
		p, err := m.Check(ctx, h, &r)
		if err != nil {
			t.Fatalf("%s: Check: %v", ensure, err)
		}
		if err := m.Apply(ctx, h, p); err != nil {
			t.Fatalf("%s: Apply: %v", ensure, err)
		}
		if again, err := m.Check(ctx, h, &r); err != nil || !again.InSync() {
			t.Fatalf("%s: Check after Apply = %+v, %v; want in sync", ensure, again, err)
		}
		mounted, err := m.mounted(point)
		if err != nil || mounted != wantMounted {
			t.Fatalf("%s: mounted = %v, %v; want %v", ensure, mounted, err, wantMounted)
		}
	}
	step("mounted", true)
	if fstab := readFile(t, filepath.Join(dir, "fstab")); !strings.Contains(fstab, "tmpfs\t"+point+"\ttmpfs\tsize=1m,mode=0700\t0\t0\n") {
		t.Errorf("fstab = %q, want the entry", fstab)
	}
	step("unmounted", false)
	step("mounted", true)
	step("absent", false)
	if fstab := readFile(t, filepath.Join(dir, "fstab")); fstab != "# test fstab\n" {
		t.Errorf("fstab after absent = %q, want the original", fstab)
	}
}

// FuzzINIEdit edits fuzzer-made INI files: parsing never fails, an edit
// of its own result is no change, and a removal leaves no occurrence.
func FuzzINIEdit(f *testing.F) {
	f.Add("; c\n[a]\nk = v\n", "a", "k", "2")
	f.Add("[a]\r\nk=1\r\n[b]\nk\n=\n[", "b", "k", "")
	f.Add("", "", "x", "y")
	f.Add("[ a ]\n k = 1 \n[a]\nk = 3", "a", "k", "1")
	f.Fuzz(func(t *testing.T, content, section, setting, value string) {
		r := res("ini", "i", map[string]any{"path": "/f", "section": section, "setting": setting, "value": value})
		s, err := parseINISpec(&r)
		if err != nil {
			return
		}
		got, _ := s.edit([]byte(content))
		if again, c := s.edit(got); c != nil {
			t.Fatalf("set: edit of %q gave %q, then changed again to %q (%+v)", content, got, again, c)
		}
		s.absent = true
		gone, _ := s.edit(got)
		if again, c := s.edit(gone); c != nil {
			t.Fatalf("absent: edit of %q gave %q, then changed again to %q", got, gone, again)
		}
		for i, il := range parseINI(splitText(gone)) {
			if il.kind == iniSetting && il.section == s.section && il.name == s.setting {
				t.Fatalf("absent: line %d of %q still sets it", i+1, gone)
			}
		}
	})
}

// FuzzFstabEdit edits fuzzer-made fstab files: an entry written is read
// back as the same fields, an edit of its own result is no change, and
// the mountinfo reader never fails.
func FuzzFstabEdit(f *testing.F) {
	f.Add(fstabFixture, "/srv", "/dev/sdb1", "ext4", "defaults")
	f.Add("a /b\\040c d e\n\\", "/b c", "x\\y", "t", "o")
	f.Add("36 35 98:0 /mnt1 /mnt\\0402 rw,noatime master:1 - ext3 /dev/root rw,errors=continue\n", "/mnt 2", "tmpfs", "tmpfs", "size=1m")
	f.Fuzz(func(t *testing.T, content, point, device, fstype, options string) {
		parseMountinfo([]byte(content))
		r := res("mount", point, map[string]any{"device": device, "fstype": fstype, "options": options})
		s, err := parseMount(&r)
		if err != nil {
			return
		}
		got, _ := s.editFstab([]byte(content))
		if again, c := s.editFstab(got); c != nil {
			t.Fatalf("edit of %q gave %q, then changed again to %q (%+v)", content, got, again, c)
		}
		var found bool
		for _, e := range parseFstab(splitText(got)) {
			if e.fields != nil && e.fields[1] == s.point {
				if found || !s.sameEntry(e.fields) {
					t.Fatalf("edit of %q gave %q: entry %q", content, got, e.fields)
				}
				found = true
			}
		}
		if !found {
			t.Fatalf("edit of %q gave %q, without the entry", content, got)
		}
	})
}

// FuzzLineEdit edits fuzzer-made files with fuzzer-made lines: the edit
// converges, and with ensure = present the line is then in the file.
func FuzzLineEdit(f *testing.F) {
	f.Add("a\nb\n", "c", "^b", false)
	f.Add("port 1\r\n#port 2", "port 3", "port", true)
	f.Add("", "x", "", false)
	f.Fuzz(func(t *testing.T, content, line, match string, all bool) {
		attrs := map[string]any{"path": "/f", "line": line}
		if match != "" {
			attrs["match"] = match
			attrs["replace_all"] = all
		}
		r := res("line", "l", attrs)
		s, err := parseLine(&r)
		if err != nil {
			return
		}
		got, _ := s.edit([]byte(content))
		if again, c := s.edit(got); c != nil {
			t.Fatalf("edit of %q gave %q, then changed again to %q (%+v)", content, got, again, c)
		}
		var present bool
		for _, l := range splitText(got) {
			present = present || string(l.text) == line
		}
		if !present {
			t.Fatalf("edit of %q gave %q, without the line %q", content, got, line)
		}
	})
}

// TestPurgeKeepsEditedFiles checks that a purged directory keeps the
// files the edit types write in it (a cron job, a persisted sysctl, a
// file a line edits): they are managed, only not by a file resource.
func TestPurgeKeepsEditedFiles(t *testing.T) {
	t.Parallel()
	h, _ := newTestHost(t)
	for _, p := range []string{"etc/cron.d/backup", "etc/cron.d/stray", "etc/sysctl.d/60-herd-vm.swappiness.conf", "etc/sysctl.d/60-herd-vm.overcommit_memory.conf", "etc/app/app.conf"} {
		writeRootFile(t, h, p, "x\n")
	}
	dirs := []catalogs.Resource{
		fileRes("/etc/cron.d", map[string]any{"ensure": "directory", "purge": true}),
		fileRes("/etc/sysctl.d", map[string]any{"ensure": "directory", "purge": true}),
		fileRes("/etc/app", map[string]any{"ensure": "directory", "purge": true}),
	}
	setCatalog(h, append(dirs,
		res("cron", "backup", map[string]any{"schedule": "@daily", "command": "/bin/true"}),
		res("sysctl", "vm.swappiness", map[string]any{"value": "10"}),
		// Not persisted: its file is a stray.
		res("sysctl", "vm.overcommit_memory", map[string]any{"value": "1", "persist": false}),
		res("line", "l", map[string]any{"path": "/etc/app/app.conf", "line": "x"}),
	)...)
	var got []string
	for _, d := range dirs {
		for _, c := range converge(t, &File{}, h, d) {
			got = append(got, c.From)
		}
	}
	want := []string{"/etc/cron.d/stray", "/etc/sysctl.d/60-herd-vm.overcommit_memory.conf"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("purged %q, want %q", got, want)
	}
}

// TestOwnedFilesNeverLeaveRoot plants links out of the root where cron and
// sysctl write (/etc/cron.d, /etc/sysctl.d, /proc/sys): nothing may be
// written outside, whatever the outcome.
func TestOwnedFilesNeverLeaveRoot(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		link string // the link planted under the root, to the outside directory
		typ  Type
		r    catalogs.Resource
	}{
		{"etc/cron.d", &Cron{}, res("cron", "job", map[string]any{"schedule": "@daily", "command": "/bin/true"})},
		{"etc/sysctl.d", &Sysctl{}, res("sysctl", "net.ipv4.ip_forward", map[string]any{"value": "1"})},
		{"proc/sys/net", &Sysctl{}, res("sysctl", "net.ipv4.ip_forward", map[string]any{"value": "1"})},
	} {
		t.Run(tc.link, func(t *testing.T) {
			outside := t.TempDir()
			writeTestFile(t, filepath.Join(outside, "ipv4/ip_forward"), "0\n", 0o644)
			h, _ := newTestHost(t)
			sysctlSandbox(t, h, "0\n")
			os.MkdirAll(filepath.Join(h.Root, "etc/cron.d"), 0o755)
			target := filepath.Join(h.Root, tc.link)
			if err := os.RemoveAll(target); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(outside, target); err != nil {
				t.Fatal(err)
			}
			before := treeHash(t, outside)
			p, err := tc.typ.Check(context.Background(), h, &tc.r)
			if err == nil && !p.InSync() {
				err = tc.typ.Apply(context.Background(), h, p)
			}
			if err == nil {
				t.Errorf("%s through a link out of the root: no error", tc.r.ID)
			}
			if treeHash(t, outside) != before {
				t.Errorf("%s wrote outside the root", tc.r.ID)
			}
		})
	}
}
