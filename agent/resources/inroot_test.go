package resources

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// outsideDir returns a directory outside every test root holding the
// files an escape would read or write.
func outsideDir(t *testing.T, files map[string]string) string {
	t.Helper()
	out := t.TempDir()
	for name, content := range files {
		p := filepath.Join(out, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// plant makes the symbolic link rel (under root) to target, creating
// rel's parent directories.
func plant(t *testing.T, root, rel, target string) {
	t.Helper()
	p := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, p); err != nil {
		t.Fatal(err)
	}
}

// TestOpenInRoot resolves paths through links the way the host would from
// inside its root, with openat2 and with the fallback.
func TestOpenInRoot(t *testing.T) {
	t.Parallel()
	out := outsideDir(t, map[string]string{"a/b": "outside\n"})
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "a"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "a/b"), []byte("inside\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	plant(t, root, "abs", "/a")
	plant(t, root, "climb", strings.Repeat("../", 20)+"a")
	plant(t, root, "out", out)
	plant(t, root, "rel-out", strings.Repeat("../", 20)+strings.TrimPrefix(out, "/"))
	tests := []struct {
		rel  string
		want string // content, or the error it is
		err  error
	}{
		{rel: "a/b", want: "inside\n"},
		{rel: "abs/b", want: "inside\n"},
		{rel: "climb/b", want: "inside\n"},
		{rel: "out/a/b", err: fs.ErrNotExist},
		{rel: "rel-out/a/b", want: ""},
		{rel: "a/b/c", err: syscall.ENOTDIR},
	}
	for _, portable := range []bool{false, true} {
		for _, tc := range tests {
			fd, err := openInRoot(root, tc.rel, unix.O_RDONLY, portable)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Errorf("openInRoot(%s, portable=%v) = %v, want %v", tc.rel, portable, err, tc.err)
				}
				if err == nil {
					unix.Close(fd)
				}
				continue
			}
			if tc.want == "" {
				// rel-out climbs to the root and then names the outside
				// directory's path again, which the root does not have.
				if !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("openInRoot(%s, portable=%v) = %v, want not found", tc.rel, portable, err)
				}
				continue
			}
			if err != nil {
				t.Errorf("openInRoot(%s, portable=%v): %v", tc.rel, portable, err)
				continue
			}
			f := os.NewFile(uintptr(fd), tc.rel)
			b, err := io.ReadAll(f)
			f.Close()
			if err != nil || string(b) != tc.want {
				t.Errorf("reading %s (portable=%v) = %q, %v; want %q", tc.rel, portable, b, err, tc.want)
			}
		}
	}
}

// TestAccountsNeverLeaveRoot plants account files that lead out of the
// root: lookups and checks read inside the root only, and the shadow
// tools are never run through such a link.
func TestAccountsNeverLeaveRoot(t *testing.T) {
	t.Parallel()
	evil := map[string]string{
		"passwd":  "root:x:0:0:root:/root:/bin/bash\nevil:x:4242:4242::/home/evil:/bin/sh\n",
		"group":   "root:x:0:\nevil:x:4242:\n",
		"shadow":  "root:*:19000:0:99999:7:::\nevil:*:19000:0:99999:7:::\n",
		"gshadow": "root:*::\nevil:*::\n",
	}
	tests := []struct {
		name  string
		plant func(t *testing.T, root, out string)
	}{
		{"etc", func(t *testing.T, root, out string) { plant(t, root, "etc", out) }},
		{"passwd", func(t *testing.T, root, out string) {
			for _, f := range []string{"passwd", "group", "shadow", "gshadow"} {
				plant(t, root, "etc/"+f, filepath.Join(out, f))
			}
		}},
		{"skel", func(t *testing.T, root, out string) { plant(t, root, "etc/skel", out) }},
		{"passwd backup", func(t *testing.T, root, out string) {
			plant(t, root, "etc/passwd-", filepath.Join(out, "passwd"))
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out := outsideDir(t, evil)
			h, _ := newTestHost(t)
			tc.plant(t, h.Root, out)
			before := treeHash(t, out)
			if a, ok, err := LookupUser(h.Root, "evil"); ok || err != nil {
				t.Errorf("LookupUser(evil) = %+v, %v, %v; want not found: the outside passwd was read", a, ok, err)
			}
			f := fileRes("/srv-file", map[string]any{"content": "x\n", "owner": "evil"})
			if _, err := (&File{}).Check(context.Background(), h, &f); err == nil || !strings.Contains(err.Error(), `no user "evil"`) {
				t.Errorf("File Check with owner evil = %v, want no such user", err)
			}
			u := res("user", "alice", map[string]any{"uid": int64(2001)})
			typ := &User{}
			p, err := typ.Check(context.Background(), h, &u)
			if err != nil {
				t.Fatalf("User Check: %v", err)
			}
			if err := typ.Apply(context.Background(), h, p); err == nil || !strings.Contains(err.Error(), "is a symbolic link") {
				t.Errorf("User Apply = %v, want a refusal to follow the link", err)
			}
			if after := treeHash(t, out); after != before {
				t.Errorf("the outside directory changed")
			}
		})
	}
}

