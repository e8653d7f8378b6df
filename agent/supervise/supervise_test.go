package supervise

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// modes runs a test once with cgroups (skipped where cgroup v2 is not
// writable) and once with process groups alone.
var modes = []struct {
	name string
	mode cgroupMode
}{
	{"cgroup", cgroupRequired},
	{"pgroup", cgroupOff},
}

func TestStartAndStatus(t *testing.T) {
	t.Parallel()
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, m.mode)
			s := f.start(f.options())
			if !ensure(t, s, f.spec("web", "run")) {
				t.Errorf("first Ensure reported no change")
			}
			st := awaitStatus(t, s, "web", "running", isState(StateRunning))
			if st.PID <= 0 || st.StartedAt.IsZero() || st.Health != HealthUnknown || st.Adopted {
				t.Errorf("Status = %+v, want a pid, a start time, unknown health, not adopted", st)
			}
			if want := filepath.Join(f.logDir, "web.stdout.log"); st.Stdout != want {
				t.Errorf("Status.Stdout = %q, want %q", st.Stdout, want)
			}
			ps, err := readStat(st.PID)
			if err != nil {
				t.Fatal(err)
			}
			if ps.PGRP != st.PID {
				t.Errorf("process group of %d = %d, want its own", st.PID, ps.PGRP)
			}
			if m.mode == cgroupRequired {
				if want := cgroupDir(f.cgroupRoot, "web"); st.Cgroup != want {
					t.Errorf("Status.Cgroup = %q, want %q", st.Cgroup, want)
				}
				pids, _ := cgroupProcs(st.Cgroup)
				if !slices.Contains(pids, st.PID) {
					t.Errorf("cgroup %s holds %v, not the service's pid %d", st.Cgroup, pids, st.PID)
				}
			} else if st.Cgroup != "" {
				t.Errorf("Status.Cgroup = %q without cgroups", st.Cgroup)
			}
			recs, err := f.store.Load(context.Background())
			if err != nil || len(recs) != 1 {
				t.Fatalf("Load = %v, %v; want one record", recs, err)
			}
			if r := recs[0]; r.PID != st.PID || r.StartTicks != ps.StartTicks || r.State != StateRunning || r.BootID == "" {
				t.Errorf("record = %+v, want pid %d, start ticks %d, running", r, st.PID, ps.StartTicks)
			}
			if got := s.List(); len(got) != 1 || got[0].Name != "web" {
				t.Errorf("List() = %+v, want web alone", got)
			}
		})
	}
}

func TestLogsCaptured(t *testing.T) {
	t.Parallel()
	f := newFixture(t, cgroupAuto)
	s := f.start(f.options())
	ensure(t, s, f.spec("printer", "print", "3"))
	st := awaitStatus(t, s, "printer", "running", isState(StateRunning))
	out := awaitFile(t, st.Stdout, "stdout line 3")
	errs := awaitFile(t, st.Stderr, "stderr line 3")
	if strings.Contains(out, "stderr") || strings.Contains(errs, "stdout") {
		t.Errorf("streams mixed:\nstdout:\n%s\nstderr:\n%s", out, errs)
	}
}

func TestLogsRotated(t *testing.T) {
	t.Parallel()
	f := newFixture(t, cgroupAuto)
	opts := f.options()
	opts.LogMaxBytes, opts.LogKeep, opts.LogCheckInterval = 4096, 2, 10*time.Millisecond
	s := f.start(opts)
	ensure(t, s, f.spec("spammer", "spam"))
	st := awaitStatus(t, s, "spammer", "running", isState(StateRunning))
	await(t, "two rotations", func() bool {
		_, err := os.Stat(st.Stdout + ".2")
		return err == nil
	})
	if err := s.Stop(context.Background(), "spammer"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(st.Stdout + ".3"); err == nil {
		t.Errorf("%s.3 exists with LogKeep 2", st.Stdout)
	}
	for _, p := range []string{st.Stdout + ".1", st.Stdout + ".2"} {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) < 4096 || !strings.Contains(string(b), "spam xxx") {
			t.Errorf("%s: %d bytes, want at least 4096 of spam", p, len(b))
		}
	}
}

