package resources

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herdcm/herd/agent/supervise"
	"golang.org/x/sys/unix"
)

// supervisorServices adapts the real supervisor to Services, as the agent
// does: it maps a ServiceSpec onto the host root (argv[0] found in a
// sandbox root, dir under it, HERD_ROOT, names resolved in the root's own
// accounts), and remembers which supervisor digest each ServiceSpec
// digest became, so that Running can answer in ServiceSpec digests.
type supervisorServices struct {
	sup  *supervise.Supervisor
	root string

	mu sync.Mutex
	// digests maps a service to {ServiceSpec.Digest, supervisor digest} of
	// its last Ensure.
	digests map[string][2]string
}

func (a *supervisorServices) Ensure(ctx context.Context, s ServiceSpec) (bool, error) {
	spec, err := a.superviseSpec(s)
	if err != nil {
		return false, err
	}
	changed, err := a.sup.Ensure(ctx, spec)
	var exit *supervise.ExitError
	if err != nil && !errors.As(err, &exit) {
		return changed, err
	}
	// A process that died at its start still runs (in backoff) with
	// this spec: remember it, so that the next Check sees the failure
	// rather than a changed spec.
	if st, ok := a.sup.Status(s.Name); ok {
		a.mu.Lock()
		a.digests[s.Name] = [2]string{s.Digest(), st.Digest}
		a.mu.Unlock()
	}
	return changed, err
}

func (a *supervisorServices) Stop(ctx context.Context, name string) error {
	return a.sup.Stop(ctx, name)
}

func (a *supervisorServices) Restart(ctx context.Context, name string) error {
	return a.sup.Restart(ctx, name)
}

func (a *supervisorServices) Running(name string) (ServiceState, bool) {
	st, ok := a.sup.Status(name)
	if !ok {
		return ServiceState{}, false
	}
	a.mu.Lock()
	d := a.digests[name]
	a.mu.Unlock()
	// A service in backoff is kept running by the supervisor, and Ensure
	// leaves it be: calling it "not running" would never converge.
	s := ServiceState{
		PID: st.PID, Running: st.State == supervise.StateRunning || st.State == supervise.StateBackoff,
		State: string(st.State), Problem: supervise.Problem(st),
	}
	if d[1] != "" && d[1] == st.Digest {
		s.SpecDigest = d[0]
	}
	return s, true
}

// superviseSpec places s on the host root, the way RunCommand does.
func (a *supervisorServices) superviseSpec(s ServiceSpec) (supervise.Spec, error) {
	sandbox := a.root != "/"
	herdRoot := ""
	if sandbox {
		herdRoot = a.root
	}
	argv := slices.Clone(s.Argv)
	if fi, err := os.Stat(filepath.Join(a.root, argv[0])); sandbox && err == nil && fi.Mode().IsRegular() {
		argv[0] = filepath.Join(a.root, argv[0])
	}
	spec := supervise.Spec{
		Name:        s.Name,
		Argv:        argv,
		Env:         append([]string{"PATH=" + supervise.DefaultPath, "HERD_ROOT=" + herdRoot}, s.Env...),
		Dir:         filepath.Join(a.root, s.Dir),
		Restart:     supervise.RestartPolicy(s.Restart),
		StopSignal:  unix.SignalNum(s.StopSignal),
		StopTimeout: s.StopTimeout,
	}
	if s.User != "" {
		u, ok, err := LookupUser(a.root, s.User)
		if err != nil || !ok {
			return supervise.Spec{}, fmt.Errorf("service %s: no user %s in the host root (%v)", s.Name, s.User, err)
		}
		spec.User = &supervise.Credential{UID: uint32(u.ID), GID: uint32(u.GID)}
	}
	if s.Group != "" {
		g, ok, err := LookupGroup(a.root, s.Group)
		if err != nil || !ok {
			return supervise.Spec{}, fmt.Errorf("service %s: no group %s in the host root (%v)", s.Name, s.Group, err)
		}
		if spec.User == nil {
			spec.User = &supervise.Credential{UID: uint32(os.Getuid())}
		}
		spec.User.GID = uint32(g.ID)
	}
	if h := s.Health; h != nil {
		spec.Health = &supervise.HealthCheck{Exec: h.Exec, HTTP: h.HTTP, TCP: h.TCP, Interval: h.Interval, Timeout: h.Timeout, Retries: h.Retries}
	}
	return spec, nil
}

