package resources

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/herdcm/herd/catalogs"
)

// update rewrites golden files under testdata/ instead of comparing with
// them. It is the package's one -update flag (dpkg_test.go's init steps
// aside for it).
var update = flag.Bool("update", false, "rewrite golden files under testdata/")

// digestOf is the catalog digest of b.
func digestOf(b []byte) string { return catalogs.Digest(b) }

// writeTestFile writes a file, creating its directory, with an exact mode.
func writeTestFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// fileRes is a file resource at p with the given attributes.
func fileRes(p string, attrs map[string]any) catalogs.Resource {
	a := map[string]any{"path": p}
	for k, v := range attrs {
		a[k] = v
	}
	return res("file", p, a)
}

// setCatalog makes rs the host's catalog, sorted by id as compile does.
func setCatalog(h *Host, rs ...catalogs.Resource) {
	rs = slices.Clone(rs)
	slices.SortFunc(rs, func(a, b catalogs.Resource) int { return strings.Compare(a.ID, b.ID) })
	h.Catalog = &catalogs.Catalog{Node: "test", Resources: rs}
}

// mustCheck checks r and fails the test on an error.
func mustCheck(t *testing.T, f *File, h *Host, r catalogs.Resource) *Plan {
	t.Helper()
	p, err := f.Check(context.Background(), h, &r)
	if err != nil {
		t.Fatalf("Check(%s): %v", r.ID, err)
	}
	return p
}

// converge applies r and checks that it is then in sync; it returns the
// changes the first check planned.
func converge(t *testing.T, f *File, h *Host, r catalogs.Resource) []Change {
	t.Helper()
	p := mustCheck(t, f, h, r)
	if p.InSync() {
		return nil
	}
	if err := f.Apply(context.Background(), h, p); err != nil {
		t.Fatalf("Apply(%s): %v", r.ID, err)
	}
	if again := mustCheck(t, f, h, r); !again.InSync() {
		t.Fatalf("Check(%s) after Apply = %+v, want in sync", r.ID, again.Changes)
	}
	return p.Changes
}

// readers runs a test once for each way Check reads the host: openat2
// and the fallback for kernels without it (filepath-securejoin).
func readers(t *testing.T, test func(t *testing.T, newFile func() *File)) {
	t.Helper()
	for _, portable := range []bool{false, true} {
		name := "openat2"
		if portable {
			name = "pathrs-lite"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			test(t, func() *File { return &File{portable: portable} })
		})
	}
}

// ignoreDiff compares changes without their diff text, which the diff
// tests cover.
var ignoreDiff = cmpopts.IgnoreFields(Change{}, "Diff")

// stat returns the mode bits, uid and gid at p, without following a link.
func stat(t *testing.T, p string) (mode uint32, uid, gid uint32) {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return st.Mode & 0o7777, st.Uid, st.Gid
}

// readFile returns the content at p.
func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// noTempFiles fails if Apply left a temporary file anywhere under root.
func noTempFiles(t *testing.T, root string) {
	t.Helper()
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), ".herd-") {
			t.Errorf("temporary file left behind: %s", p)
		}
		return nil
	})
}