func TestCrashRestartsWithBackoffThenCrashLoop(t *testing.T) {
	t.Parallel()
	f := newFixture(t, cgroupAuto)
	opts := f.options()
	opts.Policy = Policy{Limit: 2}
	opts.Settle = -1 // the exits are the policy's to count, not Ensure's to report
	s := f.start(opts)
	ensure(t, s, f.spec("crasher", "exit", "3"))
	// The delays are the policy's: 1 s, then 2 s, then the limit.
	for i, want := range []time.Duration{time.Second, 2 * time.Second} {
		st := awaitStatus(t, s, "crasher", "in backoff "+want.String(), func(st Status) bool {
			return st.State == StateBackoff && st.Restarts == i
		})
		if st.Backoff != want || st.LastExit == nil || st.LastExit.Code != 3 {
			t.Errorf("after exit %d: Backoff = %v, LastExit = %+v; want %v, code 3", i+1, st.Backoff, st.LastExit, want)
		}
		if got := st.RetryAt.Sub(st.LastExit.At); got != want {
			t.Errorf("after exit %d: RetryAt - exit = %v, want %v", i+1, got, want)
		}
	}
	st := awaitStatus(t, s, "crasher", "crash-loop", isState(StateCrashLoop))
	if st.Restarts != 2 || st.PID != 0 {
		t.Errorf("Status = %+v, want 2 restarts and no pid", st)
	}
	recs, _ := f.store.Load(context.Background())
	if len(recs) != 1 || recs[0].State != StateCrashLoop || recs[0].Policy.Count != 3 {
		t.Errorf("records = %+v, want one in crash-loop with count 3", recs)
	}
	// Ensure of the same spec tries a crash-looping service once more but
	// keeps its count: its next exit is the crash loop again, not a
	// fresh backoff that would read as healthy.
	if !ensure(t, s, f.spec("crasher", "exit", "3")) {
		t.Errorf("Ensure of a crash-looping service reported no change")
	}
	st = awaitStatus(t, s, "crasher", "back in a crash loop", func(st Status) bool {
		return st.State == StateCrashLoop && st.LastExit != nil && st.LastExit.At.After(st.StartedAt)
	})
	if st.Restarts != 2 {
		t.Errorf("after Ensure: Restarts = %d, want 2 (kept)", st.Restarts)
	}
	// A changed spec is a fresh start with a fresh count.
	if !ensure(t, s, f.spec("crasher", "exit", "4")) {
		t.Errorf("Ensure of a changed spec reported no change")
	}
	st = awaitStatus(t, s, "crasher", "in backoff with a fresh count", isState(StateBackoff))
	if st.Restarts != 0 || st.Backoff != time.Second {
		t.Errorf("after Ensure of a new spec: Restarts = %d, Backoff = %v; want 0, 1s", st.Restarts, st.Backoff)
	}
}

func TestRestartPolicies(t *testing.T) {
	t.Parallel()
	tests := []struct {
		restart RestartPolicy
		code    string
		want    State
	}{
		{RestartNever, "0", StateStopped},
		{RestartNever, "4", StateFailed},
		{RestartOnFailure, "0", StateStopped},
		{RestartOnFailure, "4", StateBackoff},
		{RestartAlways, "0", StateBackoff},
	}
	for _, tt := range tests {
		t.Run(string(tt.restart)+"/"+tt.code, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, cgroupAuto)
			opts := f.options()
			opts.Settle = -1 // the policy's outcome is under test, not Ensure's report
			s := f.start(opts)
			spec := f.spec("svc", "exit", tt.code)
			spec.Restart = tt.restart
			ensure(t, s, spec)
			st := awaitStatus(t, s, "svc", string(tt.want), func(st Status) bool { return st.LastExit != nil })
			if st.State != tt.want || st.Restarts != 0 || st.LastExit.Code != atoi(t, tt.code) {
				t.Errorf("Status = %+v, want %s, no restart, code %s", st, tt.want, tt.code)
			}
		})
	}
}

func TestStartFailure(t *testing.T) {
	t.Parallel()
	f := newFixture(t, cgroupAuto)
	s := f.start(f.options())
	spec := f.spec("broken")
	spec.Argv = []string{"/nonexistent/herd-test-binary"}
	if _, err := s.Ensure(context.Background(), spec); err == nil {
		t.Fatal("Ensure of a missing binary returned no error")
	}
	st, _ := s.Status("broken")
	if st.State != StateBackoff || st.LastExit == nil || st.LastExit.Err == "" || st.Backoff != time.Second {
		t.Errorf("Status = %+v, want backoff 1s after a start error", st)
	}
}

