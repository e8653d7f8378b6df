package supervise

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/herdcm/herd/testkit"
)

// TestDelegatedCgroup plays an agent under systemd with Delegate=yes on a
// cgroup v2 directory the test makes: first in that cgroup not yet marked
// delegated (today's layout, herd/SCOPE), then marked as systemd marks it
// (trusted.delegate=1). The delegated agent moves itself into UNIT/agent,
// starts a service in UNIT/services/SCOPE, adopts the one the undelegated
// agent left in the old layout without killing it, and a restarted agent
// (still in UNIT/agent, as after a re-exec) adopts both; a restart of the
// old-layout service moves it into the delegated subtree; and a supervisor
// outside the unit adopts them in their cgroups in it.
//
// Not parallel: it moves the test process itself between cgroups, which
// a parallel test of the default layout would see as a delegation.
func TestDelegatedCgroup(t *testing.T) {
	testkit.NeedRoot(t, "it makes cgroups and moves the test process between them")
	mnt, err := cgroup2Mount()
	if err != nil {
		t.Skipf("cgroup v2 is not mounted: %v", err)
	}
	orig, err := ownCgroup()
	if err != nil {
		t.Skipf("this process has no cgroup v2: %v", err)
	}
	f := newFixture(t, cgroupOff)
	parent := filepath.Join(mnt, "herd-test-"+f.id)
	if _, err := setupCgroupRoot(parent); err != nil {
		os.Remove(parent)
		t.Skipf("cgroup v2 is not writable here: %v", err)
	}
	unit := filepath.Join(parent, "herd-agent.service")
	scope := CgroupScope(f.dir)
	legacy := filepath.Join(mnt, DefaultCgroupName, scope)
	home := filepath.Join(unit, delegateServices, scope)
	// Registered before any supervisor's cleanup, so it runs after they
	// stopped their services: the test process goes back where it was,
	// and the cgroups it made go.
	t.Cleanup(func() {
		if err := moveSelf(filepath.Join(mnt, orig)); err != nil {
			t.Errorf("moving the test process back to its cgroup: %v", err)
		}
		// Service cgroups are left only by a failed test.
		for _, h := range []string{home, legacy} {
			ents, _ := os.ReadDir(h)
			for _, e := range ents {
				if e.IsDir() {
					if err := removeCgroup(filepath.Join(h, e.Name())); err != nil {
						t.Errorf("removing the test's cgroup: %v", err)
					}
				}
			}
		}
		for _, dir := range []string{home, filepath.Dir(home), filepath.Join(unit, delegateLeaf), unit, parent, legacy} {
			if err := unix.Rmdir(dir); err != nil && !errors.Is(err, unix.ENOENT) {
				t.Errorf("removing the test's cgroup %s: %v", dir, err)
			}
		}
	})
	if err := os.Mkdir(unit, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := moveSelf(unit); err != nil {
		t.Fatal(err)
	}
	opts := f.options()
	opts.CgroupRoot, opts.NoCgroups, opts.StateDir = "", false, f.dir

	// Not marked delegated: today's layout, and the agent stays put.
	s0 := f.start(opts)
	ensure(t, s0, f.spec("old", "run"))
	old0, _ := s0.Status("old")
	if want := cgroupDir(legacy, "old"); old0.Cgroup != want {
		t.Errorf("undelegated: service cgroup %s, want %s", old0.Cgroup, want)
	}
	if got, _ := ownCgroup(); filepath.Join(mnt, got) != unit {
		t.Errorf("undelegated: the agent moved to %s, want it left in %s", filepath.Join(mnt, got), unit)
	}
	if err := s0.Close(); err != nil {
		t.Fatal(err)
	}

	if err := unix.Setxattr(unit, "trusted.delegate", []byte("1"), 0); err != nil {
		t.Skipf("cannot mark a cgroup delegated as systemd does: %v", err)
	}
	s1 := f.start(opts)
	if got, _ := ownCgroup(); filepath.Join(mnt, got) != filepath.Join(unit, delegateLeaf) {
		t.Errorf("delegated: the agent is in %s, want %s", filepath.Join(mnt, got), filepath.Join(unit, delegateLeaf))
	}
	if pids, _ := cgroupProcs(unit); len(pids) != 0 {
		t.Errorf("delegated: the unit's own cgroup still holds %v", pids)
	}
	ensure(t, s1, f.spec("web", "run"))
	web1, _ := s1.Status("web")
	if want := cgroupDir(home, "web"); web1.Cgroup != want {
		t.Errorf("delegated: service cgroup %s, want %s", web1.Cgroup, want)
	}
	if pids, err := cgroupProcs(web1.Cgroup); err != nil || !slices.Contains(pids, web1.PID) {
		t.Errorf("delegated: cgroup %s holds %v (%v), want pid %d", web1.Cgroup, pids, err, web1.PID)
	}
	checkAdopted(t, s1, old0)
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}

	// The next agent: restarted, or re-executed after an upgrade (then it
	// starts in UNIT/agent, where the last one left it).
	s2 := f.start(opts)
	checkAdopted(t, s2, web1)
	checkAdopted(t, s2, old0)
	if err := s2.Restart(context.Background(), "old"); err != nil {
		t.Fatalf("Restart(old) = %v", err)
	}
	old2, _ := s2.Status("old")
	if want := cgroupDir(home, "old"); old2.Cgroup != want || old2.PID == old0.PID {
		t.Errorf("restarted old-layout service: pid %d in %s, want a new one in %s", old2.PID, old2.Cgroup, want)
	}
	if dirExists(old0.Cgroup) {
		t.Errorf("the old-layout cgroup %s is left after its service moved", old0.Cgroup)
	}
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}

	// A supervisor outside the unit (a shell's herd apply while the
	// daemon is stopped) owns the services' cgroups in the unit too.
	if err := moveSelf(filepath.Join(mnt, orig)); err != nil {
		t.Fatal(err)
	}
	s3 := f.start(opts)
	checkAdopted(t, s3, web1)
	checkAdopted(t, s3, old2)
}

