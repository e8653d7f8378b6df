package supervise

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Running under a cgroup systemd delegated to the agent (Delegate=yes in
// herd-agent.service): the services' cgroups belong in that subtree, where
// systemd leaves them alone and accounts them to the agent's unit, not in
// a /sys/fs/cgroup/herd of our own beside systemd's tree.
//
//	UNIT/agent                       the agent itself (a leaf)
//	UNIT/services/SCOPE/NAME.service one per service, SCOPE = CgroupScope
const (
	// delegateLeaf is the child of the delegated cgroup the agent moves
	// itself into: cgroup v2 lets an inner cgroup with controllers enabled
	// hold no process, so the agent must not stay in UNIT beside
	// UNIT/services.
	delegateLeaf = "agent"
	// delegateServices is the child of the delegated cgroup that holds
	// the state directories' subtrees.
	delegateServices = "services"
)

// procSelfCgroup is read to find the agent's own cgroup.
const procSelfCgroup = "/proc/self/cgroup"

// ownCgroup returns the cgroup v2 path of this process (the "0::" line of
// /proc/self/cgroup), absolute within the hierarchy.
func ownCgroup() (string, error) {
	f, err := os.Open(procSelfCgroup)
	if err != nil {
		return "", fmt.Errorf("reading the agent's cgroup: %w", err)
	}
	defer f.Close()
	return parseOwnCgroup(f)
}

// parseOwnCgroup finds the cgroup v2 line ("0::PATH") of a /proc/PID/cgroup
// file; on a v1-only host there is none. A path that climbs out of the
// hierarchy (outside our cgroup namespace, "/../x") is refused.
func parseOwnCgroup(r io.Reader) (string, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if p, ok := strings.CutPrefix(sc.Text(), "0::"); ok {
			if !strings.HasPrefix(p, "/") || slices.Contains(strings.Split(p, "/"), "..") {
				return "", fmt.Errorf("reading the agent's cgroup: odd path %q in %s", p, procSelfCgroup)
			}
			return filepath.Clean(p), nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("reading the agent's cgroup: %w", err)
	}
	return "", fmt.Errorf("reading the agent's cgroup: no cgroup v2 line in %s", procSelfCgroup)
}

// isDelegated reports whether systemd delegated cgroup dir: systemd (251
// and later) marks the cgroup of a unit with Delegate=yes with the
// trusted.delegate extended attribute, and (252 and later) user.delegate,
// set to "1". That mark is the test, not the unit's name or whether the
// files are writable (root may write any cgroup, delegated or not): a
// cgroup systemd manages itself may be rearranged by it at any reload.
func isDelegated(dir string) bool {
	// On another file system anyone owning a directory may set a
	// user.delegate of their own.
	var sfs unix.Statfs_t
	if unix.Statfs(dir, &sfs) != nil || sfs.Type != unix.CGROUP2_SUPER_MAGIC {
		return false
	}
	for _, attr := range []string{"trusted.delegate", "user.delegate"} {
		buf := make([]byte, 8)
		n, err := unix.Getxattr(dir, attr, buf)
		if err == nil && strings.TrimSpace(string(buf[:n])) == "1" {
			return true
		}
	}
	return false
}

// delegatedUnit returns the cgroup systemd delegated to this process,
// under cgroup2 mount mnt: the process's own cgroup when it is marked
// delegated, or its parent when the process is in that parent's leaf
// (an agent that re-executed itself, or one started by systemd 254 and
// later with DelegateSubgroup=agent). False otherwise: no systemd, a
// sandbox, a shell's `herd apply`, or a unit without Delegate=yes. Only
// these two places are looked at: a process deeper in some other
// delegated tree (a user's systemd, a container) is not the agent's unit.
func delegatedUnit(mnt string) (string, bool) {
	own, err := ownCgroup()
	if err != nil || own == "/" {
		return "", false
	}
	dir := filepath.Join(mnt, own)
	if isDelegated(dir) {
		return dir, true
	}
	if filepath.Base(dir) == delegateLeaf && isDelegated(filepath.Dir(dir)) {
		return filepath.Dir(dir), true
	}
	return "", false
}

// enterDelegated moves this process into the leaf of delegated cgroup
// unit (UNIT/agent) and makes UNIT/services, returning the subtree of the
// services of scope, UNIT/services/SCOPE, checked writable.
//
// Controllers are not enabled in UNIT: the supervisor needs none
// (cgroup.procs, cgroup.events and cgroup.kill are core files), and a
// controller enabled there would make the kernel refuse systemd (before
// 254's DelegateSubgroup=) the placing of a restarted agent in UNIT.
// The agent moves into its leaf anyway, so that an operator who enables
// controllers for the services (in UNIT and UNIT/services) finds UNIT's
// inner nodes already empty, as cgroup v2 requires.
func enterDelegated(unit, scope string) (string, error) {
	leaf := filepath.Join(unit, delegateLeaf)
	if err := os.Mkdir(leaf, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("making the agent's cgroup %s: %w", leaf, err)
	}
	// Writing our pid to cgroup.procs moves every thread of the process.
	if err := os.WriteFile(filepath.Join(leaf, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0); err != nil {
		return "", fmt.Errorf("moving the agent into its cgroup %s: %w", leaf, err)
	}
	home := filepath.Join(unit, delegateServices, scope)
	if _, err := setupCgroupRoot(home); err != nil {
		return "", err
	}
	return home, nil
}