func TestStopGraceful(t *testing.T) {
	t.Parallel()
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, m.mode)
			s := f.start(f.options())
			ensure(t, s, f.spec("web", "run"))
			st := awaitStatus(t, s, "web", "running", isState(StateRunning))
			awaitFile(t, st.Stdout, "ready") // its SIGTERM handler is in place
			if err := s.Stop(context.Background(), "web"); err != nil {
				t.Fatal(err)
			}
			got, _ := s.Status("web")
			if got.State != StateStopped || got.PID != 0 || got.LastExit == nil || got.LastExit.Code != 0 || got.LastExit.Signal != 0 {
				t.Errorf("Status after Stop = %+v, want stopped after exit code 0", got)
			}
			if alive(st.PID) {
				t.Errorf("process %d alive after Stop", st.PID)
			}
			if st.Cgroup != "" && dirExists(st.Cgroup) {
				t.Errorf("cgroup %s left after Stop", st.Cgroup)
			}
			recs, _ := f.store.Load(context.Background())
			if len(recs) != 1 || recs[0].State != StateStopped || recs[0].PID != 0 {
				t.Errorf("records = %+v, want one stopped", recs)
			}
			if err := s.Stop(context.Background(), "web"); err != nil {
				t.Errorf("second Stop = %v", err)
			}
		})
	}
}

func TestStopKillsAfterTimeout(t *testing.T) {
	t.Parallel()
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, m.mode)
			s := f.start(f.options())
			spec := f.spec("stubborn", "ignore-term")
			spec.StopTimeout = 200 * time.Millisecond
			ensure(t, s, spec)
			st := awaitStatus(t, s, "stubborn", "running", isState(StateRunning))
			awaitFile(t, st.Stdout, "ready") // SIGTERM is ignored from now on
			if err := s.Stop(context.Background(), "stubborn"); err != nil {
				t.Fatal(err)
			}
			got, _ := s.Status("stubborn")
			if got.LastExit == nil || got.LastExit.Signal != syscall.SIGKILL {
				t.Errorf("LastExit = %+v, want killed by SIGKILL", got.LastExit)
			}
			if alive(st.PID) {
				t.Errorf("process %d alive after Stop", st.PID)
			}
		})
	}
}

func TestStopKillsEscapedChild(t *testing.T) {
	t.Parallel()
	f := newFixture(t, cgroupRequired)
	s := f.start(f.options())
	pidfile := filepath.Join(f.dir, "child.pid")
	ensure(t, s, f.spec("forker", "fork-setsid", pidfile))
	st := awaitStatus(t, s, "forker", "running", isState(StateRunning))
	await(t, "the child's pid file", func() bool { _, err := os.Stat(pidfile); return err == nil })
	b, _ := os.ReadFile(pidfile)
	child, err := strconv.Atoi(string(b))
	if err != nil {
		t.Fatal(err)
	}
	cs, err := readStat(child)
	if err != nil {
		t.Fatal(err)
	}
	if cs.Session != child || cs.PGRP == st.PID {
		t.Fatalf("child %d: session %d, group %d; want it escaped into its own session", child, cs.Session, cs.PGRP)
	}
	if err := s.Stop(context.Background(), "forker"); err != nil {
		t.Fatal(err)
	}
	if alive(child) || alive(st.PID) {
		t.Errorf("after Stop: service alive %v, escaped child alive %v; want both gone", alive(st.PID), alive(child))
	}
}

