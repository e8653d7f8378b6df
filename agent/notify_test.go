package agent

import (
	"context"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/herdcm/herd/sdnotify"
	"github.com/herdcm/herd/testkit"
)

// TestDaemonNotifies: a real daemon on a notify socket says READY=1 only
// once its supervisor serves the control socket, pings the watchdog at
// half the interval while idle, and says STOPPING=1 when it stops.
func TestDaemonNotifies(t *testing.T) {
	t.Parallel()
	fs := newFakeServer(t)
	ns := testkit.NewNotifySocket(t)
	const interval = 400 * time.Millisecond
	n, err := sdnotify.New(ns.Path, interval)
	if err != nil {
		t.Fatal(err)
	}
	a := newTestAgent(t, fs, ownServices(t), func(o *DaemonOptions) { o.Notify = n })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.d.Run(ctx) }()
	defer func() { cancel(); <-done }()

	ns.Await(t, 15*time.Second, "READY=1", "WATCHDOG=1", "STOPPING=1")
	// At READY the supervisor is there for herd services and herd apply.
	c, err := DialServices(ctx, a.d.o.StateDir, a.root)
	if err != nil {
		t.Fatalf("at READY=1 the control socket does not answer: %v", err)
	}
	if _, err := c.List(ctx); err != nil {
		t.Fatalf("at READY=1 the supervisor does not list its services: %v", err)
	}

	prev := ns.Await(t, 5*time.Second, "WATCHDOG=1", "STOPPING=1").At
	for range 4 {
		m := ns.Await(t, 5*time.Second, "WATCHDOG=1", "STOPPING=1")
		if gap := m.At.Sub(prev); gap > interval {
			t.Errorf("watchdog pings %s apart, want at most %s", gap, interval)
		}
		prev = m.At
	}
	// SIGHUP: RELOADING=1, then READY=1 once the settings are read.
	hup := make(chan os.Signal, 1)
	go a.d.HandleHangups(ctx, hup, nil)
	hup <- syscall.SIGHUP
	ns.Await(t, 5*time.Second, "RELOADING=1", "READY=1", "STOPPING=1")
	ns.Await(t, 5*time.Second, "READY=1", "STOPPING=1")

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
	done <- nil // for the deferred receive
	ns.Await(t, 5*time.Second, "STOPPING=1", "READY=1")
}

// TestWatchdogStopsWhenTheLoopHangs: a run that never returns (past every
// timeout the agent sets) ends the pings once the loop's promise lapses,
// so that systemd restarts the agent rather than a goroutine keeping a
// stuck one alive.
func TestWatchdogStopsWhenTheLoopHangs(t *testing.T) {
	t.Parallel()
	fs := newFakeServer(t)
	ns := testkit.NewNotifySocket(t)
	const interval = 200 * time.Millisecond
	n, err := sdnotify.New(ns.Path, interval)
	if err != nil {
		t.Fatal(err)
	}
	a := newTestAgent(t, fs, func(o *DaemonOptions) {
		o.Notify = n
		o.RunTimeout, o.LockWait = 100*time.Millisecond, 50*time.Millisecond
	})
	hung := make(chan time.Time, 1)
	a.d.runCycle = func(ctx context.Context, why Trigger) (*Report, cycleResult) {
		hung <- time.Now()
		<-ctx.Done() // stuck, ignoring the run's own timeout
		return nil, cycleResult{}
	}
	a.start(t)
	ns.Await(t, 15*time.Second, "READY=1")
	ns.Await(t, 5*time.Second, "WATCHDOG=1")
	a.d.Trigger(TriggerManual)
	var since time.Time
	select {
	case since = <-hung:
	case <-time.After(15 * time.Second):
		t.Fatal("the run did not start")
	}
	bound := a.d.runs.runBound() // 50ms + 2×100ms + 100ms
	// The last ping the promise allows may be sent just before the bound
	// and read a moment later on a loaded machine: a full interval of
	// slack. A watchdog that went on pinging would still be caught, as it
	// pings every half interval through the window watched after that.
	lapse := since.Add(bound + interval/2 + interval)
	for {
		select {
		case m := <-ns.Messages():
			if m.Has("WATCHDOG=1") && m.At.After(lapse) {
				t.Fatalf("a watchdog ping %s into a hung run, past its bound %s", m.At.Sub(since), bound)
			}
		case <-time.After(time.Until(lapse) + 4*interval):
			return
		}
	}
}
