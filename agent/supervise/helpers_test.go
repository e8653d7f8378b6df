package supervise

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// cgroupMode says whether a test's services get cgroups.
type cgroupMode int

const (
	cgroupAuto     cgroupMode = iota // where this machine allows
	cgroupOff                        // process groups alone
	cgroupRequired                   // skip the test where not writable
)

var fixtureSeq atomic.Int64

// fixture is one test's supervisor setting: a state directory, a log
// directory, its own cgroup root, and a tag on every process it starts.
type fixture struct {
	t          *testing.T
	id         string
	dir        string
	logDir     string
	store      *DirStore
	cgroupRoot string
	exe        string
}

func newFixture(t *testing.T, mode cgroupMode) *fixture {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	f := &fixture{
		t:      t,
		id:     fmt.Sprintf("%d-%d", os.Getpid(), fixtureSeq.Add(1)),
		dir:    dir,
		logDir: filepath.Join(dir, "log"),
		store:  NewDirStore(filepath.Join(dir, "state")),
		exe:    exe,
	}
	if mode != cgroupOff {
		root, err := testCgroupRoot(t, f.id)
		if err != nil && mode == cgroupRequired {
			t.Skipf("cgroup v2 is not writable on this machine: %v", err)
		}
		f.cgroupRoot = root
	}
	// Registered after the cgroup cleanup and before any supervisor's, so
	// it runs after every supervisor stopped its services.
	t.Cleanup(f.checkLeaks)
	return f
}

// testCgroupRoot makes a cgroup root for one test and removes it after.
func testCgroupRoot(t *testing.T, id string) (string, error) {
	t.Helper()
	mnt, err := cgroup2Mount()
	if err != nil {
		return "", err
	}
	root, err := setupCgroupRoot(filepath.Join(mnt, "herd-test-"+id))
	if err != nil {
		os.Remove(filepath.Join(mnt, "herd-test-"+id))
		return "", err
	}
	t.Cleanup(func() {
		ents, _ := os.ReadDir(root)
		for _, e := range ents {
			if e.IsDir() {
				if err := removeCgroup(filepath.Join(root, e.Name())); err != nil {
					t.Errorf("removing test cgroup: %v", err)
				}
			}
		}
		if err := os.Remove(root); err != nil {
			t.Errorf("removing test cgroup root: %v", err)
		}
	})
	return root, nil
}

// options returns the fixture's Options.
func (f *fixture) options() Options {
	return Options{
		Store:            f.store,
		LogDir:           f.logDir,
		CgroupRoot:       f.cgroupRoot,
		NoCgroups:        f.cgroupRoot == "",
		Logger:           testLogger(f.t),
		LogCheckInterval: 50 * time.Millisecond,
		// Long enough for the test program to fail a start on purpose,
		// short enough not to slow every Ensure.
		Settle: 200 * time.Millisecond,
	}
}

// start returns a new Supervisor; when the test ends it stops every
// service (unless the test closed it first) and closes it.
func (f *fixture) start(opts Options) *Supervisor {
	f.t.Helper()
	s, err := New(context.Background(), opts)
	if err != nil {
		f.t.Fatalf("New: %v", err)
	}
	f.t.Cleanup(func() {
		for _, st := range s.List() {
			if err := s.Stop(context.Background(), st.Name); err != nil && !errors.Is(err, ErrClosed) {
				f.t.Errorf("cleanup: %v", err)
			}
		}
		_ = s.Close()
	})
	return s
}

// spec returns a spec running the test program in the given mode.
func (f *fixture) spec(name string, args ...string) Spec {
	return Spec{
		Name: name,
		Argv: append([]string{f.exe}, args...),
		Env:  f.env(),
	}
}

// env is the environment of a test program: its mode switch, the test's
// tag, and no one-second pause of the race detector at exit.
func (f *fixture) env() []string {
	return []string{testprogEnv + "=1", testIDEnv + "=" + f.id, "GORACE=atexit_sleep_ms=0"}
}

// ensure calls Ensure and fails the test on an error.
func ensure(t *testing.T, s *Supervisor, spec Spec) bool {
	t.Helper()
	changed, err := s.Ensure(context.Background(), spec)
	if err != nil {
		t.Fatalf("Ensure(%s) = %v", spec.Name, err)
	}
	return changed
}

// checkLeaks fails the test if a process it started outlived it, and kills
// such processes.
func (f *fixture) checkLeaks() {
	f.t.Helper()
	var left []int
	deadline := time.Now().Add(5 * time.Second)
	for {
		left = f.ownProcs()
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(left) > 0 {
		f.t.Errorf("processes left running after the test: %v", left)
		for _, pid := range left {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// taggedProcs lists the live processes whose HERD_SUPERVISE_TESTID
// matches.
func taggedProcs(match func(id string) bool) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	key := []byte(testIDEnv + "=")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		env, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil {
			continue
		}
		for kv := range bytes.SplitSeq(env, []byte{0}) {
			if id, ok := bytes.CutPrefix(kv, key); ok {
				if match(string(id)) && alive(pid) {
					pids = append(pids, pid)
				}
				break
			}
		}
	}
	return pids
}

// ownProcs lists the live processes of this fixture.
func (f *fixture) ownProcs() []int {
	return taggedProcs(func(id string) bool { return id == f.id })
}

// alive reports whether pid is a live (not zombie) process.
func alive(pid int) bool {
	st, err := readStat(pid)
	return err == nil && st.live()
}

// await polls cond until it holds, failing the test after a generous
// deadline. It decides nothing by timing: the deadline only bounds a hang.
func await(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// awaitStatus polls the status of service name until cond holds, and
// returns that status.
func awaitStatus(t *testing.T, s *Supervisor, name, what string, cond func(Status) bool) Status {
	t.Helper()
	var st Status
	deadline := time.Now().Add(30 * time.Second)
	for {
		var ok bool
		st, ok = s.Status(name)
		if ok && cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s to be %s; status: %+v", name, what, st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func isState(want State) func(Status) bool {
	return func(st Status) bool { return st.State == want }
}

// awaitFile polls until the file at path contains substr, and returns its
// content.
func awaitFile(t *testing.T, path, substr string) string {
	t.Helper()
	var b []byte
	await(t, fmt.Sprintf("%s to contain %q", path, substr), func() bool {
		b, _ = os.ReadFile(path)
		return bytes.Contains(b, []byte(substr))
	})
	return string(b)
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// testLogger sends the supervisor's logs to t.Log.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}
