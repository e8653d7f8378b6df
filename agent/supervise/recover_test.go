package supervise

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestLostStoreSideRecords: the store loses every record (the agent's
// database moved aside as corrupt) while a service runs; the next
// supervisor finds it from its side record, supervises the same process,
// records it in the store again, starts no second one on Ensure, and
// stops it.
func TestLostStoreSideRecords(t *testing.T) {
	t.Parallel()
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			f := newFixture(t, m.mode)
			opts := f.options()
			opts.RecordDir = filepath.Join(f.dir, "side")
			s1 := f.start(opts)
			spec := f.spec("web", "run")
			ensure(t, s1, spec)
			st1 := awaitStatus(t, s1, "web", "running", isState(StateRunning))
			if err := s1.Close(); err != nil {
				t.Fatal(err)
			}
			if fi, err := os.Stat(opts.RecordDir); err != nil || fi.Mode().Perm() != 0o700 {
				t.Errorf("side record directory: %v, %v; want mode 0700", fi, err)
			}

			fresh := NewDirStore(filepath.Join(f.dir, "fresh"))
			opts.Store = fresh
			s2 := f.start(opts)
			st2, ok := s2.Status("web")
			if !ok || st2.State != StateRunning || st2.PID != st1.PID || !st2.Adopted {
				t.Fatalf("Status after New over an empty store = %+v, %v; want pid %d running and adopted", st2, ok, st1.PID)
			}
			if recs, err := fresh.Load(ctx); err != nil || len(recs) != 1 || recs[0].PID != st1.PID {
				t.Errorf("the store after New = %+v, %v; want web's record at pid %d", recs, err, st1.PID)
			}
			if ensure(t, s2, spec) {
				t.Errorf("Ensure of the service found again reported a change")
			}
			if got := f.ownProcs(); !slices.Equal(got, []int{st1.PID}) {
				t.Errorf("processes = %v, want only %d (no duplicate)", got, st1.PID)
			}
			if err := s2.Stop(ctx, "web"); err != nil {
				t.Fatal(err)
			}
			if alive(st1.PID) {
				t.Errorf("pid %d still runs after Stop", st1.PID)
			}
		})
	}
}

// TestLostStoreFoundByCgroup: with neither a store record nor a side
// record, a service still running in its cgroup of this state directory's
// subtree is adopted, not duplicated: Stop kills it, and Ensure, which
// brings its spec, replaces it with exactly one process.
func TestLostStoreFoundByCgroup(t *testing.T) {
	t.Parallel()
	for _, then := range []string{"stop", "ensure"} {
		t.Run(then, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			f := newFixture(t, cgroupRequired)
			s1 := f.start(f.options())
			spec := f.spec("web", "run")
			ensure(t, s1, spec)
			st1 := awaitStatus(t, s1, "web", "running", isState(StateRunning))
			if err := s1.Close(); err != nil {
				t.Fatal(err)
			}
			// An empty cgroup of a service nobody recorded is a leftover.
			stale := cgroupDir(f.cgroupRoot, "old")
			if err := os.Mkdir(stale, 0o755); err != nil {
				t.Fatal(err)
			}

			opts := f.options()
			fresh := NewDirStore(filepath.Join(f.dir, "fresh"))
			opts.Store = fresh
			s2 := f.start(opts)
			st2, ok := s2.Status("web")
			if !ok || st2.State != StateRunning || st2.PID != st1.PID || !st2.Adopted || st2.Cgroup != st1.Cgroup {
				t.Fatalf("Status after New over an empty store = %+v, %v; want pid %d running, adopted, in %s", st2, ok, st1.PID, st1.Cgroup)
			}
			if _, ok := s2.Status("old"); ok || dirExists(stale) {
				t.Errorf("the empty leftover cgroup %s: known %v, exists %v; want neither", stale, ok, dirExists(stale))
			}
			recs, err := fresh.Load(ctx)
			if err != nil || len(recs) != 1 || recs[0].PID != st1.PID || recs[0].Digest != "" {
				t.Errorf("the store after New = %+v, %v; want web's record at pid %d, spec unknown", recs, err, st1.PID)
			}
			if err := s2.Restart(ctx, "web"); !errors.Is(err, ErrUnknown) {
				t.Errorf("Restart of a service without a spec = %v, want ErrUnknown", err)
			}
			switch then {
			case "stop":
				if err := s2.Stop(ctx, "web"); err != nil {
					t.Fatal(err)
				}
				if got := f.ownProcs(); len(got) != 0 {
					t.Errorf("processes after Stop = %v, want none", got)
				}
			case "ensure":
				if !ensure(t, s2, spec) {
					t.Errorf("Ensure of a service with an unknown spec reported no change")
				}
				st3, _ := s2.Status("web")
				if st3.State != StateRunning || st3.PID == st1.PID {
					t.Errorf("Status after Ensure = %+v, want a new process", st3)
				}
				if got := f.ownProcs(); !slices.Equal(got, []int{st3.PID}) {
					t.Errorf("processes = %v, want only %d (no duplicate)", got, st3.PID)
				}
			}
		})
	}
}