func TestFileConvergeFromNothing(t *testing.T) {
	t.Parallel()
	motd := "hello\nworld\n"
	tests := []struct {
		name  string
		res   catalogs.Resource
		setup func(t *testing.T, root string)
		want  []Change
		check func(t *testing.T, root string)
	}{{
		name: "file with content and mode",
		res:  fileRes("/etc/motd", map[string]any{"content": motd, "mode": "0640"}),
		setup: func(t *testing.T, root string) {
			os.Mkdir(filepath.Join(root, "etc"), 0o755)
		},
		want: []Change{
			{Attr: "ensure", From: "absent", To: "file", Action: Create},
			{Attr: "content", To: digestOf([]byte(motd)), Action: Create},
			{Attr: "mode", To: "0640", Action: Create},
		},
		check: func(t *testing.T, root string) {
			if got := readFile(t, filepath.Join(root, "etc/motd")); got != motd {
				t.Errorf("content = %q, want %q", got, motd)
			}
			if mode, _, _ := stat(t, filepath.Join(root, "etc/motd")); mode != 0o640 {
				t.Errorf("mode = %04o, want 0640", mode)
			}
		},
	}, {
		name: "empty file with default mode",
		res:  fileRes("/flag", nil),
		want: []Change{{Attr: "ensure", From: "absent", To: "file", Action: Create}},
		check: func(t *testing.T, root string) {
			if mode, _, _ := stat(t, filepath.Join(root, "flag")); mode != 0o644 {
				t.Errorf("mode = %04o, want 0644", mode)
			}
		},
	}, {
		name: "directory with setgid mode",
		res:  fileRes("/srv", map[string]any{"ensure": "directory", "mode": "2750"}),
		want: []Change{
			{Attr: "ensure", From: "absent", To: "directory", Action: Create},
			{Attr: "mode", To: "2750", Action: Create},
		},
		check: func(t *testing.T, root string) {
			if mode, _, _ := stat(t, filepath.Join(root, "srv")); mode != 0o2750 {
				t.Errorf("mode = %04o, want 2750", mode)
			}
		},
	}, {
		name: "link",
		res:  fileRes("/current", map[string]any{"ensure": "link", "target": "/releases/7"}),
		want: []Change{{Attr: "ensure", From: "absent", To: "link to /releases/7", Action: Create}},
		check: func(t *testing.T, root string) {
			if got, err := os.Readlink(filepath.Join(root, "current")); err != nil || got != "/releases/7" {
				t.Errorf("Readlink = %q, %v; want /releases/7", got, err)
			}
		},
	}, {
		name: "link replacing a file",
		res:  fileRes("/current", map[string]any{"ensure": "link", "target": "releases/7"}),
		setup: func(t *testing.T, root string) {
			writeTestFile(t, filepath.Join(root, "current"), "x", 0o644)
		},
		want: []Change{{Attr: "ensure", From: "file", To: "link to releases/7", Action: Update}},
	}, {
		name: "link retargeted",
		res:  fileRes("/current", map[string]any{"ensure": "link", "target": "releases/8"}),
		setup: func(t *testing.T, root string) {
			os.Symlink("releases/7", filepath.Join(root, "current"))
		},
		want: []Change{{Attr: "target", From: "releases/7", To: "releases/8", Action: Update}},
	}, {
		name: "absent removes a file",
		res:  fileRes("/old", map[string]any{"ensure": "absent"}),
		setup: func(t *testing.T, root string) {
			writeTestFile(t, filepath.Join(root, "old"), "x", 0o644)
		},
		want: []Change{{Attr: "ensure", From: "file", To: "absent", Action: Delete}},
		check: func(t *testing.T, root string) {
			if _, err := os.Lstat(filepath.Join(root, "old")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("Lstat after ensure = absent: %v, want not exist", err)
			}
		},
	}, {
		name: "absent removes an empty directory",
		res:  fileRes("/old", map[string]any{"ensure": "absent"}),
		setup: func(t *testing.T, root string) {
			os.Mkdir(filepath.Join(root, "old"), 0o755)
		},
		want: []Change{{Attr: "ensure", From: "directory", To: "absent", Action: Delete}},
	}, {
		name: "absent of nothing is in sync",
		res:  fileRes("/nothing/here", map[string]any{"ensure": "absent"}),
	}, {
		name: "parent is an absolute link inside the root",
		res:  fileRes("/var/run/app.pid", map[string]any{"content": "42\n"}),
		setup: func(t *testing.T, root string) {
			os.MkdirAll(filepath.Join(root, "run"), 0o755)
			os.MkdirAll(filepath.Join(root, "var"), 0o755)
			os.Symlink("/run", filepath.Join(root, "var/run"))
		},
		want: []Change{
			{Attr: "ensure", From: "absent", To: "file", Action: Create},
			{Attr: "content", To: digestOf([]byte("42\n")), Action: Create},
		},
		check: func(t *testing.T, root string) {
			if got := readFile(t, filepath.Join(root, "run/app.pid")); got != "42\n" {
				t.Errorf("content = %q, want it written where /var/run leads", got)
			}
		},
	}, {
		name: "follow writes through a link inside the root",
		res:  fileRes("/etc/app.conf", map[string]any{"content": "v=1\n", "follow": true}),
		setup: func(t *testing.T, root string) {
			writeTestFile(t, filepath.Join(root, "opt/app/app.conf"), "v=0\n", 0o644)
			os.Mkdir(filepath.Join(root, "etc"), 0o755)
			os.Symlink("/opt/app/app.conf", filepath.Join(root, "etc/app.conf"))
		},
		want: []Change{{Attr: "content", From: digestOf([]byte("v=0\n")), To: digestOf([]byte("v=1\n")), Action: Update}},
		check: func(t *testing.T, root string) {
			if got := readFile(t, filepath.Join(root, "opt/app/app.conf")); got != "v=1\n" {
				t.Errorf("link target's content = %q, want %q", got, "v=1\n")
			}
			if _, err := os.Readlink(filepath.Join(root, "etc/app.conf")); err != nil {
				t.Errorf("the link was replaced: %v", err)
			}
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			readers(t, func(t *testing.T, newFile func() *File) {
				h, _ := newTestHost(t)
				if tt.setup != nil {
					tt.setup(t, h.Root)
				}
				setCatalog(h, tt.res)
				f := newFile()
				got := converge(t, f, h, tt.res)
				if diff := cmp.Diff(tt.want, got, ignoreDiff, cmpopts.EquateEmpty()); diff != "" {
					t.Errorf("changes (-want +got):\n%s", diff)
				}
				if tt.check != nil {
					tt.check(t, h.Root)
				}
				if again := mustCheck(t, f, h, tt.res); !again.InSync() {
					t.Errorf("second run: %+v, want in sync", again.Changes)
				}
				noTempFiles(t, h.Root)
			})
		})
	}
}

