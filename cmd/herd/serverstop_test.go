package main

import (
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herdcm/herd/testkit"
)

// TestServerStopsOnSignal: a real herd server process logs in the format
// --log-format asks for (text, though stderr is a pipe), and SIGTERM
// stops it with exit 0 and one log line that names the signal.
func TestServerStopsOnSignal(t *testing.T) {
	t.Parallel()
	site := testkit.WriteSite(t, map[string]string{
		"nodes.toml":   "[[node]]\nroles = [\"r\"]\n",
		"roles/r.toml": "[[file]]\npath = \"/motd\"\ncontent = \"x\"\n",
	})
	args := []string{"server", "--site", site, "--dir", t.TempDir(), "--listen", "127.0.0.1:0", "--http-listen", "off", "--log-format", "text"}
	child := exec.Command(herdBinary(t), args...)
	var stdout, stderr testkit.SyncBuffer
	child.Stdout, child.Stderr = &stdout, &stderr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- child.Wait() }()
	t.Cleanup(func() { child.Process.Kill() })
	deadline := time.After(60 * time.Second)
	for !strings.Contains(stdout.String(), "herd server: gRPC on") {
		select {
		case err := <-exited:
			t.Fatalf("the server exited (%v) before serving:\n%s%s", err, stdout.String(), stderr.String())
		case <-deadline:
			t.Fatalf("the server never said it serves:\n%s%s", stdout.String(), stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	if err := child.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("the server ended with %v after SIGTERM, want exit 0:\n%s", err, stderr.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("the server did not stop on SIGTERM:\n%s", stderr.String())
	}
	log := stderr.String()
	if n := strings.Count(log, `msg="server stopping: terminated signal received"`); n != 1 {
		t.Errorf("the server logged its stop %d times in text, want once:\n%s", n, log)
	}
	if strings.Contains(log, `{"time"`) {
		t.Errorf("--log-format text wrote JSON:\n%s", log)
	}
}
