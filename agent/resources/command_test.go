package resources

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestRunCommand(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	ctx := context.Background()
	res, err := RunCommand(ctx, root, Cmd{Argv: []string{"/bin/sh", "-c", `echo "out $HERD_ROOT $PWD $FOO"; echo err >&2; exit 3`}, Env: []string{"FOO=bar"}})
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 3 {
		t.Errorf("exit code = %d, want 3", res.ExitCode)
	}
	want := "out " + root + " " + root + " bar\nerr\n"
	if string(res.Output) != want {
		t.Errorf("output = %q, want %q", res.Output, want)
	}
	// A real host root leaves HERD_ROOT empty.
	res, err = RunCommand(ctx, "/", Cmd{Argv: []string{"/bin/sh", "-c", `echo "[$HERD_ROOT]"`}})
	if err != nil || strings.TrimSpace(string(res.Output)) != "[]" {
		t.Errorf("HERD_ROOT on / = %q, %v; want empty", res.Output, err)
	}
}

func TestRunCommandPrefersProgramsInTheRoot(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	prog := filepath.Join(root, "usr/bin/herd-test-prog")
	if err := os.MkdirAll(filepath.Dir(prog), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(prog, []byte("#!/bin/sh\necho from the sandbox\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	res, err := RunCommand(context.Background(), root, Cmd{Argv: []string{"/usr/bin/herd-test-prog"}})
	if err != nil || string(res.Output) != "from the sandbox\n" {
		t.Errorf("RunCommand = %q, %v; want the sandbox's program", res.Output, err)
	}
}

// TestRunCommandTimeoutKillsGroup checks that a timeout kills the whole
// process group, including a child that would outlive its parent.
func TestRunCommandTimeoutKillsGroup(t *testing.T) {
	t.Parallel()
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	start := time.Now()
	_, err := RunCommand(context.Background(), "/", Cmd{
		Argv:    []string{"/bin/sh", "-c", "sleep 60 & echo $! > " + pidFile + "; wait"},
		Timeout: 300 * time.Millisecond,
	})
	if err == nil || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("err = %v, want a timeout", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("RunCommand returned after %s", d)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid := 0
	for _, c := range strings.TrimSpace(string(b)) {
		pid = pid*10 + int(c-'0')
	}
	deadline := time.Now().Add(5 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("child %d of the timed-out command is still alive", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRunCommandErrors(t *testing.T) {
	t.Parallel()
	if _, err := RunCommand(context.Background(), "/", Cmd{}); err == nil {
		t.Error("empty argv: no error")
	}
	if _, err := RunCommand(context.Background(), "/", Cmd{Argv: []string{"/nonexistent/prog"}}); err == nil {
		t.Error("missing program: no error")
	}
	if _, err := RunCommand(context.Background(), t.TempDir(), Cmd{Argv: []string{"/bin/true"}, User: "nosuchuser"}); err == nil {
		t.Error("unknown user: no error")
	}
}

func TestTailBuffer(t *testing.T) {
	t.Parallel()
	var tb tailBuffer
	tb.Write([]byte(strings.Repeat("a", MaxOutput)))
	tb.Write([]byte("end"))
	out := tb.Bytes()
	if !strings.HasSuffix(string(out), "end") || !strings.HasPrefix(string(out), "[…output cut…]") {
		t.Errorf("tail = %q…%q", out[:20], out[len(out)-5:])
	}
}