func TestFileDrift(t *testing.T) {
	t.Parallel()
	const want = "managed\n"
	outside := t.TempDir()
	outsideFile := filepath.Join(outside, "secret")
	writeTestFile(t, outsideFile, "outside the root\n", 0o600)

	tests := []struct {
		name  string
		drift func(t *testing.T, p string)
		want  []Change
	}{{
		name:  "content edited",
		drift: func(t *testing.T, p string) { writeTestFile(t, p, "edited by hand\n", 0o644) },
		want:  []Change{{Attr: "content", From: digestOf([]byte("edited by hand\n")), To: digestOf([]byte(want)), Action: Update}},
	}, {
		name:  "same size, other bytes",
		drift: func(t *testing.T, p string) { writeTestFile(t, p, "MANAGED\n", 0o644) },
		want:  []Change{{Attr: "content", From: digestOf([]byte("MANAGED\n")), To: digestOf([]byte(want)), Action: Update}},
	}, {
		name:  "mode changed",
		drift: func(t *testing.T, p string) { os.Chmod(p, 0o666) },
		want:  []Change{{Attr: "mode", From: "0666", To: "0644", Action: Update}},
	}, {
		name:  "deleted",
		drift: func(t *testing.T, p string) { os.Remove(p) },
		want: []Change{
			{Attr: "ensure", From: "absent", To: "file", Action: Create},
			{Attr: "content", To: digestOf([]byte(want)), Action: Create},
			{Attr: "mode", To: "0644", Action: Create},
		},
	}, {
		name: "replaced by a link out of the root",
		drift: func(t *testing.T, p string) {
			os.Remove(p)
			if err := os.Symlink(outsideFile, p); err != nil {
				t.Fatal(err)
			}
		},
		want: []Change{
			{Attr: "ensure", From: "link to " + outsideFile, To: "file", Action: Update},
			{Attr: "content", To: digestOf([]byte(want)), Action: Create},
			{Attr: "mode", To: "0644", Action: Create},
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			readers(t, func(t *testing.T, newFile func() *File) {
				h, _ := newTestHost(t)
				r := fileRes("/etc/motd", map[string]any{"content": want, "mode": "0644"})
				setCatalog(h, r)
				os.Mkdir(filepath.Join(h.Root, "etc"), 0o755)
				f := newFile()
				converge(t, f, h, r)
				p := filepath.Join(h.Root, "etc/motd")
				tt.drift(t, p)

				// Noop: Check shows the drift and changes nothing.
				before := treeHash(t, h.Root)
				plan := mustCheck(t, f, h, r)
				if diff := cmp.Diff(tt.want, plan.Changes, ignoreDiff); diff != "" {
					t.Errorf("Check after drift (-want +got):\n%s", diff)
				}
				if treeHash(t, h.Root) != before {
					t.Fatal("Check changed the host")
				}

				if got := converge(t, f, h, r); len(got) == 0 {
					t.Fatal("converge after drift changed nothing")
				}
				if got := readFile(t, p); got != want {
					t.Errorf("content after converge = %q, want %q", got, want)
				}
				if fi, err := os.Lstat(p); err != nil || !fi.Mode().IsRegular() {
					t.Errorf("after converge %s is %v, %v; want a regular file", p, fi.Mode(), err)
				}
				if got := readFile(t, outsideFile); got != "outside the root\n" {
					t.Errorf("file outside the root was changed: %q", got)
				}
				noTempFiles(t, h.Root)
			})
		})
	}
}