func TestCheckPrivateDir(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	mk := func(name string, mode os.FileMode) string {
		t.Helper()
		p := filepath.Join(base, name)
		if err := os.Mkdir(p, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	private := mk("private", 0o700)
	link := filepath.Join(base, "link")
	if err := os.Symlink(private, link); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		dir    string
		wantOK bool
	}{
		{private, true},
		{filepath.Join(base, "missing"), true},
		{mk("open", 0o777), false},
		{mk("group", 0o770), false},
		{link, false},
	}
	for _, tt := range tests {
		if err := checkPrivateDir(tt.dir); (err == nil) != tt.wantOK {
			t.Errorf("checkPrivateDir(%s) = %v, want ok %v", filepath.Base(tt.dir), err, tt.wantOK)
		}
	}
}

func TestMainProcessOrder(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		a, b procStat
		want bool // a before b
	}{
		{"leader first", procStat{PID: 20, PGRP: 20, StartTicks: 9}, procStat{PID: 10, PGRP: 20, StartTicks: 1}, true},
		{"not leader", procStat{PID: 10, PGRP: 20, StartTicks: 1}, procStat{PID: 20, PGRP: 20, StartTicks: 9}, false},
		{"oldest", procStat{PID: 30, PGRP: 30, StartTicks: 1}, procStat{PID: 20, PGRP: 20, StartTicks: 2}, true},
		{"lowest pid", procStat{PID: 20, PGRP: 20, StartTicks: 1}, procStat{PID: 30, PGRP: 30, StartTicks: 1}, true},
	}
	for _, tt := range tests {
		if got := better(tt.a, tt.b); got != tt.want {
			t.Errorf("%s: better(%+v, %+v) = %v, want %v", tt.name, tt.a, tt.b, got, tt.want)
		}
	}
}

// TestSideRecordsWrittenForOldRecords: a store from before side records
// (a supervisor without RecordDir) gets its side records at the next
// start, so that losing the store afterwards loses no service.
func TestSideRecordsWrittenForOldRecords(t *testing.T) {
	t.Parallel()
	f := newFixture(t, cgroupOff)
	s1 := f.start(f.options())
	ensure(t, s1, f.spec("web", "run"))
	st1 := awaitStatus(t, s1, "web", "running", isState(StateRunning))
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}
	opts := f.options()
	opts.RecordDir = filepath.Join(f.dir, "side")
	s2 := f.start(opts)
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
	side, err := NewDirStore(opts.RecordDir).Load(context.Background())
	if err != nil || len(side) != 1 || side[0].PID != st1.PID {
		t.Fatalf("side records = %+v, %v; want web at pid %d", side, err, st1.PID)
	}
	opts.Store = NewDirStore(filepath.Join(f.dir, "fresh"))
	s3 := f.start(opts)
	if st, ok := s3.Status("web"); !ok || st.PID != st1.PID || !st.Adopted {
		t.Errorf("Status over a lost store = %+v, %v; want pid %d adopted", st, ok, st1.PID)
	}
}

// TestRecordDirMustBePrivate: New makes the side record directory 0700,
// tightens one others may write to, and refuses a link: records written
// through it could be read, or planted, by others.
func TestRecordDirMustBePrivate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		prepare func(t *testing.T, dir string)
		wantErr bool
	}{
		{"missing", func(*testing.T, string) {}, false},
		{"open", func(t *testing.T, dir string) {
			if err := os.Mkdir(dir, 0o777); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(dir, 0o777); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"link", func(t *testing.T, dir string) {
			if err := os.Symlink(t.TempDir(), dir); err != nil {
				t.Fatal(err)
			}
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, cgroupOff)
			opts := f.options()
			opts.RecordDir = filepath.Join(f.dir, "side")
			tt.prepare(t, opts.RecordDir)
			s, err := New(context.Background(), opts)
			if err == nil {
				s.Close()
			}
			if (err != nil) != tt.wantErr {
				t.Fatalf("New = %v, want error %v", err, tt.wantErr)
			}
			if tt.wantErr {
				return
			}
			if fi, err := os.Lstat(opts.RecordDir); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
				t.Errorf("record directory after New: %v, %v; want a directory 0700", fi, err)
			}
		})
	}
}
