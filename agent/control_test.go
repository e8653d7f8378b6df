package agent

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/herdcm/herd/agent/resources"
	"github.com/herdcm/herd/agent/supervise"
)

// openTestState opens a fresh state in a t.TempDir().
func openTestState(t *testing.T, dir string) *State {
	t.Helper()
	st, err := OpenState(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// removeCgroupHome removes the cgroup subtree the services of a test used,
// once they are stopped.
func removeCgroupHome(t *testing.T, cgroup string) {
	t.Helper()
	if cgroup == "" {
		return
	}
	if err := os.Remove(filepath.Dir(cgroup)); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Errorf("removing the test's cgroup subtree: %v", err)
	}
}

func sleeper(name string) resources.ServiceSpec {
	return resources.ServiceSpec{Name: name, Argv: []string{"/bin/sleep", "300"}, Restart: "always", StopSignal: "SIGTERM", StopTimeout: 5e9}
}

// TestOneSupervisorPerStateDir: the owner serves its supervisor; another
// command over the same state directory becomes its client and restarts
// and stops through the socket; once the owner is gone, the next command
// supervises on its own.
func TestOneSupervisorPerStateDir(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir, root := t.TempDir(), t.TempDir()
	owner, err := NewServices(ctx, openTestState(t, dir), root, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	var cgroup string
	t.Cleanup(func() {
		if cgroup != "" {
			removeCgroupHome(t, cgroup)
		}
	})
	defer func() {
		if owner != nil {
			owner.Close()
		}
	}()
	if _, err := owner.Ensure(ctx, sleeper("web")); err != nil {
		t.Fatal(err)
	}
	first, _ := owner.Status(ctx, "web")
	cgroup = first.Cgroup

	fi, err := os.Lstat(filepath.Join(dir, ControlSocketFile))
	if err != nil || fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket: %v, %v; want a socket with mode 0600", fi.Mode(), err)
	}
	// A second supervisor is refused while the owner lives.
	if _, err := NewServices(ctx, openTestState(t, dir), root, testLog(t)); !errors.Is(err, ErrSupervised) {
		t.Fatalf("a second NewServices = %v, want ErrSupervised", err)
	}

	// The "CLI" side: another state handle over the same directory.
	cli, err := OpenServices(ctx, openTestState(t, dir), root, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := cli.(*ServiceClient); !ok {
		t.Fatalf("OpenServices with an owner running = %T, want a *ServiceClient", cli)
	}
	list, err := cli.List(ctx)
	if err != nil || len(list) != 1 || list[0].PID != first.PID {
		t.Fatalf("client List = %+v, %v; want web at pid %d", list, err, first.PID)
	}
	if st, ok := cli.Running("web"); !ok || !st.Running || st.SpecDigest != sleeper("web").Digest() {
		t.Errorf("client Running(web) = %+v, %v; want running with the spec's digest", st, ok)
	}
	if err := cli.Restart(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	after, _ := owner.Status(ctx, "web")
	if after.PID == first.PID || after.State != supervise.StateRunning {
		t.Errorf("after the client's Restart: %+v, want a new pid (was %d)", after, first.PID)
	}
	if changed, err := cli.Ensure(ctx, sleeper("api")); err != nil || !changed {
		t.Errorf("client Ensure(api) = %v, %v; want a start", changed, err)
	}
	if err := cli.Restart(ctx, "nosuch"); !errors.Is(err, supervise.ErrUnknown) {
		t.Errorf("client Restart(nosuch) = %v, want ErrUnknown", err)
	}
	logs, err := cli.Logs(ctx, "web")
	if err != nil || len(logs) != 2 {
		t.Errorf("client Logs(web) = %+v, %v; want stdout and stderr", logs, err)
	}
	for _, n := range []string{"web", "api"} {
		if err := cli.Stop(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	if list, _ := owner.List(ctx); len(list) != 0 {
		t.Errorf("owner lists %+v after the client stopped both", list)
	}
	// Another root over the same state is refused rather than run there.
	other, err := DialServices(ctx, dir, t.TempDir())
	if err == nil {
		_, err = other.Ensure(ctx, sleeper("x"))
	}
	if err == nil || !strings.Contains(err.Error(), "root") {
		t.Errorf("a client for another root: %v, want a refusal naming the root", err)
	}
	cli.Close()

	// No owner: the next command supervises on its own, and serves.
	owner.Close()
	owner = nil
	own, err := OpenServices(ctx, openTestState(t, dir), root, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := own.(*Services); !ok {
		t.Errorf("OpenServices without an owner = %T, want *Services", own)
	}
	if _, err := DialServices(ctx, dir, root); err != nil {
		t.Errorf("the new owner does not serve: %v", err)
	}
	own.Close()
	if _, err := os.Lstat(filepath.Join(dir, ControlSocketFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the socket outlives its owner: %v", err)
	}
}

// TestSocketInADeepStateDir: a state directory whose socket path does not
// fit a sockaddr_un (a sandbox deep in a build tree) still serves.
func TestSocketInADeepStateDir(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), strings.Repeat("d", 60), strings.Repeat("e", 60))
	if len(filepath.Join(dir, ControlSocketFile)) <= maxSunPath {
		t.Fatalf("test path %s is not long enough", dir)
	}
	owner, err := NewServices(ctx, openTestState(t, dir), "/", testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	c, err := DialServices(ctx, dir, "/")
	if err != nil {
		t.Fatalf("DialServices on a deep state dir: %v", err)
	}
	if _, err := c.List(ctx); err != nil {
		t.Errorf("List: %v", err)
	}
	owner.Close()
	if _, err := os.Lstat(filepath.Join(dir, ControlSocketFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the socket outlives its owner: %v", err)
	}
}

func TestCheckPeer(t *testing.T) {
	t.Parallel()
	tests := []struct {
		uid, owner uint32
		ok         bool
	}{
		{0, 0, true},
		{0, 1000, true},
		{1000, 1000, true},
		{1001, 1000, false},
		{65534, 0, false},
	}
	for _, tt := range tests {
		if err := checkPeer(tt.uid, tt.owner); (err == nil) != tt.ok {
			t.Errorf("checkPeer(%d, %d) = %v, want ok %v", tt.uid, tt.owner, err, tt.ok)
		}
	}
}

// TestSocketRefusesOtherUsers connects as uid 65534 (a real process, not a
// stub) to a socket opened to everyone on purpose: the peer credential
// check alone refuses it.
func TestSocketRefusesOtherUsers(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a client as another user")
	}
	const python = "/usr/bin/python3"
	if _, err := os.Stat(python); err != nil {
		t.Skipf("needs %s for a client of another user: %v", python, err)
	}
	ctx := context.Background()
	dir := t.TempDir()
	owner, err := NewServices(ctx, openTestState(t, dir), t.TempDir(), testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	defer owner.Close()
	sock := filepath.Join(dir, ControlSocketFile)
	// Open the way to the socket, so that only the credential check is left.
	for _, p := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(sock, 0o666); err != nil {
		t.Fatal(err)
	}
	client := `import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
try:
    s.sendall(b'{"op":"list","root":"/"}\n')
except BrokenPipeError:
    pass  # refused before the request was read; the answer is waiting
print(s.makefile().readline())`
	cmd := exec.CommandContext(ctx, python, "-c", client, sock)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("client as uid 65534: %v: %s", err, out.String())
	}
	if !strings.Contains(out.String(), "uid 65534 may not use the supervisor socket") {
		t.Errorf("answer to uid 65534: %q, want a refusal", out.String())
	}
}

func FuzzDecodeRequest(f *testing.F) {
	for _, s := range []string{
		`{"op":"list","root":"/"}` + "\n",
		`{"op":"ensure","root":"/srv","spec":{"Name":"web","Argv":["/bin/sleep","1"]}}`,
		`{"op":"restart","name":"../etc"}`,
		`{"op":"stop","name":"web","extra":1}`,
		`{"op":"ensure"}`,
		`not json`,
		"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := decodeRequest(bytes.NewReader(b))
		if err != nil {
			return
		}
		name := req.Name
		if req.Op == "ensure" {
			name = req.Spec.Name
		}
		if req.Op != "list" && checkControlName(name) != nil {
			t.Errorf("decodeRequest(%q) accepted the bad name %q", b, name)
		}
		if strings.ContainsAny(name, "/\x00") {
			t.Errorf("decodeRequest(%q) accepted a name with a path in it: %q", b, name)
		}
	})
}
