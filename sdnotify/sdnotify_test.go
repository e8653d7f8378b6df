package sdnotify_test

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/herdcm/herd/sdnotify"
	"github.com/herdcm/herd/testkit"
)

func TestMessages(t *testing.T) {
	t.Parallel()
	ns := testkit.NewNotifySocket(t)
	n, err := sdnotify.New(ns.Path, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		send func() error
		want string
	}{
		{func() error { return n.Ready("serving") }, "READY=1"},
		{func() error { return n.Reloading("reloading") }, "RELOADING=1"},
		{func() error { return n.Status("two\nlines") }, "STATUS=two lines"},
		{func() error { return n.Stopping("bye") }, "STOPPING=1"},
	} {
		if err := step.send(); err != nil {
			t.Fatalf("sending %s: %v", step.want, err)
		}
		m := ns.Next(t, 5*time.Second)
		if !m.Has(step.want) {
			t.Fatalf("message %q, want a line %s", m.Lines, step.want)
		}
		if step.want == "RELOADING=1" {
			v, ok := m.Value("MONOTONIC_USEC")
			if us, err := strconv.ParseInt(v, 10, 64); !ok || err != nil || us <= 0 {
				t.Errorf("RELOADING=1 with MONOTONIC_USEC=%q, want a positive number", v)
			}
		}
	}
}

func TestNilNotifierSendsNothing(t *testing.T) {
	t.Parallel()
	var n *sdnotify.Notifier
	if err := n.Ready("x"); err != nil {
		t.Errorf("nil Ready = %v", err)
	}
	if w := n.Watchdog(); w != nil {
		t.Errorf("nil notifier's Watchdog = %v, want nil", w)
	}
	var w *sdnotify.Watchdog
	w.Alive(time.Second) // must not panic
	w.Run(context.Background())
}

func TestNewRefusesBadAddress(t *testing.T) {
	t.Parallel()
	if _, err := sdnotify.New("relative/sock", 0); err == nil {
		t.Error(`New("relative/sock") = nil error, want a refusal`)
	}
	if _, err := sdnotify.New("vsock:2:1234", 0); err == nil {
		t.Error(`New("vsock:2:1234") = nil error, want a refusal`)
	}
}

// TestFromEnv cannot run in parallel: it sets the process's environment.
func TestFromEnv(t *testing.T) {
	ns := testkit.NewNotifySocket(t)
	t.Setenv(sdnotify.EnvSocket, ns.Path)
	t.Setenv(sdnotify.EnvWatchdogUS, "2000000")
	t.Setenv(sdnotify.EnvWatchdogPID, strconv.Itoa(os.Getpid()))
	n, err := sdnotify.FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if got := n.WatchdogInterval(); got != 2*time.Second {
		t.Errorf("WatchdogInterval = %s, want 2s", got)
	}
	for _, k := range []string{sdnotify.EnvSocket, sdnotify.EnvWatchdogUS, sdnotify.EnvWatchdogPID} {
		if v, ok := os.LookupEnv(k); ok {
			t.Errorf("%s=%q left in the environment: a service the daemon starts would inherit it", k, v)
		}
	}
	env := n.Env()
	want := map[string]bool{sdnotify.EnvSocket + "=" + ns.Path: true, sdnotify.EnvWatchdogUS + "=2000000": true}
	if len(env) != len(want) || !want[env[0]] || !want[env[1]] {
		t.Errorf("Env() = %q, want the socket and the interval (no pid)", env)
	}

	// Another process's watchdog is not this one's.
	t.Setenv(sdnotify.EnvSocket, ns.Path)
	t.Setenv(sdnotify.EnvWatchdogUS, "2000000")
	t.Setenv(sdnotify.EnvWatchdogPID, "1")
	if n, err = sdnotify.FromEnv(); err != nil || n.WatchdogInterval() != 0 {
		t.Errorf("FromEnv with another WATCHDOG_PID: interval %s, err %v; want 0, nil", n.WatchdogInterval(), err)
	}
	t.Setenv(sdnotify.EnvSocket, ns.Path)
	t.Setenv(sdnotify.EnvWatchdogUS, "soon")
	if _, err := sdnotify.FromEnv(); err == nil {
		t.Error("FromEnv with WATCHDOG_USEC=soon: nil error, want one")
	}
	os.Unsetenv(sdnotify.EnvSocket)
	if n, err := sdnotify.FromEnv(); n != nil || err != nil {
		t.Errorf("FromEnv without NOTIFY_SOCKET = %v, %v; want nil, nil", n, err)
	}
}

// TestWatchdogKeepsThePromise: pings come at half the interval while the
// main loop's promise holds, and stop once it lapses.
func TestWatchdogKeepsThePromise(t *testing.T) {
	t.Parallel()
	ns := testkit.NewNotifySocket(t)
	const interval = 200 * time.Millisecond
	n, err := sdnotify.New(ns.Path, interval)
	if err != nil {
		t.Fatal(err)
	}
	w := n.Watchdog()
	if w.Every() != interval/2 {
		t.Fatalf("Every = %s, want %s", w.Every(), interval/2)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	defer func() { cancel(); <-done }()

	w.Alive(time.Second)
	start := time.Now()
	first := ns.Await(t, 5*time.Second, "WATCHDOG=1")
	prev := first.At
	for range 5 {
		m := ns.Await(t, 5*time.Second, "WATCHDOG=1")
		if gap := m.At.Sub(prev); gap > interval {
			t.Errorf("watchdog pings %s apart, want at most the interval %s", gap, interval)
		}
		prev = m.At
	}
	// The promise lapses a second after it was made: no ping past it
	// (allowing one tick in flight).
	lapse := start.Add(time.Second + interval/2)
	for {
		select {
		case m := <-ns.Messages():
			if m.At.After(lapse) {
				t.Fatalf("a ping at %s, after the main loop's promise lapsed at %s", m.At.Sub(start), time.Second)
			}
		case <-time.After(time.Until(lapse) + 3*interval):
			return
		}
	}
}