// TestDpkgNeverLeavesRoot plants a dpkg database that leads out of the
// root: nothing outside is read, so a package installed there is not
// installed in the root.
func TestDpkgNeverLeavesRoot(t *testing.T) {
	t.Parallel()
	status := "Package: evil\nStatus: install ok installed\nVersion: 1.0\nArchitecture: all\n\n"
	tests := []struct {
		name  string
		plant func(t *testing.T, root, out string)
	}{
		{"status", func(t *testing.T, root, out string) {
			plant(t, root, dpkgStatusPath, filepath.Join(out, "status"))
		}},
		{"var/lib/dpkg", func(t *testing.T, root, out string) { plant(t, root, "var/lib/dpkg", out) }},
		{"updates journal", func(t *testing.T, root, out string) {
			plant(t, root, dpkgUpdatesPath, filepath.Join(out, "updates"))
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out := outsideDir(t, map[string]string{"status": status, "updates/0001": status})
			root := t.TempDir()
			tc.plant(t, root, out)
			before := treeHash(t, out)
			var c dpkgCache
			db, err := c.load(root)
			if err != nil {
				t.Fatalf("load: %v", err)
			}
			if r, ok := db.find("evil"); ok {
				t.Errorf("found %+v: the outside dpkg database was read", r)
			}
			if after := treeHash(t, out); after != before {
				t.Errorf("the outside directory changed")
			}
		})
	}
}

// TestDebCacheNeverLeavesRoot: a site's .deb is written for dpkg under
// var/cache/herd through the one policy, so a var/cache or var/cache/herd
// planted as a link out of a sandbox root is followed only inside it.
func TestDebCacheNeverLeavesRoot(t *testing.T) {
	t.Parallel()
	deb := []byte("not really a deb")
	for _, link := range []string{"var/cache", "var/cache/herd"} {
		t.Run(link, func(t *testing.T) {
			t.Parallel()
			out := outsideDir(t, map[string]string{"keep": "outside\n", "herd/keep": "outside\n"})
			h, files := newTestHost(t)
			digest := files.add(deb)
			plant(t, h.Root, link, out)
			before := treeHash(t, out)
			dir, dirPath, err := debCacheDir(h.Root)
			if err == nil {
				defer dir.Close()
				if !strings.HasPrefix(dirPath, h.Root+"/") {
					t.Errorf("debCacheDir = %s, outside the root %s", dirPath, h.Root)
				}
				name, err := fetchDeb(context.Background(), h, dir, digest)
				if err != nil {
					t.Fatalf("fetchDeb: %v", err)
				}
				got, err := os.ReadFile(filepath.Join(dirPath, name))
				if err != nil || string(got) != string(deb) {
					t.Errorf("the .deb at %s = %q, %v; want %q", filepath.Join(dirPath, name), got, err, deb)
				}
			}
			if after := treeHash(t, out); after != before {
				t.Errorf("writing the .deb (debCacheDir err %v) changed the outside directory", err)
			}
		})
	}
}