// TestFileNeverWritesOutsideRoot plants links in a parent directory that
// lead out of the root: they resolve inside the root, as they would for a
// process chrooted there, and nothing outside is touched.
func TestFileNeverWritesOutsideRoot(t *testing.T) {
	t.Parallel()
	for _, link := range []string{"absolute", "climbing"} {
		t.Run(link, func(t *testing.T) {
			t.Parallel()
			readers(t, func(t *testing.T, newFile func() *File) {
				outside := t.TempDir()
				h, _ := newTestHost(t)
				target := outside
				if link == "climbing" {
					target = strings.Repeat("../", 30) + strings.TrimPrefix(outside, "/")
				}
				if err := os.Symlink(target, filepath.Join(h.Root, "etc")); err != nil {
					t.Fatal(err)
				}
				r := fileRes("/etc/motd", map[string]any{"content": "x\n"})
				setCatalog(h, r)
				f := newFile()
				p := mustCheck(t, f, h, r)
				if p.InSync() {
					t.Fatal("Check found nothing to do")
				}
				err := f.Apply(context.Background(), h, p)
				if err == nil || !strings.Contains(err.Error(), "writing /etc/motd: parent directory /etc does not exist (/etc is a link to") {
					t.Errorf("Apply = %v, want a missing parent error", err)
				}
				if entries, _ := os.ReadDir(outside); len(entries) != 0 {
					t.Errorf("Apply wrote outside the root: %v", entries)
				}
			})
		})
	}
}

func TestFileRefusals(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		res     catalogs.Resource
		setup   func(t *testing.T, root string)
		wantErr string // from Check, or from Apply when applyErr
		apply   bool
	}{{
		name:    "file over a directory",
		res:     fileRes("/data", map[string]any{"content": "x"}),
		setup:   func(t *testing.T, root string) { writeTestFile(t, filepath.Join(root, "data/keep"), "k", 0o644) },
		wantErr: "checking /data: it is a directory; refusing to replace it with a file",
	}, {
		name:    "directory over a file",
		res:     fileRes("/data", map[string]any{"ensure": "directory"}),
		setup:   func(t *testing.T, root string) { writeTestFile(t, filepath.Join(root, "data"), "k", 0o644) },
		wantErr: "checking /data: it is a file; refusing to replace it with a directory",
	}, {
		name:    "link over a directory",
		res:     fileRes("/data", map[string]any{"ensure": "link", "target": "/x"}),
		setup:   func(t *testing.T, root string) { os.Mkdir(filepath.Join(root, "data"), 0o755) },
		wantErr: "refusing to replace it with a link",
	}, {
		name:    "absent of a directory that is not empty",
		res:     fileRes("/data", map[string]any{"ensure": "absent"}),
		setup:   func(t *testing.T, root string) { writeTestFile(t, filepath.Join(root, "data/keep"), "k", 0o644) },
		wantErr: "not empty; refusing to remove it",
	}, {
		name:    "unknown owner",
		res:     fileRes("/f", map[string]any{"owner": "nobody-here"}),
		wantErr: `checking /f: owner: no user "nobody-here" in the host root's etc/passwd`,
	}, {
		name:    "missing unmanaged parent",
		res:     fileRes("/no/such/dir/f", map[string]any{"content": "x"}),
		wantErr: "writing /no/such/dir/f: parent directory /no/such/dir does not exist and no resource manages it",
		apply:   true,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			readers(t, func(t *testing.T, newFile func() *File) {
				h, _ := newTestHost(t)
				if tt.setup != nil {
					tt.setup(t, h.Root)
				}
				setCatalog(h, tt.res)
				before := treeHash(t, h.Root)
				f := newFile()
				p, err := f.Check(context.Background(), h, &tt.res)
				if tt.apply {
					if err != nil {
						t.Fatalf("Check: %v", err)
					}
					err = f.Apply(context.Background(), h, p)
				}
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
				if treeHash(t, h.Root) != before {
					t.Error("a refused change changed the host")
				}
			})
		})
	}
}

func TestFileBackup(t *testing.T) {
	t.Parallel()
	for _, backup := range []bool{true, false} {
		t.Run(fmt.Sprint("backup=", backup), func(t *testing.T) {
			t.Parallel()
			h, _ := newTestHost(t)
			p := filepath.Join(h.Root, "etc/motd")
			writeTestFile(t, p, "precious\n", 0o644)
			attrs := map[string]any{"content": "new\n"}
			if !backup {
				attrs["backup"] = false
			}
			r := fileRes("/etc/motd", attrs)
			setCatalog(h, r)
			converge(t, &File{}, h, r)

			store := h.Content.(*dirContent)
			var want []string
			if backup {
				want = []string{"/etc/motd"}
			}
			if diff := cmp.Diff(want, store.log); diff != "" {
				t.Errorf("saved paths (-want +got):\n%s", diff)
			}
			if backup {
				saved := filepath.Join(store.dir, strings.TrimPrefix(digestOf([]byte("precious\n")), "sha256:"))
				if got := readFile(t, saved); got != "precious\n" {
					t.Errorf("saved content = %q, want the old content", got)
				}
			}
		})
	}
}

