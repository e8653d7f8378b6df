package agent

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/herdcm/herd/agent/resources"
	"github.com/herdcm/herd/catalogs"
)

// driftHost is what the daemon does about drift, without the server: a
// root with n watched files in dirs directories, converged, and a
// driftWatch whose alarms land in a channel.
type driftHost struct {
	root  string
	cat   *catalogs.Catalog
	h     *resources.Host
	w     *driftWatch
	alarm chan struct{}
}

func newDriftHost(tb testing.TB, n, dirs int) *driftHost {
	tb.Helper()
	root := tb.TempDir()
	var rs []catalogs.Resource
	for d := range dirs {
		if err := os.MkdirAll(filepath.Join(root, fmt.Sprintf("srv/d%02d", d)), 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	for i := range n {
		p := fmt.Sprintf("/srv/d%02d/f%05d.conf", i%dirs, i)
		rs = append(rs, fileRes(p, fmt.Sprintf("setting = %d\n", i), "drift", "watch"))
	}
	dh := &driftHost{
		root:  root,
		cat:   testCatalog("web-01", "v1", rs...),
		h:     &resources.Host{Root: root, Log: slog.New(slog.DiscardHandler)},
		alarm: make(chan struct{}, 1),
	}
	dh.h.Catalog = dh.cat
	if s := summarize(Converge(context.Background(), dh.h, dh.cat, ConvergeOptions{})); s.Failed > 0 || s.Changed != n {
		tb.Fatalf("laying out %d files: %+v", n, s)
	}
	dh.w = &driftWatch{root: root, log: dh.h.Log, changed: func() {
		select {
		case dh.alarm <- struct{}{}:
		default:
		}
	}}
	dh.w.set(context.Background(), "etag-1", dh.cat)
	tb.Cleanup(dh.w.stop)
	return dh
}

func summarize(evs []Event) Summary {
	var s Summary
	for _, e := range evs {
		s.add(e)
	}
	return s
}

// putBack edits file i by hand, awaits the alarm and converges as a drift
// run does (everything is checked), and says what the run did.
func (dh *driftHost) putBack(tb testing.TB, i int) Summary {
	tb.Helper()
	r := &dh.cat.Resources[i]
	p := filepath.Join(dh.root, r.String("path"))
	if err := os.WriteFile(p, []byte("hand edit\n"), 0o644); err != nil {
		tb.Fatal(err)
	}
	for {
		select {
		case <-dh.alarm:
		case <-time.After(30 * time.Second):
			tb.Fatalf("no drift alarm for %s", r.ID)
		}
		s := summarize(Converge(context.Background(), dh.h, dh.cat, ConvergeOptions{Types: resources.Types()}))
		if s.Failed > 0 {
			tb.Fatalf("drift run: %+v", s)
		}
		if s.Changed > 0 {
			b, err := os.ReadFile(p)
			if err != nil || string(b) != r.String("content") {
				tb.Fatalf("%s after the drift run = %q, %v; want %q", r.ID, b, err, r.String("content"))
			}
			return s
		}
		// An alarm from the previous run's own write: nothing to do.
	}
}

// TestDriftWatch2000Files: one daemon watches 2,000 files with one
// inotify instance and one watch per directory, and a hand edit of any
// of them is put back.
func TestDriftWatch2000Files(t *testing.T) {
	t.Parallel()
	dh := newDriftHost(t, 2000, 20)
	if st := dh.w.stats(); st.Targets != 2000 || st.Dirs != 20 {
		t.Fatalf("watching %d resources in %d directories, want 2000 in 20", st.Targets, st.Dirs)
	}
	for _, i := range []int{0, 1234, 1999} {
		if s := dh.putBack(t, i); s.Changed != 1 || s.InSync != 1999 {
			t.Errorf("drift run after editing file %d: %+v, want 1 changed and 1999 in sync", i, s)
		}
	}
}

// TestDriftWatchKeepsWatchesAcrossCatalogs: a new catalog keeps the
// watches of resources it did not change; only the directory of a
// resource that came or went is added or removed.
func TestDriftWatchKeepsWatchesAcrossCatalogs(t *testing.T) {
	t.Parallel()
	dh := newDriftHost(t, 200, 10)
	before := dh.w.stats()
	if before.Targets != 200 || before.Dirs != 10 || before.Adds != 10 {
		t.Fatalf("first catalog: %+v, want 200 resources, 10 directories, 10 adds", before)
	}
	// Catalog 2: the same resources but one, and one new in a new
	// directory; another resource's content changes (its watch target
	// does not).
	if err := os.MkdirAll(filepath.Join(dh.root, "srv/new"), 0o755); err != nil {
		t.Fatal(err)
	}
	rs := append([]catalogs.Resource(nil), dh.cat.Resources[1:]...)
	rs[0] = fileRes(rs[0].String("path"), "new content\n", "drift", "watch")
	rs = append(rs, fileRes("/srv/new/one.conf", "x\n", "drift", "watch"))
	dh.w.set(context.Background(), "etag-2", testCatalog("web-01", "v2", rs...))
	after := dh.w.stats()
	if after.Targets != 200 || after.Dirs != 11 || after.Adds != 11 || after.Removes != 0 {
		t.Errorf("second catalog: %+v, want 200 resources, 11 directories, 11 adds and no removes", after)
	}
	// The same etag again is not even looked at.
	dh.w.set(context.Background(), "etag-2", nil)
	if got := dh.w.stats(); got != after {
		t.Errorf("the same etag again: %+v, want %+v", got, after)
	}
	// A catalog without watches removes them all.
	dh.w.set(context.Background(), "etag-3", testCatalog("web-01", "v3"))
	if got := dh.w.stats(); got.Targets != 0 || got.Dirs != 0 || got.Removes != 11 {
		t.Errorf("a catalog without watches: %+v, want nothing watched and 11 removes", got)
	}
}

// BenchmarkDriftPutBack: the time from a hand edit among 2,000 watched
// files to the end of the drift run that put it back (a full check of
// all 2,000). The target is well under one second.
func BenchmarkDriftPutBack(b *testing.B) {
	dh := newDriftHost(b, 2000, 20)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		dh.putBack(b, i%2000)
		i += 7
	}
}
