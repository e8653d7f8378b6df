package agent

import (
	"bytes"
	"context"
	"crypto/rand"
	"os"
	"slices"
	"strconv"
	"syscall"
	"testing"

	"github.com/herdcm/herd/agent/supervise"
)

// TestCorruptStateKeepsServices: a service runs; the state database is
// garbled or truncated to nothing while no agent runs, and moved aside at
// the next open. The next supervisor still supervises the same process
// (from its side record, or with that gone too, from its cgroup), starts
// no second one, and a later stop kills it.
func TestCorruptStateKeepsServices(t *testing.T) {
	t.Parallel()
	damages := []struct {
		name string
		do   func(db string) error
	}{
		{"garbage", func(db string) error {
			b := make([]byte, 16384)
			rand.Read(b)
			return os.WriteFile(db, b, 0o600)
		}},
		{"empty", func(db string) error { return os.Truncate(db, 0) }},
	}
	for _, d := range damages {
		for _, side := range []string{"side records", "cgroup only"} {
			t.Run(d.name+"/"+side, func(t *testing.T) {
				t.Parallel()
				ctx := context.Background()
				dir, root := t.TempDir(), t.TempDir()
				sd := StateDir(dir)
				st1, err := OpenState(dir)
				if err != nil {
					t.Fatal(err)
				}
				svc1, err := NewServices(ctx, st1, root, testLog(t))
				if err != nil {
					t.Fatal(err)
				}
				if _, err := svc1.Ensure(ctx, sleeper("web")); err != nil {
					t.Fatal(err)
				}
				first, _ := svc1.Status(ctx, "web")
				t.Cleanup(func() {
					// Whatever failed, nothing of the test outlives it.
					for _, pid := range servicePIDs(root) {
						_ = syscall.Kill(pid, syscall.SIGKILL)
					}
					removeCgroupHome(t, first.Cgroup)
				})
				if err := svc1.Close(); err != nil {
					t.Fatal(err)
				}
				if err := st1.Close(); err != nil {
					t.Fatal(err)
				}
				if side == "cgroup only" {
					if first.Cgroup == "" {
						// Stop it here: no later supervisor could find it.
						_ = syscall.Kill(first.PID, syscall.SIGKILL)
						t.Skip("cgroup v2 is not writable here: services run in process groups alone, found from their side records only")
					}
					if err := os.RemoveAll(sd.ServiceRecords()); err != nil {
						t.Fatal(err)
					}
				}
				if err := d.do(sd.DB()); err != nil {
					t.Fatal(err)
				}

				st2 := openTestState(t, dir)
				if st2.Recovered() == "" {
					t.Fatalf("OpenState over a damaged state.db did not recover")
				}
				svc2, err := NewServices(ctx, st2, root, testLog(t))
				if err != nil {
					t.Fatal(err)
				}
				defer svc2.Close()
				got, err := svc2.Status(ctx, "web")
				if err != nil || got.PID != first.PID || got.State != supervise.StateRunning || !got.Adopted {
					t.Fatalf("Status(web) after the state was lost = %+v, %v; want pid %d running, adopted", got, err, first.PID)
				}
				if pids := servicePIDs(root); !slices.Equal(pids, []int{first.PID}) {
					t.Errorf("processes of the root = %v, want only %d", pids, first.PID)
				}

				// The next run's ensure: the same process with its side
				// record (which holds its spec), one replacement for a
				// process found by its cgroup alone (whose spec is unknown).
				changed, err := svc2.Ensure(ctx, sleeper("web"))
				if err != nil {
					t.Fatal(err)
				}
				now, _ := svc2.Status(ctx, "web")
				if side == "side records" && (changed || now.PID != first.PID) {
					t.Errorf("Ensure = %v, pid %d; want no change, pid %d", changed, now.PID, first.PID)
				}
				if pids := servicePIDs(root); !slices.Equal(pids, []int{now.PID}) {
					t.Errorf("processes of the root after Ensure = %v, want only %d (no duplicate)", pids, now.PID)
				}
				if st, ok := svc2.Running("web"); !ok || !st.Running || st.SpecDigest != sleeper("web").Digest() {
					t.Errorf("Running(web) after Ensure = %+v, %v; want running with the spec's digest", st, ok)
				}
				if err := svc2.Stop(ctx, "web"); err != nil {
					t.Fatal(err)
				}
				if pids := servicePIDs(root); len(pids) != 0 {
					t.Errorf("processes of the root after Stop = %v, want none", pids)
				}
			})
		}
	}
}

// servicePIDs lists the live processes the supervisor started for the
// sandbox root (their HERD_ROOT names it), sorted.
func servicePIDs(root string) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	want := []byte("HERD_ROOT=" + root)
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil || !slices.ContainsFunc(bytes.Split(env, []byte{0}), func(kv []byte) bool { return bytes.Equal(kv, want) }) {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if i := bytes.LastIndexByte(stat, ')'); err != nil || i < 0 || i+2 >= len(stat) || stat[i+2] == 'Z' {
			continue // gone, or a zombie
		}
		pids = append(pids, pid)
	}
	slices.Sort(pids)
	return pids
}
