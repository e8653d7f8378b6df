package sandbox

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
)

// treeHash digests every name, mode, owner, link target and content under
// dir, so that a test can show that nothing there changed.
func treeHash(t *testing.T, dir string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		st := fi.Sys().(*syscall.Stat_t)
		line := fmt.Sprintf("%s %v %d:%d", rel, fi.Mode(), st.Uid, st.Gid)
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			line += " -> " + target
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			line += " " + hex.EncodeToString(sum[:])
		}
		lines = append(lines, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// outsideTree returns a directory outside any root, with a few files an
// escape would touch (passwd, a mode that a chmod to 1777 would change).
func outsideTree(t *testing.T) string {
	t.Helper()
	out := t.TempDir()
	if err := os.Chmod(out, 0o750); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"passwd", "status", "keep"} {
		if err := os.WriteFile(filepath.Join(out, name), []byte("outside "+name+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func TestInitLaysOutAnEmptyRoot(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	if !NeedsLayout(root) {
		t.Fatalf("NeedsLayout(empty root) = false, want true")
	}
	if err := Init(root); err != nil {
		t.Fatalf("Init: %v", err)
	}
	if NeedsLayout(root) {
		t.Errorf("NeedsLayout after Init = true, want false")
	}
	for _, tc := range []struct {
		path string
		mode os.FileMode
	}{
		{".", fs.ModeDir | 0o755},
		{"tmp", fs.ModeDir | fs.ModeSticky | 0o777},
		{"root", fs.ModeDir | 0o700},
		{"var/lib/herd", fs.ModeDir | 0o700},
		{"etc/shadow", 0o640},
		{"etc/passwd", 0o644},
	} {
		fi, err := os.Lstat(filepath.Join(root, tc.path))
		if err != nil {
			t.Errorf("lstat %s: %v", tc.path, err)
			continue
		}
		if fi.Mode() != tc.mode {
			t.Errorf("mode of %s = %v, want %v", tc.path, fi.Mode(), tc.mode)
		}
	}
	if b, err := os.ReadFile(filepath.Join(root, "etc/passwd")); err != nil || !strings.HasPrefix(string(b), "root:x:0:0:") {
		t.Errorf("etc/passwd = %q, %v; want root's line first", b, err)
	}
	// A second Init leaves what is there alone.
	if err := os.WriteFile(filepath.Join(root, "etc/passwd"), []byte("mine\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Init(root); err != nil {
		t.Fatalf("second Init: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "etc/passwd")); string(b) != "mine\n" {
		t.Errorf("second Init rewrote etc/passwd: %q", b)
	}
}

// TestNoEscape plants links that lead out of the root where the layout
// goes, and checks that Check refuses the root, that Init refuses it too
// and that nothing outside changed.
func TestNoEscape(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// plant makes the root's links; out is the outside directory.
		plant func(t *testing.T, root, out string)
		want  string // in Check's error
	}{
		{"tmp", func(t *testing.T, root, out string) { symlink(t, out, root, "tmp") }, "tmp is a symbolic link"},
		{"etc", func(t *testing.T, root, out string) { symlink(t, out, root, "etc") }, "etc is a symbolic link"},
		{"var/lib/herd", func(t *testing.T, root, out string) {
			mkdir(t, root, "var/lib")
			symlink(t, out, root, "var/lib/herd")
		}, "var/lib/herd is a symbolic link"},
		{"relative climb", func(t *testing.T, root, out string) {
			rel, err := filepath.Rel(root, out)
			if err != nil {
				t.Fatal(err)
			}
			symlink(t, rel, root, "var")
		}, "var is a symbolic link"},
		{"state database", func(t *testing.T, root, out string) {
			mkdir(t, root, "var/lib/herd")
			symlink(t, filepath.Join(out, "keep"), root, "var/lib/herd/state.db")
		}, "var/lib/herd/state.db is a symbolic link"},
		{"passwd", func(t *testing.T, root, out string) {
			mkdir(t, root, "etc")
			symlink(t, filepath.Join(out, "passwd"), root, "etc/passwd")
		}, "etc/passwd is a symbolic link"},
		{"dpkg status", func(t *testing.T, root, out string) {
			mkdir(t, root, "var/lib/dpkg")
			symlink(t, filepath.Join(out, "status"), root, "var/lib/dpkg/status")
		}, "var/lib/dpkg/status is a symbolic link"},
		{"absolute in-root spelling", func(t *testing.T, root, out string) {
			// An absolute target is refused even when it would name a
			// directory inside the root: os.Root would not follow it.
			symlink(t, "/etc", root, "tmp")
		}, "tmp is a symbolic link to /etc"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			root, out := t.TempDir(), outsideTree(t)
			tc.plant(t, root, out)
			before := treeHash(t, out)
			err := Check(root)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Check = %v, want an error containing %q", err, tc.want)
			}
			if err := Init(root); err == nil {
				t.Errorf("Init = nil, want the refusal")
			}
			if after := treeHash(t, out); after != before {
				t.Errorf("the outside tree changed:\nbefore:\n%s\nafter:\n%s", before, after)
			}
		})
	}
}

// TestInRootLinkIsAccepted: a link that stays inside the root is the
// host's own business.
func TestInRootLinkIsAccepted(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	mkdir(t, root, "srv/tmp")
	symlink(t, "srv/tmp", root, "tmp")
	if err := Init(root); err != nil {
		t.Fatalf("Init with tmp -> srv/tmp: %v", err)
	}
	fi, err := os.Lstat(filepath.Join(root, "srv/tmp"))
	if err != nil || fi.Mode() != fs.ModeDir|fs.ModeSticky|0o777 {
		t.Errorf("srv/tmp = %v, %v; want a 1777 directory", fi.Mode(), err)
	}
}

func TestCheckRefusesForeignOrOpenRoots(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		prepare func(t *testing.T, root string)
		want    string
	}{
		{"world writable", func(t *testing.T, root string) { chmod(t, root, 0o777) }, "writable by group or others"},
		{"group writable", func(t *testing.T, root string) { chmod(t, root, 0o775) }, "writable by group or others"},
		{"another owner", func(t *testing.T, root string) {
			if os.Geteuid() != 0 {
				t.Skip("chown to another uid needs root")
			}
			if err := os.Chown(root, 65534, 65534); err != nil {
				t.Fatal(err)
			}
		}, "owned by uid 65534, not by the invoking user"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			root := t.TempDir()
			tc.prepare(t, root)
			before := treeHash(t, root)
			if err := Check(root); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Check = %v, want an error containing %q", err, tc.want)
			}
			if err := Init(root); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Init = %v, want an error containing %q", err, tc.want)
			}
			if after := treeHash(t, root); after != before {
				t.Errorf("a refused Init changed the root:\nbefore:\n%s\nafter:\n%s", before, after)
			}
		})
	}
}