func TestFileAbsentAndLinkBackUp(t *testing.T) {
	t.Parallel()
	for _, r := range []catalogs.Resource{
		fileRes("/etc/old", map[string]any{"ensure": "absent"}),
		fileRes("/etc/old", map[string]any{"ensure": "link", "target": "new"}),
	} {
		t.Run(r.String("ensure"), func(t *testing.T) {
			t.Parallel()
			h, _ := newTestHost(t)
			writeTestFile(t, filepath.Join(h.Root, "etc/old"), "keep me\n", 0o644)
			setCatalog(h, r)
			converge(t, &File{}, h, r)
			if diff := cmp.Diff([]string{"/etc/old"}, h.Content.(*dirContent).log); diff != "" {
				t.Errorf("saved paths (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFileIgnore(t *testing.T) {
	t.Parallel()
	h, _ := newTestHost(t)
	p := filepath.Join(h.Root, "etc/app.conf")
	writeTestFile(t, p, "old\n", 0o600)
	r := fileRes("/etc/app.conf", map[string]any{"content": "new\n", "mode": "0644", "ignore": []string{"mode"}})
	setCatalog(h, r)
	got := converge(t, &File{}, h, r)
	want := []Change{{Attr: "content", From: digestOf([]byte("old\n")), To: digestOf([]byte("new\n")), Action: Update}}
	if diff := cmp.Diff(want, got, ignoreDiff); diff != "" {
		t.Errorf("changes (-want +got):\n%s", diff)
	}
	// The rewritten file keeps the mode the resource leaves alone.
	if mode, _, _ := stat(t, p); mode != 0o600 {
		t.Errorf("mode = %04o, want 0600 kept", mode)
	}

	// Content ignored: a hand edit is not drift.
	r = fileRes("/etc/app.conf", map[string]any{"content": "new\n", "ignore": []string{"content"}})
	writeTestFile(t, p, "hand edit\n", 0o600)
	if plan := mustCheck(t, &File{}, h, r); !plan.InSync() {
		t.Errorf("Check with ignore = [content] = %+v, want in sync", plan.Changes)
	}
}

func TestFilePurge(t *testing.T) {
	t.Parallel()
	readers(t, testFilePurge)
}

func testFilePurge(t *testing.T, newFile func() *File) {
	h, _ := newTestHost(t)
	for _, p := range []string{"conf.d/a.conf", "conf.d/sub/managed", "conf.d/stray.conf", "conf.d/straydir/deep/x", "conf.d/sub/unmanaged-below"} {
		writeTestFile(t, filepath.Join(h.Root, p), "content of "+p+"\n", 0o644)
	}
	os.Symlink("/etc/passwd", filepath.Join(h.Root, "conf.d/straylink"))
	dir := fileRes("/conf.d", map[string]any{"ensure": "directory", "purge": true})
	setCatalog(h, dir,
		fileRes("/conf.d/a.conf", map[string]any{"content": "a\n"}),
		fileRes("/conf.d/sub/managed", map[string]any{"content": "m\n"}),
		fileRes("/conf.dx", map[string]any{"content": "a sibling, not an entry\n"}),
	)
	got := converge(t, newFile(), h, dir)
	want := []Change{
		{Attr: "purge", From: "/conf.d/stray.conf", To: "absent", Action: Delete},
		{Attr: "purge", From: "/conf.d/straydir", To: "absent", Action: Delete},
		{Attr: "purge", From: "/conf.d/straylink", To: "absent", Action: Delete},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("changes (-want +got):\n%s", diff)
	}
	for _, p := range []string{"conf.d/a.conf", "conf.d/sub/managed", "conf.d/sub/unmanaged-below"} {
		if _, err := os.Lstat(filepath.Join(h.Root, p)); err != nil {
			t.Errorf("purge removed a managed entry or its parent's content: %v", err)
		}
	}
	for _, p := range []string{"conf.d/stray.conf", "conf.d/straydir", "conf.d/straylink"} {
		if _, err := os.Lstat(filepath.Join(h.Root, p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s survived the purge: %v", p, err)
		}
	}
	saved := slices.Sorted(slices.Values(h.Content.(*dirContent).log))
	if diff := cmp.Diff([]string{"/conf.d/stray.conf", "/conf.d/straydir/deep/x"}, saved); diff != "" {
		t.Errorf("purged files saved (-want +got):\n%s", diff)
	}
}

func TestFileSource(t *testing.T) {
	t.Parallel()
	h, files := newTestHost(t)
	content := []byte("shipped by digest\n")
	d := files.add(content)
	var fetches atomic.Int32
	serve := h.Files
	h.Files = func(ctx context.Context, digest string) (io.ReadCloser, error) {
		fetches.Add(1)
		return serve(ctx, digest)
	}
	r := fileRes("/static", map[string]any{"source": "files/static", "digest": d})
	setCatalog(h, r)
	h.Catalog.Files = []catalogs.FileRef{{Digest: d, Path: "files/static", Size: int64(len(content))}}
	f := &File{}
	converge(t, f, h, r)
	if got := readFile(t, filepath.Join(h.Root, "static")); got != string(content) {
		t.Errorf("content = %q, want %q", got, content)
	}
	fetches.Store(0)
	for range 3 {
		if p := mustCheck(t, f, h, r); !p.InSync() {
			t.Fatalf("Check = %+v, want in sync", p.Changes)
		}
	}
	if n := fetches.Load(); n != 0 {
		t.Errorf("an in-sync source was fetched %d times, want 0", n)
	}

	// Content that does not match its digest is never installed, and the
	// old file stays as it was.
	writeTestFile(t, filepath.Join(h.Root, "bad"), "old\n", 0o644)
	bad := fileRes("/bad", map[string]any{"source": "files/bad", "digest": digestOf([]byte("what the catalog says"))})
	files.mu.Lock()
	files.m[bad.String("digest")] = []byte("something else")
	files.mu.Unlock()
	p, err := f.Check(context.Background(), h, &bad)
	if err == nil {
		err = f.Apply(context.Background(), h, p)
	}
	if err == nil || !strings.Contains(err.Error(), "want "+bad.String("digest")) {
		t.Errorf("installing a corrupt source: %v, want a digest mismatch", err)
	}
	if got := readFile(t, filepath.Join(h.Root, "bad")); got != "old\n" {
		t.Errorf("after a failed Apply the file holds %q, want the old content", got)
	}
	noTempFiles(t, h.Root)
}

// writeAccounts gives the root an etc/passwd and etc/group.
func writeAccounts(t *testing.T, root string) {
	t.Helper()
	writeTestFile(t, filepath.Join(root, "etc/passwd"), "root:x:0:0:root:/root:/bin/sh\nalice:x:1234:1234::/home/alice:/bin/sh\n", 0o644)
	writeTestFile(t, filepath.Join(root, "etc/group"), "root:x:0:\nstaff:x:2345:alice\n", 0o644)
}

func TestFileOwner(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("chown to another user needs root; CI runs as root")
	}
	tests := []struct {
		name     string
		res      catalogs.Resource
		setup    func(t *testing.T, root string)
		want     []Change
		uid, gid uint32
	}{{
		name: "new file by name",
		res:  fileRes("/f", map[string]any{"content": "x", "owner": "alice", "group": "staff"}),
		want: []Change{
			{Attr: "ensure", From: "absent", To: "file", Action: Create},
			{Attr: "content", To: digestOf([]byte("x")), Action: Create},
			{Attr: "owner", To: "alice", Action: Create},
			{Attr: "group", To: "staff", Action: Create},
		},
		uid: 1234, gid: 2345,
	}, {
		name:  "existing file, setuid kept",
		res:   fileRes("/f", map[string]any{"owner": "alice", "mode": "4755"}),
		setup: func(t *testing.T, root string) { writeTestFile(t, filepath.Join(root, "f"), "x", os.ModeSetuid|0o755) },
		want:  []Change{{Attr: "owner", From: "root", To: "alice", Action: Update}},
		uid:   1234, gid: 0,
	}, {
		name:  "directory",
		res:   fileRes("/d", map[string]any{"ensure": "directory", "group": "staff"}),
		setup: func(t *testing.T, root string) { os.Mkdir(filepath.Join(root, "d"), 0o755) },
		want:  []Change{{Attr: "group", From: "root", To: "staff", Action: Update}},
		uid:   0, gid: 2345,
	}, {
		name: "link's own owner",
		res:  fileRes("/l", map[string]any{"ensure": "link", "target": "/nowhere", "owner": "1234"}),
		want: []Change{
			{Attr: "ensure", From: "absent", To: "link to /nowhere", Action: Create},
			{Attr: "owner", To: "1234", Action: Create},
		},
		uid: 1234, gid: 0,
	}, {
		name: "a number the root does not list",
		res:  fileRes("/f", map[string]any{"content": "x", "owner": "4321"}),
		want: []Change{
			{Attr: "ensure", From: "absent", To: "file", Action: Create},
			{Attr: "content", To: digestOf([]byte("x")), Action: Create},
			{Attr: "owner", To: "4321", Action: Create},
		},
		uid: 4321, gid: 0,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h, _ := newTestHost(t)
			writeAccounts(t, h.Root)
			if tt.setup != nil {
				tt.setup(t, h.Root)
			}
			setCatalog(h, tt.res)
			got := converge(t, &File{}, h, tt.res)
			if diff := cmp.Diff(tt.want, got, ignoreDiff); diff != "" {
				t.Errorf("changes (-want +got):\n%s", diff)
			}
			mode, uid, gid := stat(t, filepath.Join(h.Root, tt.res.Name))
			if uid != tt.uid || gid != tt.gid {
				t.Errorf("owner = %d:%d, want %d:%d", uid, gid, tt.uid, tt.gid)
			}
			if m := tt.res.String("mode"); m != "" && formatMode(mode) != m {
				t.Errorf("mode = %04o, want %s", mode, m)
			}
		})
	}
}

// TestFileContentDiffGolden checks the diff a content change carries.
func TestFileContentDiffGolden(t *testing.T) {
	t.Parallel()
	h, _ := newTestHost(t)
	old := "# motd\nwelcome to web-01\nmaintenance: none\nowner: ops\n"
	writeTestFile(t, filepath.Join(h.Root, "etc/motd"), old, 0o644)
	r := fileRes("/etc/motd", map[string]any{"content": "# motd\nwelcome to web-02\nmaintenance: none\nowner: ops\ncontact: ops@example.com\n"})
	p := mustCheck(t, &File{}, h, r)
	if len(p.Changes) != 1 || p.Changes[0].Attr != "content" {
		t.Fatalf("Check = %+v, want one content change", p.Changes)
	}
	golden(t, "testdata/file/check-motd.diff", p.Changes[0].Diff)

	// Binary content: digests only.
	writeTestFile(t, filepath.Join(h.Root, "bin.dat"), "a\x00b", 0o644)
	p = mustCheck(t, &File{}, h, fileRes("/bin.dat", map[string]any{"content": "a\x00c"}))
	if c := p.Changes[0]; c.Diff != "" || c.From != digestOf([]byte("a\x00b")) || c.To != digestOf([]byte("a\x00c")) {
		t.Errorf("binary change = %+v, want digests and no diff", c)
	}
}

// golden compares got with the file at path, or rewrites it with -update.
func golden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s (-want +got):\n%s", path, diff)
	}
}

var diffCases = []struct {
	name     string
	old, new string
}{
	{"edit", "a\nb\nc\n", "a\nB\nc\n"},
	{"append", "a\nb\n", "a\nb\nc\n"},
	{"prepend", "b\nc\n", "a\nb\nc\n"},
	{"from empty", "", "a\nb\n"},
	{"to empty", "a\nb\n", ""},
	{"newline added at end", "a\nb", "a\nb\n"},
	{"newline removed at end", "a\nb\n", "a\nb"},
	{"two hunks", "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n13\n14\n15\n16\n", "1\nTWO\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n13\n14\nFIFTEEN\n16\n"},
	{"close changes merge", "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n", "1\nTWO\n3\n4\n5\n6\n7\n8\nNINE\n10\n"},
	{"moved block", "header\nx\ny\nz\nmiddle\nfooter\n", "header\nmiddle\nx\ny\nz\nfooter\n"},
}

func TestUnifiedDiffGolden(t *testing.T) {
	t.Parallel()
	for _, tc := range diffCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := UnifiedDiff("/etc/old", "/etc/new", tc.old, tc.new)
			golden(t, filepath.Join("testdata/file", strings.ReplaceAll(tc.name, " ", "-")+".diff"), got)
			if patched, err := applyUnifiedDiff(tc.old, got); err != nil || patched != tc.new {
				t.Errorf("applying the diff = %q, %v; want %q", patched, err, tc.new)
			}
		})
	}
	if got := UnifiedDiff("a", "b", "same\n", "same\n"); got != "" {
		t.Errorf("UnifiedDiff of equal texts = %q, want \"\"", got)
	}
}

