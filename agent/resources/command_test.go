package resources

import (
	"context"
	"errors"
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

// TestRunCommandMessages: how a command ended is said once, with the
// limit that fired and the signal's name.
func TestRunCommandMessages(t *testing.T) {
	t.Parallel()
	errCause := errors.New("the resource timed out after 100ms")
	tests := []struct {
		name    string
		ctx     func() (context.Context, context.CancelFunc)
		cmd     Cmd
		wantErr string
		exit    string // Result.DescribeExit when there is no error
	}{{
		name:    "own timeout",
		cmd:     Cmd{Argv: []string{"/bin/sleep", "60"}, Timeout: 100 * time.Millisecond},
		wantErr: "running /bin/sleep: timed out after 100ms; killed its process group",
	}, {
		name: "the caller's deadline first",
		ctx: func() (context.Context, context.CancelFunc) {
			return context.WithTimeoutCause(context.Background(), 100*time.Millisecond, errCause)
		},
		cmd:     Cmd{Argv: []string{"/bin/sleep", "60"}, Timeout: 15 * time.Minute},
		wantErr: "running /bin/sleep: the resource timed out after 100ms; killed its process group",
	}, {
		name: "killed by a signal",
		cmd:  Cmd{Argv: []string{"/bin/sh", "-c", "kill -KILL $$"}},
		exit: "killed by SIGKILL",
	}, {
		name: "terminated",
		cmd:  Cmd{Argv: []string{"/bin/sh", "-c", "kill -TERM $$"}},
		exit: "killed by SIGTERM",
	}, {
		name: "exit code",
		cmd:  Cmd{Argv: []string{"/bin/sh", "-c", "exit 3"}},
		exit: "exited 3",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.Background(), context.CancelFunc(func() {})
			if tt.ctx != nil {
				ctx, cancel = tt.ctx()
			}
			defer cancel()
			res, err := RunCommand(ctx, "/", tt.cmd)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Errorf("RunCommand error = %v, want %q", err, tt.wantErr)
				}
				if tt.ctx == nil && !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("RunCommand error %v is not context.DeadlineExceeded", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := res.DescribeExit(); got != tt.exit {
				t.Errorf("DescribeExit() = %q, want %q", got, tt.exit)
			}
		})
	}
}

func TestSignalName(t *testing.T) {
	t.Parallel()
	for sig, want := range map[syscall.Signal]string{syscall.SIGKILL: "SIGKILL", syscall.SIGHUP: "SIGHUP", 200: "signal 200"} {
		if got := SignalName(sig); got != want {
			t.Errorf("SignalName(%d) = %q, want %q", sig, got, want)
		}
	}
}