// TestSystemdUnitNeverLeavesRoot: a unit directory that is a link out of
// a sandbox root is never written through.
func TestSystemdUnitNeverLeavesRoot(t *testing.T) {
	t.Parallel()
	for _, link := range []string{"etc/systemd/system", "etc/systemd", "etc/systemd/system/web.service"} {
		t.Run(link, func(t *testing.T) {
			t.Parallel()
			out := outsideDir(t, map[string]string{"web.service": "outside\n", "system/web.service": "outside\n"})
			h, _ := newTestHost(t)
			target := out
			if strings.HasSuffix(link, ".service") {
				target = filepath.Join(out, "web.service")
			}
			plant(t, h.Root, link, target)
			before := treeHash(t, out)
			err := writeSystemdUnit(context.Background(), h, filepath.Join(h.Root, "etc/systemd/system/web.service"), "/etc/systemd/system/web.service", []byte("[Unit]\n"))
			if after := treeHash(t, out); after != before {
				t.Errorf("writeSystemdUnit (err %v) changed the outside directory", err)
			}
		})
	}
}

// FuzzOpenInRoot resolves arbitrary paths in a root full of links that
// try to leave it: whatever opens must be inside the root.
func FuzzOpenInRoot(f *testing.F) {
	for _, s := range []string{"a/b", "abs/b", "climb/b", "out/x", "../../etc/passwd", "/etc/passwd", "loop/x", "a/../../..", ".", "dotdot/dotdot/x"} {
		f.Add(s, false)
		f.Add(s, true)
	}
	root := f.TempDir()
	out := f.TempDir()
	for _, l := range []struct{ rel, target string }{
		{"abs", "/a"}, {"climb", "../../../../a"}, {"out", out}, {"loop", "loop"},
		{"dotdot", ".."}, {"a/up", "../../../../../../"},
	} {
		p := filepath.Join(root, l.rel)
		if err := os.MkdirAll(filepath.Join(root, "a"), 0o755); err != nil {
			f.Fatal(err)
		}
		if err := os.Symlink(l.target, p); err != nil {
			f.Fatal(err)
		}
	}
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, rel string, portable bool) {
		if strings.ContainsRune(rel, 0) {
			return
		}
		fd, err := openInRoot(root, rel, unix.O_PATH, portable)
		if err != nil {
			return
		}
		defer unix.Close(fd)
		got, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
		if err != nil {
			t.Fatal(err)
		}
		if got != realRoot && !strings.HasPrefix(got, realRoot+"/") {
			t.Fatalf("openInRoot(%q, portable=%v) opened %s, outside %s", rel, portable, got, realRoot)
		}
	})
}

// TestAccountCacheFollowsChanges: the cache sees an edited passwd, an etc
// directory swapped for another, and etc turned into a link, at once.
func TestAccountCacheFollowsChanges(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	etc := filepath.Join(root, "etc")
	write := func(dir, users string) {
		t.Helper()
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, "passwd"), users)
	}
	var c accountCache
	want := func(step, name string, uid int) {
		t.Helper()
		got, err := c.accountID(root, true, name)
		if err != nil || got != uid {
			t.Errorf("%s: accountID(%s) = %d, %v; want %d", step, name, got, err, uid)
		}
	}
	write(etc, "alice:x:2001:2001::/home/alice:/bin/sh\n")
	want("first read", "alice", 2001)
	write(etc, "alice:x:2002:2001::/home/alice:/bin/sh\n")
	want("edited", "alice", 2002)
	write(filepath.Join(root, "etc.new"), "alice:x:2003:2001::/home/alice:/bin/sh\n")
	if err := os.Rename(etc, filepath.Join(root, "etc.old")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(root, "etc.new"), etc); err != nil {
		t.Fatal(err)
	}
	want("etc swapped", "alice", 2003)
	write(filepath.Join(root, "srv/etc"), "alice:x:2004:2001::/home/alice:/bin/sh\n")
	if err := os.RemoveAll(etc); err != nil {
		t.Fatal(err)
	}
	plant(t, root, "etc", "/srv/etc")
	want("etc a link inside the root", "alice", 2004)
}