// checkAdopted fails the test unless s adopted want's process, running,
// in want's cgroup.
func checkAdopted(t *testing.T, s *Supervisor, want Status) {
	t.Helper()
	st, ok := s.Status(want.Name)
	if !ok || st.State != StateRunning || !st.Adopted || st.PID != want.PID || st.Cgroup != want.Cgroup || !alive(want.PID) {
		t.Errorf("Status(%s) = %+v, %v; want pid %d adopted, running, in %s", want.Name, st, ok, want.PID, want.Cgroup)
	}
}

// moveSelf moves the test process into cgroup dir.
func moveSelf(dir string) error {
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0); err != nil {
		return fmt.Errorf("moving pid %d to %s: %w", os.Getpid(), dir, err)
	}
	return nil
}

func TestParseOwnCgroup(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, in, want string
		wantErr        bool
	}{
		{"unified", "0::/system.slice/herd-agent.service\n", "/system.slice/herd-agent.service", false},
		{"hybrid", "9:name=systemd:/system.slice/x.service\n1:cpu:/\n0::/system.slice/x.service/agent\n", "/system.slice/x.service/agent", false},
		{"root", "0::/\n", "/", false},
		{"v1 only", "1:cpu:/\n", "", true},
		{"outside the namespace", "0::/../../user.slice\n", "", true},
		{"relative", "0::system.slice\n", "", true},
		{"empty", "", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseOwnCgroup(strings.NewReader(tc.in))
			if got != tc.want || (err != nil) != tc.wantErr {
				t.Errorf("parseOwnCgroup(%q) = %q, %v; want %q, error %v", tc.in, got, err, tc.want, tc.wantErr)
			}
		})
	}
}

// FuzzParseOwnCgroup: whatever /proc/self/cgroup holds, a path returned
// is absolute, clean, and never climbs out of the hierarchy.
func FuzzParseOwnCgroup(f *testing.F) {
	f.Add("0::/system.slice/herd-agent.service\n")
	f.Add("0::/../x\n")
	f.Add("1:cpu:/\n0::/a/./b//c/\n")
	f.Fuzz(func(t *testing.T, in string) {
		p, err := parseOwnCgroup(strings.NewReader(in))
		if err != nil {
			return
		}
		if !strings.HasPrefix(p, "/") || filepath.Clean(p) != p || slices.Contains(strings.Split(p, "/"), "..") {
			t.Errorf("parseOwnCgroup(%q) = %q: not a clean path inside the hierarchy", in, p)
		}
	})
}
