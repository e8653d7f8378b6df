package agent

import (
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herdcm/herd/api/herdv1"
)

// spooledState makes a state in dir with one spooled report, closed.
func spooledState(t *testing.T, dir string) {
	t.Helper()
	st, err := OpenState(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.spoolReport(context.Background(), &herdv1.Report{RunId: "before"}); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestOpenStateCorrupt: a garbled or empty state.db is moved aside with an
// error to log, and the agent starts with a fresh, working state instead
// of failing every run.
func TestOpenStateCorrupt(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		damage func(t *testing.T, db string)
	}{
		{"garbage", func(t *testing.T, db string) {
			b := make([]byte, 16384)
			rand.Read(b)
			if err := os.WriteFile(db, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{"garbled pages", func(t *testing.T, db string) {
			f, err := os.OpenFile(db, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			fi, _ := f.Stat()
			if fi.Size() < 3*4096 {
				t.Fatalf("state.db is only %d bytes", fi.Size())
			}
			// Keep the header (page 1): sqlite opens the file, and only
			// reading the pages shows the damage.
			b := make([]byte, fi.Size()-4096)
			for i := range b {
				b[i] = 0xa5
			}
			if _, err := f.WriteAt(b, 4096); err != nil {
				t.Fatal(err)
			}
		}},
		{"zero length", func(t *testing.T, db string) {
			if err := os.Truncate(db, 0); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			spooledState(t, dir)
			tt.damage(t, StateDir(dir).DB())
			st, err := OpenState(dir)
			if err != nil {
				t.Fatalf("OpenState of a damaged state = %v, want a fresh state", err)
			}
			defer st.Close()
			if !strings.Contains(st.Recovered(), "moved aside") {
				t.Errorf("Recovered() = %q, want it to say the file was moved aside", st.Recovered())
			}
			moved, _ := filepath.Glob(filepath.Join(StateDir(dir).CorruptDir(), "state.db.*"))
			if len(moved) == 0 {
				t.Errorf("nothing in %s", StateDir(dir).CorruptDir())
			}
			ctx := context.Background()
			if _, err := st.spoolReport(ctx, &herdv1.Report{RunId: "after"}); err != nil {
				t.Fatalf("spooling on the fresh state: %v", err)
			}
			got, err := st.SpooledReports(ctx)
			if err != nil || len(got) != 1 || got[0].RunID != "after" {
				t.Errorf("SpooledReports = %+v, %v; want only the new one", got, err)
			}
		})
	}
}

// TestOpenStateHealthy: a sound state is kept as it is.
func TestOpenStateHealthy(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	spooledState(t, dir)
	st, err := OpenState(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if st.Recovered() != "" {
		t.Errorf("Recovered() = %q on a sound state", st.Recovered())
	}
	got, err := st.SpooledReports(context.Background())
	if err != nil || len(got) != 1 || got[0].RunID != "before" {
		t.Errorf("SpooledReports = %+v, %v; want the one spooled before", got, err)
	}
	if _, err := os.Stat(StateDir(dir).CorruptDir()); err == nil {
		t.Error("a sound state made a corrupt directory")
	}
}

// TestOpenStateModes: the database and its WAL files are 0600, even when
// an older herd left the database 0644.
func TestOpenStateModes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	spooledState(t, dir)
	db := StateDir(dir).DB()
	if err := os.Chmod(db, 0o644); err != nil {
		t.Fatal(err)
	}
	st, err := OpenState(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	// A write makes sure the WAL files exist.
	if _, err := st.spoolReport(context.Background(), &herdv1.Report{RunId: "x"}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{db, db + "-wal", db + "-shm"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode = %v, want 0600", filepath.Base(p), fi.Mode().Perm())
		}
	}
	var sync int
	if err := st.db.QueryRow(`PRAGMA synchronous`).Scan(&sync); err != nil || sync != 2 {
		t.Errorf("PRAGMA synchronous = %d, %v; want 2 (FULL)", sync, err)
	}
}

// TestRunSweepsIncoming: temporary files a SIGKILL left in the content
// store and the file cache are removed by the next run, under the run
// lock; the rest stays.
func TestRunSweepsIncoming(t *testing.T) {
	t.Parallel()
	fs := newFakeServer(t)
	fs.publish(testCatalog("web-01", "v1", fileRes("/etc/motd", "hello\n")), nil, false)
	a := newTestAgent(t, fs)
	dir := DefaultStateDir(a.root)
	keep := filepath.Join(dir.Content(), strings.Repeat("ab", 32))
	var stale []string
	for _, d := range []string{dir.Content(), dir.Files()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(d, ".incoming-12345")
		if err := os.WriteFile(p, []byte("half a file"), 0o600); err != nil {
			t.Fatal(err)
		}
		stale = append(stale, p)
	}
	if err := os.WriteFile(keep, []byte("saved"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := a.d.RunOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, p := range stale {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s survived a run", p)
		}
	}
	if _, err := os.Stat(keep); err != nil {
		t.Errorf("a saved content was removed: %v", err)
	}
}

// TestDaemonCorruptState: a daemon whose state.db was garbled while it was
// down starts, logs the loss, and takes and applies the server's catalog,
// instead of failing every check-in as if the server were away.
func TestDaemonCorruptState(t *testing.T) {
	t.Parallel()
	fs := newFakeServer(t)
	fs.publish(testCatalog("web-01", "v1", fileRes("/etc/motd", "v1\n")), nil, false)
	a := newTestAgent(t, fs)
	ctx := context.Background()
	if _, err := a.d.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	a.d.Close()
	b := make([]byte, 8192)
	rand.Read(b)
	if err := os.WriteFile(DefaultStateDir(a.root).DB(), b, 0o600); err != nil {
		t.Fatal(err)
	}
	fs.publish(testCatalog("web-01", "v2", fileRes("/etc/motd", "v2\n")), nil, false)
	d, err := NewDaemon(ctx, a.d.o)
	if err != nil {
		t.Fatalf("NewDaemon on a garbled state = %v, want a fresh start", err)
	}
	defer d.Close()
	r, err := d.RunOnce(ctx)
	if err != nil {
		t.Fatalf("run on the fresh state: %v", err)
	}
	if got := a.read(t, "etc/motd"); got != "v2\n" || r.Version != "v2" {
		t.Errorf("etc/motd = %q, version %q; want the new catalog applied", got, r.Version)
	}
}

// TestOpenStateChecksWhatRunsUse: a garbled page of a table a run reads
// (the spool) is caught at every open; a garbled page of the history,
// which only the daily full check reads, is caught once the last full
// check is a day old.
func TestOpenStateChecksWhatRunsUse(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		table     string
		lastCheck time.Duration // how long ago the last full check was
	}{
		{"report_spool", time.Minute},
		{"runs", 25 * time.Hour},
	} {
		t.Run(tc.table, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			spooledState(t, dir)
			st, err := OpenState(dir)
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			if err := st.setSetting(ctx, fullCheckKey, time.Now().Add(-tc.lastCheck).UTC().Format(time.RFC3339)); err != nil {
				t.Fatal(err)
			}
			var root, pageSize int64
			if err := st.db.QueryRow(`SELECT rootpage FROM sqlite_master WHERE name = ?`, tc.table).Scan(&root); err != nil {
				t.Fatal(err)
			}
			if err := st.db.QueryRow(`PRAGMA page_size`).Scan(&pageSize); err != nil {
				t.Fatal(err)
			}
			// Into the main file, so that garbling it is what a disk does.
			if _, err := st.db.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
				t.Fatal(err)
			}
			st.Close()
			f, err := os.OpenFile(StateDir(dir).DB(), os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			junk := make([]byte, pageSize)
			for i := range junk {
				junk[i] = 0xa5
			}
			if _, err := f.WriteAt(junk, (root-1)*pageSize); err != nil {
				t.Fatal(err)
			}
			f.Close()

			st, err = OpenState(dir)
			if err != nil {
				t.Fatalf("OpenState = %v, want a fresh state", err)
			}
			defer st.Close()
			if !strings.Contains(st.Recovered(), "moved aside") {
				t.Errorf("a garbled %s page (last full check %s ago) was not caught at open: Recovered() = %q", tc.table, tc.lastCheck, st.Recovered())
			}
		})
	}
}
