package supervise

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// cgroupDir is the cgroup of service name under root. The suffix keeps
// service names clear of the cgroup interface files (cgroup.procs, cpu.max…).
func cgroupDir(root, name string) string {
	return filepath.Join(root, name+".service")
}

// cgroup2Mount finds where the cgroup v2 hierarchy is mounted: /sys/fs/cgroup
// on a unified host, /sys/fs/cgroup/unified on a hybrid one.
func cgroup2Mount() (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", fmt.Errorf("finding the cgroup2 mount: %w", err)
	}
	defer f.Close()
	var found []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent major:minor root mountpoint options [optional…] - fstype source super
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		pf, qf := strings.Fields(pre), strings.Fields(post)
		if len(pf) >= 5 && len(qf) >= 1 && qf[0] == "cgroup2" {
			found = append(found, unescapeMount(pf[4]))
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("finding the cgroup2 mount: %w", err)
	}
	for _, m := range found {
		if m == "/sys/fs/cgroup" {
			return m, nil
		}
	}
	if len(found) == 0 {
		return "", errors.New("finding the cgroup2 mount: cgroup2 is not mounted")
	}
	return found[0], nil
}

// unescapeMount undoes the octal escapes (\040 for a space) of mountinfo.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// setupCgroupRoot makes root (the parent of all service cgroups) and checks
// that it is a writable cgroup v2 directory: that a child group can be made
// in it.
func setupCgroupRoot(root string) (string, error) {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return "", fmt.Errorf("making cgroup %s: %w", root, err)
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs(root, &sfs); err != nil {
		return "", fmt.Errorf("checking cgroup %s: %w", root, err)
	}
	if sfs.Type != unix.CGROUP2_SUPER_MAGIC {
		return "", fmt.Errorf("checking cgroup %s: not a cgroup v2 file system", root)
	}
	probe := filepath.Join(root, fmt.Sprintf("probe-%d", os.Getpid()))
	if err := os.Mkdir(probe, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("checking cgroup %s is writable: %w", root, err)
	}
	if err := os.Remove(probe); err != nil {
		return "", fmt.Errorf("checking cgroup %s is writable: %w", root, err)
	}
	return root, nil
}

// cgroupProcs lists the processes in cgroup dir (not in its children: a
// service's cgroup has none).
func cgroupProcs(dir string) ([]int, error) {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range bytes.Fields(b) {
		if pid, err := strconv.Atoi(string(f)); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// cgroupPopulated reports whether a process is left in cgroup dir. Exited
// processes (zombies) are not counted. A missing cgroup is empty.
func cgroupPopulated(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.events"))
	if err == nil {
		for line := range strings.Lines(string(b)) {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "populated "); ok {
				return v != "0"
			}
		}
	}
	pids, _ := cgroupProcs(dir)
	return len(pids) > 0
}

// cgroupSignal sends sig to every process in cgroup dir, as systemd's
// KillMode=control-group does: a process that left the service's process
// group with setsid() is asked to stop too.
func cgroupSignal(dir string, sig syscall.Signal) {
	pids, _ := cgroupProcs(dir)
	for _, pid := range pids {
		_ = unix.Kill(pid, sig)
	}
}

// cgroupKill SIGKILLs every process in cgroup dir. cgroup.kill (Linux 5.14)
// does it atomically, forks racing with it included; on older kernels the
// members are killed one by one until none is left.
func cgroupKill(dir string) error {
	f, err := os.OpenFile(filepath.Join(dir, "cgroup.kill"), os.O_WRONLY, 0)
	if err == nil {
		_, err = f.WriteString("1")
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			return nil
		}
	}
	if !dirExists(dir) {
		return nil
	}
	for range 100 {
		pids, err := cgroupProcs(dir)
		if err != nil || len(pids) == 0 {
			return nil
		}
		for _, pid := range pids {
			_ = unix.Kill(pid, unix.SIGKILL)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return fmt.Errorf("killing cgroup %s: processes keep appearing", dir)
}

// awaitCgroupEmpty waits until cgroup dir has no process left, or ctx ends.
func awaitCgroupEmpty(ctx context.Context, dir string) bool {
	return poll(ctx, func() bool { return !cgroupPopulated(dir) })
}

// emptyCgroup kills whatever is left in cgroup dir and waits, a bounded
// time, for it to be gone: before a service starts again in it, so that a
// leftover of an earlier run is never running twice.
func emptyCgroup(dir string) error {
	if !cgroupPopulated(dir) {
		return nil
	}
	if err := cgroupKill(dir); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), killWait)
	defer cancel()
	if !awaitCgroupEmpty(ctx, dir) {
		return fmt.Errorf("emptying cgroup %s: processes left after SIGKILL", dir)
	}
	return nil
}

// removeCgroup kills what is left in cgroup dir and removes it.
func removeCgroup(dir string) error {
	if !dirExists(dir) {
		return nil
	}
	if err := emptyCgroup(dir); err != nil {
		return err
	}
	// The kernel may report the group empty a moment before it lets it go.
	var err error
	for range 50 {
		if err = unix.Rmdir(dir); err == nil || errors.Is(err, unix.ENOENT) {
			return nil
		}
		if !errors.Is(err, unix.EBUSY) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("removing cgroup %s: %w", dir, err)
}

// openCgroup makes cgroup dir afresh and opens it for clone3's
// CLONE_INTO_CGROUP (SysProcAttr.UseCgroupFD). A cgroup left by an earlier
// run is emptied and removed first: nothing of that run may outlive it, and
// some kernels (seen on 6.18) SIGKILL at birth every process cloned into a
// cgroup once cgroup.kill was written there, so a cgroup is never reused.
func openCgroup(dir string) (int, error) {
	if err := removeCgroup(dir); err != nil {
		return -1, err
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		return -1, fmt.Errorf("making cgroup %s: %w", dir, err)
	}
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("opening cgroup %s: %w", dir, err)
	}
	return fd, nil
}

func dirExists(dir string) bool {
	fi, err := os.Stat(dir)
	return err == nil && fi.IsDir()
}

// poll calls cond every few milliseconds until it holds (true) or ctx ends
// (false). It stands in for waits the kernel offers no event for.
func poll(ctx context.Context, cond func() bool) bool {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		if cond() {
			return true
		}
		select {
		case <-ctx.Done():
			return cond()
		case <-t.C:
		}
	}
}