func TestExitKillsLeftovers(t *testing.T) {
	t.Parallel()
	// When the main process dies, what it left in the cgroup dies too.
	f := newFixture(t, cgroupRequired)
	s := f.start(f.options())
	pidfile := filepath.Join(f.dir, "child.pid")
	ensure(t, s, f.spec("forker", "fork-setsid", pidfile))
	st := awaitStatus(t, s, "forker", "running", isState(StateRunning))
	await(t, "the child's pid file", func() bool { _, err := os.Stat(pidfile); return err == nil })
	b, _ := os.ReadFile(pidfile)
	child, _ := strconv.Atoi(string(b))
	if err := syscall.Kill(st.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	awaitStatus(t, s, "forker", "restarted", func(st Status) bool { return st.Restarts == 1 && st.State == StateRunning })
	if alive(child) {
		t.Errorf("escaped child %d of the dead service still alive", child)
	}
}

func TestAdoption(t *testing.T) {
	t.Parallel()
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, m.mode)
			s1 := f.start(f.options())
			spec := f.spec("web", "run")
			ensure(t, s1, spec)
			st1 := awaitStatus(t, s1, "web", "running", isState(StateRunning))
			if err := s1.Close(); err != nil {
				t.Fatal(err)
			}
			if !alive(st1.PID) {
				t.Fatalf("service %d died with its supervisor", st1.PID)
			}

			s2 := f.start(f.options())
			st2, ok := s2.Status("web")
			if !ok || st2.State != StateRunning || st2.PID != st1.PID || !st2.Adopted {
				t.Fatalf("Status after New = %+v, want pid %d running and adopted", st2, st1.PID)
			}
			if ensure(t, s2, spec) {
				t.Errorf("Ensure of the adopted service reported a change")
			}
			if got := f.ownProcs(); !slices.Equal(got, []int{st1.PID}) {
				t.Errorf("processes = %v, want only %d (no duplicate)", got, st1.PID)
			}
			// The adopted process is watched: its death is noticed and
			// it is restarted.
			if err := syscall.Kill(st1.PID, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			st3 := awaitStatus(t, s2, "web", "restarted", func(st Status) bool { return st.State == StateRunning && st.Restarts == 1 })
			if st3.PID == st1.PID || st3.Adopted {
				t.Errorf("Status after restart = %+v, want a new pid, not adopted", st3)
			}
			if got := f.ownProcs(); !slices.Equal(got, []int{st3.PID}) {
				t.Errorf("processes = %v, want only %d", got, st3.PID)
			}
		})
	}
}

func TestAdoptionAfterDeath(t *testing.T) {
	t.Parallel()
	f := newFixture(t, cgroupAuto)
	s1 := f.start(f.options())
	ensure(t, s1, f.spec("web", "run"))
	st1 := awaitStatus(t, s1, "web", "running", isState(StateRunning))
	s1.Close()
	// It dies while no supervisor runs. (It is this test's child: reap it,
	// as init would reap an orphan.)
	if err := syscall.Kill(st1.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var ws syscall.WaitStatus
	if _, err := syscall.Wait4(st1.PID, &ws, 0, nil); err != nil {
		t.Fatal(err)
	}
	s2 := f.start(f.options())
	st := awaitStatus(t, s2, "web", "running again", func(st Status) bool { return st.State == StateRunning })
	if st.PID == st1.PID || st.Restarts != 1 || st.LastExit == nil || !st.LastExit.Unknown {
		t.Errorf("Status = %+v, want a new pid after 1 restart, last exit unknown", st)
	}
}

func TestPidReuseRefused(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		tweak     func(*Record)
		wantState State
	}{
		// Same boot, other start time: the recorded process died and its
		// pid now belongs to a stranger; the service failed (never).
		{"start time", func(r *Record) { r.StartTicks++ }, StateFailed},
		// Other boot: the host rebooted; the service starts afresh.
		{"boot id", func(r *Record) { r.BootID = "00000000-0000-0000-0000-000000000000" }, StateRunning},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, cgroupOff)
			// The stranger: in a process group of its own whose id is the
			// recorded one, so that a careless cleanup would kill it.
			stranger := exec.Command(f.exe, "run")
			stranger.Env = f.env()
			stranger.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			if err := stranger.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				_ = stranger.Process.Kill()
				_ = stranger.Wait()
			})
			pid := stranger.Process.Pid
			ps, err := readStat(pid)
			if err != nil {
				t.Fatal(err)
			}
			bootID, _ := readBootID()
			spec, err := f.spec("web", "run").normalize()
			if err != nil {
				t.Fatal(err)
			}
			spec.Restart = RestartNever
			rec := Record{
				Name: "web", Spec: spec, Digest: spec.digest(), State: StateRunning,
				PID: pid, PGID: pid, StartTicks: ps.StartTicks, BootID: bootID,
				StartedAt: time.Now().Add(-time.Hour),
			}
			tt.tweak(&rec)
			if err := f.store.Save(context.Background(), rec); err != nil {
				t.Fatal(err)
			}

			s := f.start(f.options())
			st := awaitStatus(t, s, "web", string(tt.wantState), isState(tt.wantState))
			if st.Adopted || st.PID == pid {
				t.Errorf("Status = %+v: the stranger %d was adopted", st, pid)
			}
			if !alive(pid) {
				t.Errorf("the stranger %d was killed", pid)
			}
			if err := s.Stop(context.Background(), "web"); err != nil {
				t.Fatal(err)
			}
			if !alive(pid) {
				t.Errorf("the stranger %d was killed by Stop", pid)
			}
		})
	}
}