func TestRealRoot(t *testing.T) {
	t.Parallel()
	if err := Check("/"); err != nil {
		t.Errorf("Check(/) = %v, want nil", err)
	}
	if NeedsLayout("/") {
		t.Errorf("NeedsLayout(/) = true, want false")
	}
	if err := Init("/"); err == nil {
		t.Errorf("Init(/) = nil, want a refusal")
	}
}

func symlink(t *testing.T, target, root, rel string) {
	t.Helper()
	if err := os.Symlink(target, filepath.Join(root, rel)); err != nil {
		t.Fatal(err)
	}
}

func mkdir(t *testing.T, root, rel string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(root, rel), 0o755); err != nil {
		t.Fatal(err)
	}
}

func chmod(t *testing.T, p string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

// TestInitReplacesALeftover: a temporary file a killed Init left (here a
// link out of the root) is removed, never written through, and the file
// it stood for is written whole.
func TestInitReplacesALeftover(t *testing.T) {
	t.Parallel()
	root, out := t.TempDir(), outsideTree(t)
	mkdir(t, root, "etc")
	symlink(t, filepath.Join(out, "passwd"), root, "etc/.herd-tmp-passwd")
	before := treeHash(t, out)
	if err := Init(root); err != nil {
		t.Fatalf("Init: %v", err)
	}
	if after := treeHash(t, out); after != before {
		t.Errorf("the outside tree changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if _, err := os.Lstat(filepath.Join(root, "etc/.herd-tmp-passwd")); !os.IsNotExist(err) {
		t.Errorf("the leftover is still there: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(root, "etc/passwd")); err != nil || !strings.HasPrefix(string(b), "root:x:0:0:") {
		t.Errorf("etc/passwd = %q, %v", b, err)
	}
}