func TestUnifiedDiffTooManyEdits(t *testing.T) {
	t.Parallel()
	// Every line differs: past maxDiffEdits the middle is replaced whole,
	// and the diff must still be right.
	var a, b strings.Builder
	for i := range 3 * maxDiffEdits {
		fmt.Fprintf(&a, "old %d\n", i)
		fmt.Fprintf(&b, "new %d\n", i)
	}
	d := UnifiedDiff("a", "b", a.String(), b.String())
	if patched, err := applyUnifiedDiff(a.String(), d); err != nil || patched != b.String() {
		t.Errorf("applying the diff: %v (equal: %v)", err, patched == b.String())
	}
}

// applyUnifiedDiff applies a diff made by UnifiedDiff to old, as patch(1)
// would, checking every context and removed line against old.
func applyUnifiedDiff(old, diff string) (string, error) {
	if diff == "" {
		return old, nil
	}
	src := splitLines(old)
	lines := splitLines(diff)
	if len(lines) < 2 || !strings.HasPrefix(lines[0], "--- ") || !strings.HasPrefix(lines[1], "+++ ") {
		return "", fmt.Errorf("no file headers")
	}
	var out []string
	next := 0 // index in src of the first line not yet copied
	var last *string
	for i := 2; i < len(lines); i++ {
		l := lines[i]
		switch {
		case strings.HasPrefix(l, "@@ "):
			var os, on, ns, nn int
			if _, err := fmt.Sscanf(hunkNorm(l), "@@ -%d,%d +%d,%d @@", &os, &on, &ns, &nn); err != nil {
				return "", fmt.Errorf("hunk header %q: %v", l, err)
			}
			start := os - 1
			if on == 0 {
				start = os
			}
			if start < next || start > len(src) {
				return "", fmt.Errorf("hunk %q out of order", l)
			}
			out = append(out, src[next:start]...)
			next = start
			last = nil
		case strings.HasPrefix(l, `\ No newline at end of file`):
			if last == nil {
				return "", fmt.Errorf("marker after nothing")
			}
			*last = strings.TrimSuffix(*last, "\n")
		case l[0] == ' ' || l[0] == '-':
			if next >= len(src) || src[next] != l[1:] && src[next]+"\n" != l[1:] {
				return "", fmt.Errorf("line %d: %q does not match old line %d", i+1, l, next+1)
			}
			next++
			if l[0] == ' ' {
				out = append(out, l[1:])
				last = &out[len(out)-1]
			} else {
				discard := l[1:]
				last = &discard
			}
		case l[0] == '+':
			out = append(out, l[1:])
			last = &out[len(out)-1]
		default:
			return "", fmt.Errorf("line %d: %q", i+1, l)
		}
	}
	out = append(out, src[next:]...)
	return strings.Join(out, ""), nil
}