func TestEnsureNoChangeAndChange(t *testing.T) {
	t.Parallel()
	f := newFixture(t, cgroupAuto)
	s := f.start(f.options())
	spec := f.spec("web", "run")
	ensure(t, s, spec)
	st1 := awaitStatus(t, s, "web", "running", isState(StateRunning))
	if ensure(t, s, spec) {
		t.Errorf("Ensure with the same spec reported a change")
	}
	if st, _ := s.Status("web"); st.PID != st1.PID {
		t.Errorf("Ensure with the same spec changed the pid from %d to %d", st1.PID, st.PID)
	}
	changed := spec
	changed.Env = append(slices.Clone(spec.Env), "FOO=1")
	if !ensure(t, s, changed) {
		t.Errorf("Ensure with a changed spec reported no change")
	}
	st2, _ := s.Status("web")
	if st2.State != StateRunning || st2.PID == st1.PID || st2.Digest == st1.Digest {
		t.Errorf("Status after the change = %+v, want running with a new pid and digest", st2)
	}
	if alive(st1.PID) {
		t.Errorf("old process %d alive after the restart", st1.PID)
	}
	if got := f.ownProcs(); !slices.Equal(got, []int{st2.PID}) {
		t.Errorf("processes = %v, want only %d", got, st2.PID)
	}
	env, _ := os.ReadFile("/proc/" + strconv.Itoa(st2.PID) + "/environ")
	if !strings.Contains(string(env), "FOO=1\x00") {
		t.Errorf("new process lacks FOO=1 in its environment")
	}
}

func TestRestartAndRemove(t *testing.T) {
	t.Parallel()
	f := newFixture(t, cgroupAuto)
	s := f.start(f.options())
	ensure(t, s, f.spec("web", "run"))
	st1 := awaitStatus(t, s, "web", "running", isState(StateRunning))
	if err := s.Restart(context.Background(), "web"); err != nil {
		t.Fatal(err)
	}
	st2, _ := s.Status("web")
	if st2.State != StateRunning || st2.PID == st1.PID {
		t.Errorf("Status after Restart = %+v, want running with a new pid", st2)
	}
	if err := s.Remove(context.Background(), "web"); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Status("web"); ok {
		t.Errorf("Status of a removed service found")
	}
	if recs, _ := f.store.Load(context.Background()); len(recs) != 0 {
		t.Errorf("records after Remove = %+v, want none", recs)
	}
	for _, call := range []func(context.Context, string) error{s.Stop, s.Restart, s.Remove} {
		if err := call(context.Background(), "web"); !errors.Is(err, ErrUnknown) {
			t.Errorf("request for a removed service = %v, want ErrUnknown", err)
		}
	}
}

func TestClosed(t *testing.T) {
	t.Parallel()
	f := newFixture(t, cgroupAuto)
	s := f.start(f.options())
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Ensure(context.Background(), f.spec("web", "run")); !errors.Is(err, ErrClosed) {
		t.Errorf("Ensure after Close = %v, want ErrClosed", err)
	}
}

func TestUser(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("running as another user needs root")
	}
	f := newFixture(t, cgroupAuto)
	s := f.start(f.options())
	// The test binary may sit in a directory nobody else can read; sleep
	// is anyone's.
	spec := Spec{Name: "nobody", Argv: []string{"sleep", "1000"}, Env: []string{testIDEnv + "=" + f.id},
		User: &Credential{UID: 65534, GID: 65534}}
	ensure(t, s, spec)
	st := awaitStatus(t, s, "nobody", "running", isState(StateRunning))
	b, err := os.ReadFile("/proc/" + strconv.Itoa(st.PID) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Uid:\t65534\t65534", "Gid:\t65534\t65534"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("/proc/%d/status lacks %q", st.PID, want)
		}
	}
}

