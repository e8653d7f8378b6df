package agent

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/herdcm/herd/sdnotify"
	"github.com/herdcm/herd/testkit"
)

// TestDaemonStopsForUpgrade: while its program stays the same file the
// daemon runs on; once a run ends after the file was replaced (dpkg's
// rename), Run returns ErrUpgraded with that run's report already at the
// server, exactly once, and systemd told RELOADING=1, not STOPPING=1.
func TestDaemonStopsForUpgrade(t *testing.T) {
	t.Parallel()
	fs := newFakeServer(t)
	fs.publish(testCatalog("web-01", "v1", fileRes("/etc/motd", "v1\n")), nil, false)
	exe := filepath.Join(t.TempDir(), "herd-agent")
	if err := os.WriteFile(exe, []byte("old program"), 0o755); err != nil {
		t.Fatal(err)
	}
	ns := testkit.NewNotifySocket(t)
	n, err := sdnotify.New(ns.Path, 0)
	if err != nil {
		t.Fatal(err)
	}
	a := newTestAgent(t, fs, func(o *DaemonOptions) { o.Executable = exe; o.Notify = n })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- a.d.Run(ctx) }()
	ns.Await(t, 15*time.Second, "READY=1")

	first := a.awaitRun(t, "the first run", anyRun)
	a.settle(t)
	select {
	case err := <-done:
		t.Fatalf("Run returned %v with its program unchanged", err)
	default:
	}
	// Rewritten in place is the same file: no upgrade.
	if err := os.WriteFile(exe, []byte("old program, touched"), 0o755); err != nil {
		t.Fatal(err)
	}
	a.d.Trigger(TriggerManual)
	a.awaitRun(t, "a run after an in-place write", manualRun)
	a.settle(t)
	select {
	case err := <-done:
		t.Fatalf("Run returned %v after an in-place write", err)
	default:
	}

	// dpkg's way: a new file renamed over the path. A slow server keeps
	// the send loop's send of the last report in flight while the daemon
	// sends its spool before stopping: the report still goes once.
	fs.mu.Lock()
	fs.reportDelay = 200 * time.Millisecond
	fs.mu.Unlock()
	tmp := exe + ".dpkg-new"
	if err := os.WriteFile(tmp, []byte("new program"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, exe); err != nil {
		t.Fatal(err)
	}
	a.d.Trigger(TriggerManual)
	last := a.awaitRun(t, "the run after the upgrade", manualRun)
	select {
	case err := <-done:
		if !errors.Is(err, ErrUpgraded) {
			t.Fatalf("Run = %v, want ErrUpgraded", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return after its program was replaced")
	}
	if last.r == nil {
		t.Fatal("the last run made no report")
	}
	fs.mu.Lock()
	got, firstGot := fs.receipts[last.r.RunID], fs.receipts[first.r.RunID]
	fs.mu.Unlock()
	if got != 1 || firstGot != 1 {
		t.Errorf("the server received the last run's report %d times and the first's %d, want 1 each", got, firstGot)
	}
	ns.Await(t, 5*time.Second, "RELOADING=1", "STOPPING=1")
	select {
	case m := <-ns.Messages():
		if m.Has("STOPPING=1") {
			t.Errorf("an upgrading daemon told systemd STOPPING=1: %q", m.Lines)
		}
	case <-time.After(200 * time.Millisecond):
	}
}

// TestSiteDaemonStopsForUpgrade: the masterless daemon, too, returns
// ErrUpgraded after the run that found its program replaced, and tells
// systemd RELOADING=1 rather than STOPPING=1.
func TestSiteDaemonStopsForUpgrade(t *testing.T) {
	t.Parallel()
	site := t.TempDir()
	for name, body := range map[string]string{
		"nodes.toml":   "[[node]]\nroles = [\"r\"]\n",
		"roles/r.toml": "[[file]]\npath = \"/motd\"\ncontent = \"hi\\n\"\n",
	} {
		p := filepath.Join(site, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	exe := filepath.Join(t.TempDir(), "herd-agent")
	if err := os.WriteFile(exe, []byte("old"), 0o755); err != nil {
		t.Fatal(err)
	}
	ns := testkit.NewNotifySocket(t)
	n, err := sdnotify.New(ns.Path, 0)
	if err != nil {
		t.Fatal(err)
	}
	runs := make(chan error, 10)
	hup := make(chan os.Signal, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	// The second run replaces the program, as a package resource would,
	// before the daemon looks at it after the run.
	replace := func() error {
		tmp := exe + ".dpkg-new"
		if err := os.WriteFile(tmp, []byte("new"), 0o755); err != nil {
			return err
		}
		return os.Rename(tmp, exe)
	}
	n1 := 0
	go func() {
		done <- RunSiteDaemon(ctx, SiteDaemonOptions{
			ApplyOptions: ApplyOptions{Site: site, Root: t.TempDir(), Node: "n1", Log: testLog(t)},
			Interval:     time.Hour, Hangup: hup, Notify: n, Executable: exe,
			afterRun: func(_ *Report, err error) {
				if n1++; n1 == 2 && err == nil {
					err = replace()
				}
				runs <- err
			},
		})
	}()
	if err := <-runs; err != nil {
		t.Fatalf("first run: %v", err)
	}
	hup <- syscall.SIGHUP
	select {
	case err := <-done:
		if !errors.Is(err, ErrUpgraded) {
			t.Fatalf("RunSiteDaemon = %v, want ErrUpgraded", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("RunSiteDaemon did not return after its program was replaced")
	}
	if len(runs) != 1 {
		t.Errorf("%d runs after the first, want the one that replaced the program", len(runs))
	} else if err := <-runs; err != nil {
		t.Errorf("the second run: %v", err)
	}
	ns.Await(t, 5*time.Second, "READY=1")
	// SIGHUP: RELOADING=1 then READY=1; then the upgrade's RELOADING=1,
	// and never STOPPING=1.
	ns.Await(t, 5*time.Second, "RELOADING=1", "STOPPING=1")
	ns.Await(t, 5*time.Second, "READY=1", "STOPPING=1")
	ns.Await(t, 5*time.Second, "RELOADING=1", "STOPPING=1")
}