// TestServiceWithSupervisor runs a service through the real supervisor on
// a real process: start, in sync, a changed spec restarts it, a refresh
// restarts it, ensure stopped stops it.
func TestServiceWithSupervisor(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	h, _ := newTestHost(t)
	dir := t.TempDir()
	sup, err := supervise.New(ctx, supervise.Options{
		Store:     supervise.NewDirStore(filepath.Join(dir, "records")),
		LogDir:    filepath.Join(dir, "logs"),
		NoCgroups: true, // the supervisor's own tests cover cgroups; this one must not need them
		Logger:    h.Log,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := sup.Remove(ctx, "sleeper"); err != nil {
			t.Errorf("removing the service: %v", err)
		}
		sup.Close()
	})
	h.Services = &supervisorServices{sup: sup, root: h.Root, digests: map[string][2]string{}}
	sv := &Service{}
	attrs := map[string]any{"run": []string{"/bin/sleep", "300"}, "stop_timeout": "2s", "health.exec": []string{"/bin/true"}}
	r := res("service", "sleeper", attrs)

	pid := func() int {
		t.Helper()
		st, ok := h.Services.Running("sleeper")
		if !ok || !st.Running || st.PID <= 0 {
			t.Fatalf("Running(sleeper) = %+v, %v; want a running process", st, ok)
		}
		return st.PID
	}
	awaitGone := func(pid int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for execProcessAlive(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("process %d still runs", pid)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	if got := serviceRun(t, sv, h, &r); len(got) != 1 || got[0].Attr != "ensure" {
		t.Fatalf("first run changed %+v, want ensure", got)
	}
	first := pid()
	if got := serviceRun(t, sv, h, &r); got != nil {
		t.Fatalf("second run changed %+v, want nothing", got)
	}

	r.Attrs["env"] = map[string]string{"GREETING": "hello"}
	if got := serviceRun(t, sv, h, &r); len(got) != 1 || got[0].Attr != "config" {
		t.Fatalf("a new spec changed %+v, want config", got)
	}
	second := pid()
	if second == first {
		t.Fatal("a new spec did not restart the process")
	}
	awaitGone(first)

	if err := sv.Refresh(ctx, h, &r); err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	third := pid()
	if third == second {
		t.Fatal("a refresh did not restart the process")
	}
	awaitGone(second)

	r.Attrs["ensure"] = "stopped"
	if got := serviceRun(t, sv, h, &r); len(got) != 1 || got[0].To != "stopped" {
		t.Fatalf("ensure stopped changed %+v, want ensure → stopped", got)
	}
	awaitGone(third)
}

// TestServiceFailuresWithSupervisor: a service that dies at its start, sits
// in backoff or in a crash loop is a failure of the resource, with its last
// exit and log tail, never "in sync" or plain "changed".
func TestServiceFailuresWithSupervisor(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	h, _ := newTestHost(t)
	dir := t.TempDir()
	sup, err := supervise.New(ctx, supervise.Options{
		Store:     supervise.NewDirStore(filepath.Join(dir, "records")),
		LogDir:    filepath.Join(dir, "logs"),
		NoCgroups: true,
		Logger:    h.Log,
		Policy:    supervise.Policy{Limit: 1},
		Settle:    time.Minute, // answered at once by the exit
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := sup.Remove(ctx, "crasher"); err != nil {
			t.Errorf("removing the service: %v", err)
		}
		sup.Close()
	})
	h.Services = &supervisorServices{sup: sup, root: h.Root, digests: map[string][2]string{}}
	sv := &Service{}
	r := res("service", "crasher", map[string]any{"run": []string{"/bin/sh", "-c", "echo bad config line 7 >&2; exit 3"}})

	// The first run starts it; it dies within its start: Apply fails.
	p, err := sv.Check(ctx, h, &r)
	if err != nil || p.InSync() {
		t.Fatalf("Check = %+v, %v; want a start", p, err)
	}
	err = sv.Apply(ctx, h, p)
	if err == nil || !strings.Contains(err.Error(), "exited with code 3") || !strings.Contains(err.Error(), "bad config line 7") {
		t.Fatalf("Apply = %v, want the exit and the log tail", err)
	}
	// Now in backoff: Check fails rather than report it in sync.
	if st, _ := sup.Status("crasher"); st.State == supervise.StateBackoff {
		if _, err := sv.Check(ctx, h, &r); err == nil || !strings.Contains(err.Error(), "backoff") || !strings.Contains(err.Error(), "bad config line 7") {
			t.Errorf("Check in backoff = %v, want a failure naming the backoff and the log tail", err)
		}
	}
	// The supervisor's own retry fails too: a crash loop (limit 1).
	deadline := time.Now().Add(30 * time.Second)
	for st, _ := sup.Status("crasher"); st.State != supervise.StateCrashLoop; st, _ = sup.Status("crasher") {
		if time.Now().After(deadline) {
			t.Fatalf("no crash loop: %+v", st)
		}
		time.Sleep(10 * time.Millisecond)
	}
	p, err = sv.Check(ctx, h, &r)
	if err != nil || len(p.Changes) != 1 || p.Changes[0].From != "crash-loop" {
		t.Fatalf("Check in a crash loop = %+v, %v; want ensure crash-loop → running", p, err)
	}
	if err := sv.Apply(ctx, h, p); err == nil || !strings.Contains(err.Error(), "exited with code 3") {
		t.Fatalf("Apply in a crash loop = %v, want the exit", err)
	}
	if st, _ := sup.Status("crasher"); st.State != supervise.StateCrashLoop {
		t.Errorf("after one more try: %s, want crash-loop again (the count kept)", st.State)
	}
}
