package resources

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// MaxOutput caps how much of a command's output is kept: the end, which
// is where the error usually is.
const MaxOutput = 64 << 10

// DefaultTimeout bounds a command that names no timeout.
const DefaultTimeout = 5 * time.Minute

// basePath is the PATH every command gets: commands run with a minimal,
// predictable environment, never the agent's own.
const basePath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// RunCommand runs c on the host whose root is root, without a shell, in
// its own process group, and waits for it. When ctx ends or the timeout
// passes, the whole process group is killed, so that a hung command's
// children die with it.
//
// With a sandbox root (not "/"), a program that exists under the root is
// run from there (a package installed into the sandbox provides it), the
// working directory is under the root, and HERD_ROOT names the root so
// that a command can address the sandbox's files ("$HERD_ROOT/etc/motd").
// HERD_ROOT is empty on a real host.
//
// A command that runs and exits non-zero is not an error: Result.ExitCode
// says so. An error means it could not run or did not finish.
func RunCommand(ctx context.Context, root string, c Cmd) (Result, error) {
	if len(c.Argv) == 0 {
		return Result{}, errors.New("running command: empty argv")
	}
	sandbox := root != "" && root != "/"
	prog := c.Argv[0]
	if sandbox {
		if fi, err := os.Stat(filepath.Join(root, prog)); err == nil && fi.Mode().IsRegular() {
			prog = filepath.Join(root, prog)
		}
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	// The command's own timeout has its own cause, so that the message
	// quotes the limit that fired: a caller's deadline (the engine's
	// resource timeout) may come first.
	ownTimeout := &commandTimeout{argv0: c.Argv[0], after: timeout}
	ctx, cancel := context.WithTimeoutCause(ctx, timeout, ownTimeout)
	defer cancel()

	cmd := exec.CommandContext(ctx, prog, c.Argv[1:]...)
	cmd.Args[0] = c.Argv[0]
	herdRoot := ""
	if sandbox {
		herdRoot = root
	}
	cmd.Env = append([]string{basePath, "LANG=C.UTF-8", "HERD_ROOT=" + herdRoot}, c.Env...)
	cmd.Dir = root
	if cmd.Dir == "" {
		cmd.Dir = "/"
	}
	if c.Dir != "" {
		cmd.Dir = filepath.Join(cmd.Dir, c.Dir)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if c.User != "" {
		cred, home, err := credential(root, c.User)
		if err != nil {
			return Result{}, err
		}
		cmd.SysProcAttr.Credential = cred
		cmd.Env = append(cmd.Env, "HOME="+home, "USER="+c.User)
	}
	cmd.Cancel = func() error {
		// The negative pid is the process group: the command and every
		// child it started that did not leave the group.
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	cmd.WaitDelay = 2 * time.Second
	var out tailBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if c.Stdin != nil {
		cmd.Stdin = bytes.NewReader(c.Stdin)
	}
	start := time.Now()
	err := cmd.Run()
	res := Result{Output: out.Bytes(), Duration: time.Since(start), ExitCode: -1}
	if cmd.ProcessState != nil {
		res.ExitCode = cmd.ProcessState.ExitCode()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			res.Signal = ws.Signal()
		}
	}
	if ctx.Err() != nil {
		cause := context.Cause(ctx)
		if cause == ownTimeout {
			return res, cause
		}
		// The caller's context ended first: say why (its cause names
		// the resource timeout), and that the group was killed.
		return res, fmt.Errorf("running %s: %w; killed its process group", c.Argv[0], cause)
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return res, fmt.Errorf("running %s: %w", c.Argv[0], err)
	}
	return res, nil
}

// commandTimeout is the error of a command that ran past its own
// timeout. It is a timeout (net.Error's Timeout), and matches
// context.DeadlineExceeded.
type commandTimeout struct {
	argv0 string
	after time.Duration
}

func (e *commandTimeout) Error() string {
	return fmt.Sprintf("running %s: timed out after %s; killed its process group", e.argv0, e.after)
}
func (e *commandTimeout) Timeout() bool        { return true }
func (e *commandTimeout) Is(target error) bool { return target == context.DeadlineExceeded }

// DescribeExit says how a command that ran ended, for messages: "exited
// 3", or "killed by SIGKILL" (never the signal's description, which for
// SIGKILL is "killed" itself).
func (r Result) DescribeExit() string {
	if r.Signal != 0 {
		return "killed by " + SignalName(r.Signal)
	}
	return fmt.Sprintf("exited %d", r.ExitCode)
}

// SignalName is a signal's name as kill(1) and the site spell it
// ("SIGKILL"), or "signal N" for one without a name.
func SignalName(s syscall.Signal) string {
	if n := unix.SignalName(s); n != "" {
		return n
	}
	return fmt.Sprintf("signal %d", int(s))
}

// credential resolves user (a name or uid) in the host root's accounts.
func credential(root, user string) (*syscall.Credential, string, error) {
	if root == "" {
		root = "/"
	}
	a, ok, err := LookupUser(root, user)
	if err != nil {
		return nil, "", err
	}
	if !ok {
		if uid, err := strconv.Atoi(user); err == nil {
			return &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}, "/", nil
		}
		return nil, "", fmt.Errorf("running as %s: no such user in %s", user, filepath.Join(root, "etc/passwd"))
	}
	return &syscall.Credential{Uid: uint32(a.ID), Gid: uint32(a.GID)}, a.Home, nil
}

// tailBuffer keeps the last MaxOutput bytes written to it.
type tailBuffer struct {
	buf     []byte
	dropped bool
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if len(t.buf) > MaxOutput {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-MaxOutput:]...)
		t.dropped = true
	}
	return len(p), nil
}

func (t *tailBuffer) Bytes() []byte {
	if t.dropped {
		return append([]byte("[…output cut…]\n"), t.buf...)
	}
	return t.buf
}
