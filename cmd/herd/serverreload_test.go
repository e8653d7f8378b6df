package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herdcm/herd/testkit"
)

// TestServerSIGHUP: a real `herd server` process under a notify socket
// says READY=1; SIGHUP makes it say RELOADING=1 (with MONOTONIC_USEC) and
// READY=1 again, take log_level at once and log a changed setting that
// needs a restart as such; SIGTERM makes it say STOPPING=1 and exit 0.
func TestServerSIGHUP(t *testing.T) {
	t.Parallel()
	site := testkit.WriteSite(t, map[string]string{
		"nodes.toml":   "[[node]]\nroles = [\"r\"]\n",
		"roles/r.toml": "[[file]]\npath = \"/motd\"\ncontent = \"managed\\n\"\n",
	})
	config := filepath.Join(t.TempDir(), "server.toml")
	writeConfig := func(body string) {
		t.Helper()
		if err := os.WriteFile(config, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeConfig("log_level = \"info\"\ncheckin_interval = \"30m\"\n")
	ns := testkit.NewNotifySocket(t)
	args := []string{"server", "--config", config, "--site", site, "--dir", t.TempDir(), "--listen", "127.0.0.1:0", "--http-listen", "off"}
	child := exec.Command(herdBinary(t), args...)
	child.Env = append(os.Environ(), "NOTIFY_SOCKET="+ns.Path, "WATCHDOG_USEC=400000")
	var out testkit.SyncBuffer
	child.Stdout, child.Stderr = &out, &out
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = child.Wait(); close(exited) }()
	t.Cleanup(func() {
		child.Process.Kill()
		<-exited
	})
	await := func(kv string, notBefore ...string) {
		t.Helper()
		for {
			select {
			case m := <-ns.Messages():
				if m.Has(kv) {
					if kv == "RELOADING=1" {
						if v, ok := m.Value("MONOTONIC_USEC"); !ok || v == "" || v == "0" {
							t.Errorf("RELOADING=1 without MONOTONIC_USEC: %q", m.Lines)
						}
					}
					return
				}
				for _, bad := range notBefore {
					if m.Has(bad) {
						t.Fatalf("%s came before %s:\n%s", bad, kv, out.String())
					}
				}
			case <-exited:
				t.Fatalf("the server exited (%v) while waiting for %s:\n%s", waitErr, kv, out.String())
			case <-time.After(60 * time.Second):
				t.Fatalf("no %s from the server:\n%s", kv, out.String())
			}
		}
	}
	await("READY=1", "RELOADING=1", "STOPPING=1")
	// The watchdog asked for is kept while the main loop is idle.
	await("WATCHDOG=1")
	await("WATCHDOG=1")

	writeConfig("log_level = \"debug\"\ncheckin_interval = \"5m\"\n")
	if err := child.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	await("RELOADING=1", "STOPPING=1", "READY=1")
	await("READY=1", "STOPPING=1")
	// READY=1 comes by datagram, the log through a pipe: the reload's
	// last line may reach the buffer a moment after the datagram.
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(out.String(), `"reloaded"`) && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	logs := out.String()
	for _, want := range []string{"log_level changed", "take effect only after a restart", "checkin_interval", "reloaded"} {
		if !strings.Contains(logs, want) {
			t.Errorf("after SIGHUP the server's log lacks %q:\n%s", want, logs)
		}
	}
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, "only after a restart") && strings.Contains(line, "log_level") {
			t.Errorf("log_level, which SIGHUP takes, was named as needing a restart: %s", line)
		}
	}
	// The new level is in force for the reload itself: its debug line.
	if !strings.Contains(logs, "the site's version did not change") {
		t.Errorf("log_level = debug did not take effect on SIGHUP:\n%s", logs)
	}
	// A config that does not parse changes nothing and kills nothing.
	writeConfig("log_level = \n")
	if err := child.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	await("RELOADING=1", "STOPPING=1")
	await("READY=1", "STOPPING=1")
	if !strings.Contains(out.String(), "server.toml does not read") {
		t.Errorf("a broken server.toml on SIGHUP was not reported:\n%s", out.String())
	}

	if err := child.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	await("STOPPING=1")
	<-exited
	if waitErr != nil {
		t.Errorf("the server exited with %v after SIGTERM:\n%s", waitErr, out.String())
	}
}