// hunkNorm writes "-l" as "-l,1" so that one Sscanf format reads every
// header.
func hunkNorm(h string) string {
	f := strings.Fields(h)
	for i := 1; i <= 2 && i < len(f); i++ {
		if !strings.Contains(f[i], ",") {
			f[i] += ",1"
		}
	}
	return strings.Join(f, " ")
}

func FuzzUnifiedDiff(f *testing.F) {
	for _, tc := range diffCases {
		f.Add(tc.old, tc.new)
	}
	f.Fuzz(func(t *testing.T, old, new string) {
		d := UnifiedDiff("old", "new", old, new)
		got, err := applyUnifiedDiff(old, d)
		if err != nil {
			t.Fatalf("applying the diff of %q → %q: %v\n%s", old, new, err, d)
		}
		if got != new {
			t.Fatalf("applying the diff of %q → %q gave %q\n%s", old, new, got, d)
		}
	})
}

// BenchmarkFileCheckInSync checks 200 in-sync files with content, mode
// and owner: the agent's hot path when nothing changed.
func BenchmarkFileCheckInSync(b *testing.B) {
	root := b.TempDir()
	h := &Host{Root: root}
	uid, gid := os.Getuid(), os.Getgid()
	if err := os.MkdirAll(filepath.Join(root, "etc/herd"), 0o755); err != nil {
		b.Fatal(err)
	}
	os.WriteFile(filepath.Join(root, "etc/passwd"), []byte(fmt.Sprintf("root:x:0:0::/root:/bin/sh\nme:x:%d:%d::/:/bin/sh\n", uid, gid)), 0o644)
	os.WriteFile(filepath.Join(root, "etc/group"), []byte(fmt.Sprintf("root:x:0:\nme:x:%d:\n", gid)), 0o644)
	var rs []catalogs.Resource
	for i := range 200 {
		content := fmt.Sprintf("# managed by herd\nsetting_%d = %d\n%s", i, i*7, strings.Repeat("x", i*10))
		p := fmt.Sprintf("/etc/herd/file-%03d.conf", i)
		if err := os.WriteFile(filepath.Join(root, p), []byte(content), 0o640); err != nil {
			b.Fatal(err)
		}
		rs = append(rs, fileRes(p, map[string]any{"content": content, "mode": "0640", "owner": "me", "group": "me"}))
	}
	setCatalog(h, rs...)
	ctx := context.Background()
	for _, portable := range []bool{false, true} {
		name := "openat2"
		if portable {
			name = "pathrs-lite"
		}
		b.Run(name, func(b *testing.B) {
			f := &File{portable: portable}
			for i := range rs {
				if p, err := f.Check(ctx, h, &rs[i]); err != nil || !p.InSync() {
					b.Fatalf("Check(%s) = %+v, %v; want in sync", rs[i].ID, p, err)
				}
			}
			b.ReportAllocs()
			for b.Loop() {
				for i := range rs {
					if _, err := f.Check(ctx, h, &rs[i]); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
