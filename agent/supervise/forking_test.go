package supervise

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestForkingService: type "forking" supervises the daemon a starter
// leaves behind, named by its pid file, and stops it.
func TestForkingService(t *testing.T) {
	t.Parallel()
	f := newFixture(t, cgroupRequired)
	s := f.start(f.options())
	pidFile := filepath.Join(f.dir, "daemon.pid")
	spec := f.spec("forker", "daemonize", pidFile)
	spec.Type, spec.PIDFile = TypeForking, pidFile
	ensure(t, s, spec)
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	daemon, _ := strconv.Atoi(string(b))
	st, _ := s.Status("forker")
	if st.State != StateRunning || st.PID != daemon || !alive(daemon) {
		t.Fatalf("status %+v, want the daemon %d running", st, daemon)
	}
	if err := s.Stop(context.Background(), "forker"); err != nil {
		t.Fatal(err)
	}
	if alive(daemon) {
		t.Errorf("the daemon %d outlived Stop", daemon)
	}
}

// TestForkingServiceForgedPIDFile: a pid file naming a process that is not
// the service's (here the test itself) is never believed.
func TestForkingServiceForgedPIDFile(t *testing.T) {
	t.Parallel()
	f := newFixture(t, cgroupRequired)
	opts := f.options()
	opts.ForkTimeout = 500 * time.Millisecond
	s := f.start(opts)
	forged := filepath.Join(f.dir, "forged.pid")
	if err := os.WriteFile(forged, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	spec := f.spec("forker", "daemonize", filepath.Join(f.dir, "real.pid"))
	spec.Type, spec.PIDFile = TypeForking, forged
	spec.Restart = RestartNever // no retry: the failed start alone must clean up
	_, err := s.Ensure(context.Background(), spec)
	if err == nil || !strings.Contains(err.Error(), "not a process of the service") {
		t.Fatalf("Ensure = %v, want the forged pid refused", err)
	}
	b, err := os.ReadFile(filepath.Join(f.dir, "real.pid"))
	if err != nil {
		t.Fatal(err)
	}
	real, _ := strconv.Atoi(string(b))
	await(t, "the daemon of the failed start to be killed", func() bool { return !alive(real) })
}

func TestReadPIDFileStaysInRoot(t *testing.T) {
	t.Parallel()
	root, outside := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "x.pid"), []byte("4242\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "in.pid"), []byte("4243\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "x.pid"), filepath.Join(root, "out.pid")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../../../../../.."+outside+"/x.pid", filepath.Join(root, "up.pid")); err != nil {
		t.Fatal(err)
	}
	if pid, err := readPIDFile(root, "/in.pid"); err != nil || pid != 4243 {
		t.Errorf("readPIDFile(in.pid) = %d, %v; want 4243", pid, err)
	}
	for _, p := range []string{"/out.pid", "/up.pid", "/../x.pid"} {
		if pid, err := readPIDFile(root, p); err == nil {
			t.Errorf("readPIDFile(%s) = %d, want a refusal to leave the root", p, pid)
		}
	}
}

func FuzzParsePID(f *testing.F) {
	for _, s := range []string{"123\n", " 42 ", "1", "0", "-5", "12\n34", "abc", "", "99999999999999999999"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		pid, err := parsePID(b)
		if err == nil && pid <= 1 {
			t.Errorf("parsePID(%q) = %d, want a pid above 1 or an error", b, pid)
		}
	})
}
