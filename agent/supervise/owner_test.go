package supervise

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestTwoStateDirsDoNotShareCgroups runs service "web" under two
// supervisors over two state directories at once, with the default cgroup
// subtree, as a production agent and a sandbox rehearsal would: each gets
// its own cgroup, and neither start kills the other's process.
func TestTwoStateDirsDoNotShareCgroups(t *testing.T) {
	t.Parallel()
	f := newFixture(t, cgroupOff)
	mnt, err := cgroup2Mount()
	if err != nil {
		t.Skipf("cgroup v2 is not mounted: %v", err)
	}
	var sups [2]*Supervisor
	var homes [2]string
	for i := range sups {
		state := t.TempDir()
		homes[i] = filepath.Join(mnt, DefaultCgroupName, CgroupScope(state))
		if _, err := setupCgroupRoot(homes[i]); err != nil {
			t.Skipf("cgroup v2 is not writable here: %v", err)
		}
		home := homes[i]
		// Runs after the supervisor's cleanup stopped its services.
		t.Cleanup(func() {
			if err := os.Remove(home); err != nil && !errors.Is(err, os.ErrNotExist) {
				t.Errorf("removing the test's cgroup subtree: %v", err)
			}
		})
		opts := f.options()
		opts.CgroupRoot, opts.NoCgroups = "", false
		opts.StateDir = state
		opts.Store = NewDirStore(filepath.Join(state, "services"))
		opts.LogDir = filepath.Join(state, "logs")
		sups[i] = f.start(opts)
	}
	if homes[0] == homes[1] {
		t.Fatalf("two state directories share the cgroup subtree %s", homes[0])
	}
	var first [2]Status
	for i, s := range sups {
		ensure(t, s, f.spec("web", "run"))
		first[i], _ = s.Status("web")
		if want := cgroupDir(homes[i], "web"); first[i].Cgroup != want {
			t.Errorf("supervisor %d: cgroup %s, want %s", i, first[i].Cgroup, want)
		}
	}
	// Both started; now both must still run their first process, each in
	// its own cgroup. A shared cgroup would have been emptied by the second
	// start, and the first supervisor would be restarting "web".
	for i, s := range sups {
		st, _ := s.Status("web")
		if st.State != StateRunning || st.PID != first[i].PID || st.Restarts != 0 || !alive(st.PID) {
			t.Errorf("supervisor %d: status %+v, want its first process %d running, no restart", i, st, first[i].PID)
		}
		pids, err := cgroupProcs(st.Cgroup)
		if err != nil || !slices.Contains(pids, st.PID) {
			t.Errorf("supervisor %d: cgroup %s holds %v (%v), want pid %d", i, st.Cgroup, pids, err, st.PID)
		}
	}
}

// TestForeignCgroupRecordIsNotKilled: a record naming a cgroup outside the
// state directory's subtree (a record from before subtrees, or a forged
// one) is never emptied: the process in it survives the record's service
// being stopped.
func TestForeignCgroupRecordIsNotKilled(t *testing.T) {
	t.Parallel()
	f := newFixture(t, cgroupRequired)
	other, err := testCgroupRoot(t, f.id+"-other")
	if err != nil {
		t.Skipf("cgroup v2 is not writable here: %v", err)
	}
	// Another root's service, alive in its own cgroup.
	victim := newFixture(t, cgroupOff)
	vopts := victim.options()
	vopts.CgroupRoot, vopts.NoCgroups = other, false
	vs := victim.start(vopts)
	ensure(t, vs, victim.spec("web", "run"))
	vst, _ := vs.Status("web")
	// A record of ours that claims that cgroup, its process long dead.
	rec := Record{Name: "web", State: StateRunning, PID: 1 << 22, PGID: 1 << 22, StartTicks: 1, Cgroup: vst.Cgroup}
	if rec.BootID, err = readBootID(); err != nil {
		t.Fatal(err)
	}
	if err := f.store.Save(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	s := f.start(f.options())
	if err := s.Stop(context.Background(), "web"); err != nil {
		t.Fatal(err)
	}
	if st, _ := vs.Status("web"); st.State != StateRunning || st.PID != vst.PID || !alive(vst.PID) {
		t.Errorf("the other root's service: %+v, want pid %d still running", st, vst.PID)
	}
}

// TestEnsureReportsAnExitWithinSettle: a service that dies right after its
// start makes Ensure fail with its exit and its last output.
func TestEnsureReportsAnExitWithinSettle(t *testing.T) {
	t.Parallel()
	f := newFixture(t, cgroupAuto)
	opts := f.options()
	opts.Settle = 10 * time.Second // ends early: the exit answers at once
	s := f.start(opts)
	_, err := s.Ensure(context.Background(), f.spec("bad", "say-exit", "3", "config error on line 7"))
	var ee *ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("Ensure = %v, want an *ExitError", err)
	}
	if ee.Exit.Code != 3 || !strings.Contains(ee.LogTail, "config error on line 7") {
		t.Errorf("ExitError = %+v, want code 3 and the log line", ee)
	}
	if !strings.Contains(err.Error(), "exited with code 3") || !strings.Contains(err.Error(), "config error on line 7") {
		t.Errorf("error text %q lacks the exit or the log tail", err)
	}
	st, _ := s.Status("bad")
	if p := Problem(st); st.State != StateBackoff || !strings.Contains(p, "backoff") || !strings.Contains(p, "config error on line 7") {
		t.Errorf("status %s, Problem = %q; want backoff with the log tail", st.State, p)
	}
}

// TestForkingDaemonIsRefused: a program that forks into the background and
// exits 0 is a failed start naming the cause, and its child is killed.
func TestForkingDaemonIsRefused(t *testing.T) {
	t.Parallel()
	f := newFixture(t, cgroupRequired)
	opts := f.options()
	opts.Settle = 10 * time.Second
	s := f.start(opts)
	pidFile := filepath.Join(f.dir, "child.pid")
	_, err := s.Ensure(context.Background(), f.spec("forker", "daemonize", pidFile))
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Exit.Err != ErrForked.Error() || !ee.Exit.Failed() {
		t.Fatalf("Ensure = %v, want an *ExitError carrying ErrForked", err)
	}
	if !strings.Contains(err.Error(), `type = "forking"`) {
		t.Errorf("error %q does not explain forking", err)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	child, _ := strconv.Atoi(string(b))
	await(t, "the forked child to be killed", func() bool { return !alive(child) })
}

// TestRestartKeepsTheCrashLoopCount: a refresh of a flapping service does
// not make it look fresh: the restart counts toward the crash loop.
func TestRestartKeepsTheCrashLoopCount(t *testing.T) {
	t.Parallel()
	f := newFixture(t, cgroupAuto)
	opts := f.options()
	opts.Settle = -1
	opts.Policy = Policy{Limit: 1}
	s := f.start(opts)
	ensure(t, s, f.spec("flap", "exit", "3"))
	awaitStatus(t, s, "flap", "in backoff", isState(StateBackoff))
	if err := s.Restart(context.Background(), "flap"); err != nil {
		t.Fatal(err)
	}
	st := awaitStatus(t, s, "flap", "exited after the restart", func(st Status) bool {
		return st.State != StateRunning && st.LastExit != nil && st.LastExit.At.After(st.StartedAt)
	})
	if st.State != StateCrashLoop {
		t.Errorf("after Restart and one more exit: %s, want crash-loop (count kept)", st.State)
	}
}