func TestHealth(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		health func(f *fixture, port string) HealthCheck
		want   Health
	}{
		{"exec pass", func(f *fixture, _ string) HealthCheck { return HealthCheck{Exec: []string{f.exe, "exit", "0"}} }, HealthHealthy},
		{"exec fail", func(f *fixture, _ string) HealthCheck { return HealthCheck{Exec: []string{f.exe, "exit", "1"}} }, HealthUnhealthy},
		{"http pass", func(_ *fixture, port string) HealthCheck {
			return HealthCheck{HTTP: "http://127.0.0.1:" + port + "/ok"}
		}, HealthHealthy},
		{"http fail", func(_ *fixture, port string) HealthCheck {
			return HealthCheck{HTTP: "http://127.0.0.1:" + port + "/fail"}
		}, HealthUnhealthy},
		{"tcp pass", func(_ *fixture, port string) HealthCheck { return HealthCheck{TCP: "127.0.0.1:" + port} }, HealthHealthy},
		{"tcp fail", func(f *fixture, _ string) HealthCheck { return HealthCheck{TCP: "127.0.0.1:" + freePort(f.t)} }, HealthUnhealthy},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, cgroupAuto)
			s := f.start(f.options())
			port := freePort(t)
			spec := f.spec("web", "listen", port)
			h := tt.health(f, port)
			h.Interval, h.Timeout, h.Retries = 20*time.Millisecond, 5*time.Second, 2
			spec.Health = &h
			ensure(t, s, spec)
			// AwaitHealth returns with the first verdict, whichever it is,
			// long before its context ends.
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			st, ok := s.AwaitHealth(ctx, "web")
			if !ok || st.Health != tt.want || ctx.Err() != nil {
				t.Fatalf("AwaitHealth(web) = %+v, %v (context: %v); want health %s", st, ok, ctx.Err(), tt.want)
			}
			if tt.want == HealthUnhealthy && st.HealthError == "" {
				t.Errorf("unhealthy without a HealthError")
			}
			// Health is reported, not acted on.
			if st.State != StateRunning || st.Restarts != 0 {
				t.Errorf("Status = %+v, want running, never restarted", st)
			}
		})
	}
}

// TestAwaitHealthNotRunning: the wait for a verdict ends when the service
// is not running (it crashed and waits in backoff); an unknown service is
// said to be unknown at once.
func TestAwaitHealthNotRunning(t *testing.T) {
	t.Parallel()
	f := newFixture(t, cgroupAuto)
	s := f.start(f.options())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if st, ok := s.AwaitHealth(ctx, "nobody"); ok {
		t.Errorf("AwaitHealth(nobody) = %+v, true; want false", st)
	}
	spec := f.spec("web", "run-for", "500ms", "3")
	spec.Health = &HealthCheck{Exec: []string{f.exe, "sleep", "30"}, Interval: time.Hour, Timeout: time.Hour, Retries: 1}
	ensure(t, s, spec)
	st, ok := s.AwaitHealth(ctx, "web")
	if !ok || st.State == StateRunning || st.Health != HealthUnknown || ctx.Err() != nil {
		t.Fatalf("AwaitHealth(web) after a crash = %+v, %v (context: %v); want not running, health unknown, before the deadline", st, ok, ctx.Err())
	}
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// BenchmarkEnsureNoChange measures the agent's hot path: Ensure of a
// service that already runs as specified.
func BenchmarkEnsureNoChange(b *testing.B) {
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	s, err := New(context.Background(), Options{
		Store: NewDirStore(filepath.Join(dir, "state")), LogDir: filepath.Join(dir, "log"), NoCgroups: true,
	})
	if err != nil {
		b.Fatal(err)
	}
	spec := Spec{
		Name: "web", Argv: []string{exe, "run"},
		Env: []string{testprogEnv + "=1", testIDEnv + "=" + strconv.Itoa(os.Getpid()) + "-bench"},
	}
	b.Cleanup(func() {
		if err := s.Stop(context.Background(), "web"); err != nil {
			b.Error(err)
		}
		s.Close()
	})
	ctx := context.Background()
	if _, err := s.Ensure(ctx, spec); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if changed, err := s.Ensure(ctx, spec); changed || err != nil {
			b.Fatalf("Ensure = %v, %v; want no change", changed, err)
		}
	}
}
