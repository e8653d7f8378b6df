package resources

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/herdcm/herd/catalogs"
)

// startDriftWatcher watches rs under h's root and returns a channel that
// receives every id the watcher reports.
func startDriftWatcher(t *testing.T, h *Host, rs ...catalogs.Resource) (*DriftWatcher, <-chan string) {
	t.Helper()
	dw, err := NewDriftWatcher(h.Root)
	if err != nil {
		t.Fatal(err)
	}
	targets := map[string]WatchTarget{}
	for i := range rs {
		wt, err := (&File{}).WatchTarget(h, &rs[i])
		if err != nil {
			t.Fatal(err)
		}
		targets[rs[i].ID] = wt
	}
	if err := dw.Set(targets); err != nil {
		t.Fatalf("Set: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	fired := make(chan string, 64)
	done := make(chan error, 1)
	go func() {
		done <- dw.Run(ctx, func(id string) {
			select {
			case fired <- id:
			default:
			}
		}, func(err error) { t.Logf("watch error: %v", err) })
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run returned %v after its context ended, want nil", err)
		}
		dw.Close()
	})
	return dw, fired
}

// awaitID waits for the watcher to report id, failing after a deadline
// far past anything an event takes: only a lost event reaches it.
func awaitID(t *testing.T, fired <-chan string, id string) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case got := <-fired:
			if got == id {
				return
			}
		case <-deadline:
			t.Fatalf("the watcher did not report %s", id)
		}
	}
}

func TestDriftWatcher(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		res   catalogs.Resource
		setup func(t *testing.T, root string)
		edit  func(t *testing.T, root string)
	}{{
		name:  "content edited",
		res:   fileRes("/etc/motd", map[string]any{"content": "x\n", "drift": "watch"}),
		setup: func(t *testing.T, root string) { writeTestFile(t, filepath.Join(root, "etc/motd"), "x\n", 0o644) },
		edit: func(t *testing.T, root string) {
			writeTestFile(t, filepath.Join(root, "etc/motd"), "edited\n", 0o644)
		},
	}, {
		name:  "replaced by rename",
		res:   fileRes("/etc/motd", map[string]any{"content": "x\n", "drift": "watch"}),
		setup: func(t *testing.T, root string) { writeTestFile(t, filepath.Join(root, "etc/motd"), "x\n", 0o644) },
		edit: func(t *testing.T, root string) {
			writeTestFile(t, filepath.Join(root, "etc/motd.new"), "edited\n", 0o644)
			if err := os.Rename(filepath.Join(root, "etc/motd.new"), filepath.Join(root, "etc/motd")); err != nil {
				t.Fatal(err)
			}
		},
	}, {
		name:  "chmod",
		res:   fileRes("/etc/motd", map[string]any{"mode": "0644", "drift": "watch"}),
		setup: func(t *testing.T, root string) { writeTestFile(t, filepath.Join(root, "etc/motd"), "x\n", 0o644) },
		edit: func(t *testing.T, root string) {
			if err := os.Chmod(filepath.Join(root, "etc/motd"), 0o600); err != nil {
				t.Fatal(err)
			}
		},
	}, {
		name:  "created under a missing parent",
		res:   fileRes("/etc/app/app.conf", map[string]any{"drift": "watch"}),
		setup: func(t *testing.T, root string) { os.Mkdir(filepath.Join(root, "etc"), 0o755) },
		edit: func(t *testing.T, root string) {
			if err := os.MkdirAll(filepath.Join(root, "etc/app"), 0o755); err != nil {
				t.Fatal(err)
			}
		},
	}, {
		name:  "entry added to a purged directory",
		res:   fileRes("/conf.d", map[string]any{"ensure": "directory", "purge": true, "drift": "watch"}),
		setup: func(t *testing.T, root string) { os.Mkdir(filepath.Join(root, "conf.d"), 0o755) },
		edit: func(t *testing.T, root string) {
			writeTestFile(t, filepath.Join(root, "conf.d", "stray"), "", 0o644)
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h, _ := newTestHost(t)
			tt.setup(t, h.Root)
			_, fired := startDriftWatcher(t, h, tt.res)
			// Set armed the watches before it returned: the edit cannot
			// come too early.
			tt.edit(t, h.Root)
			awaitID(t, fired, tt.res.ID)
		})
	}
}

