package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// logWriter routes the store's logs to the test's log.
type logWriter struct{ t testing.TB }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(logWriter{t}, nil))
}

// openAt opens a store at path and closes it when the test ends.
func openAt(t testing.TB, path string, opts Options) *Store {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	s, err := Open(path, opts)
	if err != nil {
		t.Fatalf("Open(%q) = %v", path, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close() = %v", err)
		}
	})
	return s
}

// openTest opens a fresh store of the test's kind (testLoc).
func openTest(t testing.TB) *Store {
	t.Helper()
	return openAt(t, testLoc(t), Options{})
}

// at is a fixed instant plus n seconds, so that tests compare times
// exactly.
func at(n int) time.Time { return time.Unix(1_750_000_000+int64(n), 0) }

func userVersion(t *testing.T, path string) int {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var v int
	if err := db.QueryRow(`PRAGMA user_version`).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestMigrations(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "herd.db")

	s, err := Open(path, Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("Open on a fresh file: %v", err)
	}
	if got := userVersion(t, path); got != len(migrations) {
		t.Errorf("user_version after Open = %d, want %d", got, len(migrations))
	}
	if err := s.SaveFacts(ctx, "web-01", "sha256:f1", []byte(`{"os":{}}`), at(0)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Reopen: nothing runs twice and the data is there.
	s, err = Open(path, Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("reopening: %v", err)
	}
	if d, _, _, ok, err := s.Facts(ctx, "web-01"); err != nil || !ok || d != "sha256:f1" {
		t.Errorf("Facts after reopen = %q, %v, %v", d, ok, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// A schema from a newer herd is refused, and left as it is.
	db, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`PRAGMA user_version = 99`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if s, err := Open(path, Options{Logger: testLogger(t)}); err == nil {
		s.Close()
		t.Fatal("Open on a newer schema succeeded")
	} else if !strings.Contains(err.Error(), "newer") {
		t.Errorf("Open on a newer schema = %v, want it to say newer", err)
	}
	if got := userVersion(t, path); got != 99 {
		t.Errorf("user_version after refusing = %d, want 99", got)
	}
}

func TestWALAndReadOnlyReaders(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	var mode string
	if err := s.rdb.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode = %q, %v; want wal", mode, err)
	}
	if _, err := s.rdb.Exec(`DELETE FROM nodes`); err == nil {
		t.Error("a reader connection could write")
	}
	var sync int
	if err := s.conn.QueryRowContext(context.Background(), `PRAGMA synchronous`).Scan(&sync); err != nil || sync != 2 {
		t.Errorf("writer synchronous = %d, %v; want 2 (FULL)", sync, err)
	}
}

func TestClosed(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		s, err := Open(testLoc(t), Options{Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Errorf("second Close() = %v, want nil", err)
		}
		if err := s.SaveFacts(ctx, "n", "d", nil, at(0)); !errors.Is(err, ErrClosed) {
			t.Errorf("SaveFacts after Close = %v, want ErrClosed", err)
		}
		if err := s.Checkin(ctx, "n", at(0), "v", at(1)); !errors.Is(err, ErrClosed) {
			t.Errorf("Checkin after Close = %v, want ErrClosed", err)
		}
	})
}

// TestCloseDrains: Close answers every queued write and flushes check-ins
// before it returns.
func TestCloseDrains(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		path := testLoc(t)
		s, err := Open(path, Options{Logger: testLogger(t), BatchDelay: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		const n = 50
		errs := make(chan error, n)
		for i := range n {
			go func() {
				_, err := s.SaveReport(ctx, "web-01", Report{RunID: fmt.Sprintf("run-%d", i), Started: at(i)})
				errs <- err
			}()
		}
		if err := s.Checkin(ctx, "web-02", at(5), "1.0", at(1800)); err != nil {
			t.Fatal(err)
		}
		// The hour-long window holds every write; Close must cut it short.
		// Whether a goroutine queued before Close is up to the scheduler:
		// either its write is stored or it was refused, nothing in between.
		time.Sleep(20 * time.Millisecond)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		stored := 0
		for range n {
			switch err := <-errs; {
			case err == nil:
				stored++
			case !errors.Is(err, ErrClosed):
				t.Errorf("SaveReport during Close = %v", err)
			}
		}
		s = openAt(t, path, Options{})
		if n, ok, err := s.Node(ctx, "web-02"); err != nil || !ok || !n.LastCheckin.Equal(at(5)) {
			t.Errorf("check-in after Close and reopen = %+v, %v, %v", n, ok, err)
		}
		if rs, err := s.Reports(ctx, "web-01", 1000); err != nil || len(rs) != stored {
			t.Errorf("after Close and reopen: %d reports, %v; want the %d acknowledged", len(rs), err, stored)
		}
	})
}

func TestContextCancelled(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T) {
		t.Parallel()
		s := openTest(t)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := s.SaveFacts(ctx, "n", "d", nil, at(0)); !errors.Is(err, context.Canceled) {
			t.Errorf("SaveFacts with a cancelled context = %v, want context.Canceled", err)
		}
		if _, err := s.SaveReport(ctx, "n", Report{RunID: "r"}); !errors.Is(err, context.Canceled) {
			t.Errorf("SaveReport with a cancelled context = %v, want context.Canceled", err)
		}
	})
}

func TestPathWithQuestionMark(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "odd?dir #1%")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	s := openAt(t, filepath.Join(dir, "herd.db"), Options{})
	if err := s.SetCompileError(context.Background(), "n", "v1", "boom"); err != nil {
		t.Fatal(err)
	}
	if n, ok, err := s.Node(context.Background(), "n"); err != nil || !ok || n.CompileError != "boom" {
		t.Errorf("Node = %+v, %v, %v", n, ok, err)
	}
}