// TestDriftWatcherFollowsDirectories: a watched file's directory removed
// and made again is watched again, through the stand-in above it.
func TestDriftWatcherFollowsDirectories(t *testing.T) {
	t.Parallel()
	h, _ := newTestHost(t)
	p := filepath.Join(h.Root, "etc/app/app.conf")
	writeTestFile(t, p, "x\n", 0o644)
	r := fileRes("/etc/app/app.conf", map[string]any{"drift": "watch"})
	_, fired := startDriftWatcher(t, h, r)
	if err := os.RemoveAll(filepath.Join(h.Root, "etc/app")); err != nil {
		t.Fatal(err)
	}
	awaitID(t, fired, r.ID)
	// The kernel queued etc/app's own removal before the mkdir below, so
	// the watcher has moved to etc by the time it sees the mkdir.
	if err := os.Mkdir(filepath.Join(h.Root, "etc/app"), 0o755); err != nil {
		t.Fatal(err)
	}
	awaitID(t, fired, r.ID)
	writeTestFile(t, p, "back\n", 0o644)
	awaitID(t, fired, r.ID)
}

// TestDriftWatcherSetKeepsWatches: a new watched set adds and removes
// kernel watches only for directories whose users changed.
func TestDriftWatcherSetKeepsWatches(t *testing.T) {
	t.Parallel()
	h, _ := newTestHost(t)
	for _, d := range []string{"a", "b", "c"} {
		if err := os.MkdirAll(filepath.Join(h.Root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	dw, err := NewDriftWatcher(h.Root)
	if err != nil {
		t.Fatal(err)
	}
	defer dw.Close()
	set := func(paths ...string) {
		t.Helper()
		targets := map[string]WatchTarget{}
		for _, p := range paths {
			targets["file:"+p] = WatchTarget{Path: filepath.Join(h.Root, p)}
		}
		if err := dw.Set(targets); err != nil {
			t.Fatalf("Set(%v): %v", paths, err)
		}
	}
	set("/a/1", "/a/2", "/b/1")
	if diff := cmp.Diff(WatchStats{Targets: 3, Dirs: 2, Adds: 2}, dw.Stats()); diff != "" {
		t.Errorf("first set (-want +got):\n%s", diff)
	}
	// /a/2 leaves (a keeps /a/1), /b/1 stays, /c/1 arrives: one add (c),
	// no remove.
	set("/a/1", "/b/1", "/c/1")
	if diff := cmp.Diff(WatchStats{Targets: 3, Dirs: 3, Adds: 3}, dw.Stats()); diff != "" {
		t.Errorf("second set (-want +got):\n%s", diff)
	}
	// The same set again touches nothing.
	set("/a/1", "/b/1", "/c/1")
	if diff := cmp.Diff(WatchStats{Targets: 3, Dirs: 3, Adds: 3}, dw.Stats()); diff != "" {
		t.Errorf("same set again (-want +got):\n%s", diff)
	}
	set()
	if diff := cmp.Diff(WatchStats{Adds: 3, Removes: 3}, dw.Stats()); diff != "" {
		t.Errorf("empty set (-want +got):\n%s", diff)
	}
}

func TestFileWatchTargetRefusesBadPaths(t *testing.T) {
	t.Parallel()
	h := &Host{Root: t.TempDir()}
	for _, p := range []string{"relative", "/etc/../etc/motd", "/"} {
		r := fileRes(p, nil)
		if _, err := (&File{}).WatchTarget(h, &r); err == nil {
			t.Errorf("WatchTarget(%q) = nil error, want a refusal", p)
		}
	}
	r := fileRes("/etc/motd", nil)
	got, err := (&File{}).WatchTarget(h, &r)
	if want := (WatchTarget{Path: filepath.Join(h.Root, "etc/motd")}); err != nil || got != want {
		t.Errorf("WatchTarget(/etc/motd) = %+v, %v; want %+v", got, err, want)
	}
}

// FuzzDriftRelevant: relevant never panics and always holds for the
// target itself and for every directory above it.
func FuzzDriftRelevant(f *testing.F) {
	f.Add("/r/etc/motd", "/r/etc", false)
	f.Add("/r/conf.d/x", "/r/conf.d", true)
	f.Add("/r/conf.d/.herd-tmp", "/r/conf.d", true)
	f.Fuzz(func(t *testing.T, target, name string, purge bool) {
		_ = relevant(name, target, purge)
		if !relevant(target, target, purge) {
			t.Errorf("relevant(%q, %q) = false for the target itself", target, target)
		}
		clean := filepath.Clean(target)
		if filepath.IsAbs(clean) {
			for d := filepath.Dir(clean); d != "/"; d = filepath.Dir(d) {
				if !relevant(d, clean, purge) {
					t.Errorf("relevant(%q, %q) = false for a directory above it", d, clean)
				}
			}
		}
	})
}
