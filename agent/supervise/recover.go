package supervise

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Finding services again when the Store lost their records: the agent's
// database was moved aside as corrupt, and the processes the supervisor
// ran are still there. Without their records they would be orphans, and
// the next run's Ensure would start a duplicate beside each. New finds
// them instead, from the side records (Options.RecordDir) and, for what
// those lack too, from the cgroups of this state directory's subtree.

// fromSide returns the side records of the services the main store's
// records (have) lack, and writes the side records that have holds and
// side lacks (a state directory from before side records).
func (s *Supervisor) fromSide(ctx context.Context, side *DirStore, have []Record) []Record {
	if err := checkPrivateDir(side.dir); err != nil {
		s.log.Error("ignoring the services' side records", "err", err)
		return nil
	}
	recs, bad, err := side.loadEach(ctx)
	for _, e := range bad {
		s.log.Error("skipping a side record", "err", e)
	}
	if err != nil {
		s.log.Error("reading the services' side records", "err", err)
		return nil
	}
	known := map[string]bool{}
	for _, r := range have {
		known[r.Name] = true
	}
	inSide := map[string]bool{}
	var out []Record
	for _, r := range recs {
		inSide[r.Name] = true
		if known[r.Name] {
			continue
		}
		s.log.Warn("the store has no record of the service; taking its side record", "service", r.Name, "dir", side.dir)
		out = append(out, r)
	}
	for _, r := range have {
		if !inSide[r.Name] && checkName(r.Name) == nil {
			if err := side.Save(ctx, r); err != nil {
				s.log.Error("writing a side record", "service", r.Name, "err", err)
			}
		}
	}
	return out
}

// checkPrivateDir checks that dir, if it exists, is a directory (not a
// link to one) that only this process's user owns and may write: the
// records it holds say which processes the supervisor signals.
func checkPrivateDir(dir string) error {
	fi, err := os.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("%s is owned by uid %d, not by this process's (%d)", dir, st.Uid, os.Geteuid())
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("%s is writable by others (mode %v)", dir, fi.Mode().Perm())
	}
	return nil
}

// prepareRecordDir makes the side record directory, or tightens one that
// others may write to 0700; one that is a link or another user's is an
// error: records written through it could be read, or planted, by others.
func prepareRecordDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("making the record directory: %w", err)
	}
	// The mode is what may be wrong; the rest is checked before it is
	// changed, so that a link or another user's directory is left alone.
	fi, err := os.Lstat(dir)
	if err == nil && fi.IsDir() && fi.Mode().Perm() != 0o700 && ownedByUs(fi) {
		err = os.Chmod(dir, 0o700)
	}
	if err == nil {
		err = checkPrivateDir(dir)
	}
	if err != nil {
		return fmt.Errorf("checking the record directory: %w", err)
	}
	return nil
}

func ownedByUs(fi fs.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && int(st.Uid) == os.Geteuid()
}

// fromCgroups returns a record for each service cgroup of this state
// directory's subtree that still has processes and that known lacks: an
// earlier supervisor over this state directory made that cgroup and ran
// the service in it, and nothing else may. An empty one is removed.
//
// Such a record has no spec (its Digest is empty): the supervisor adopts
// and can stop the process, but never starts the service again itself;
// the next Ensure, which brings the spec, restarts it once. A process
// group alone is never taken this way: its id says nothing of whose it is.
func (s *Supervisor) fromCgroups(known map[string]bool) []Record {
	var out []Record
	seen := map[string]bool{}
	for name := range known {
		seen[name] = true
	}
	// The current subtree first: a service found in both is the one there.
	for _, home := range s.homes() {
		out = append(out, s.fromCgroupHome(home, seen)...)
	}
	return out
}

// fromCgroupHome is fromCgroups for one subtree, home; it adds the names
// it found to seen.
func (s *Supervisor) fromCgroupHome(home string, seen map[string]bool) []Record {
	ents, err := os.ReadDir(home)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			s.log.Warn("looking for services in their cgroups", "err", err)
		}
		return nil
	}
	var out []Record
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".service")
		if !ok || !e.IsDir() || checkName(name) != nil || seen[name] {
			continue
		}
		dir := cgroupDir(home, name)
		main, ok := mainProcess(dir)
		if !ok {
			_ = unix.Rmdir(dir) // a leftover, empty: nothing to adopt
			continue
		}
		seen[name] = true
		argv := cmdline(main.PID)
		s.log.Warn("found a running service by its cgroup, without a record; adopting it (its spec is unknown: the next ensure restarts it with the wanted one)",
			"service", name, "pid", main.PID, "argv", argv, "cgroup", dir)
		out = append(out, Record{
			Name: name,
			// Never restarted on its own: there is nothing to restart it
			// with but a guess.
			Spec: Spec{
				Name: name, Argv: argv, Dir: "/", Restart: RestartNever,
				StopSignal: DefaultStopSignal, StopTimeout: DefaultStopTimeout,
			},
			State: StateRunning,
			PID:   main.PID, PGID: main.PGRP, StartTicks: main.StartTicks,
			BootID: s.bootID, Cgroup: dir, StartedAt: startTime(main.StartTicks),
		})
	}
	return out
}

// mainProcess picks the service's main process among the live processes
// of cgroup dir: a process group leader before any other (the supervisor
// starts a service in a group of its own, and a forking daemon makes a
// session of its own), the oldest first, the lowest pid on a tie.
func mainProcess(dir string) (procStat, bool) {
	pids, _ := cgroupProcs(dir)
	var best procStat
	found := false
	for _, pid := range pids {
		st, err := readStat(pid)
		if err != nil || !st.live() {
			continue
		}
		if !found || better(st, best) {
			best, found = st, true
		}
	}
	return best, found
}

func better(a, b procStat) bool {
	if al, bl := a.PID == a.PGRP, b.PID == b.PGRP; al != bl {
		return al
	}
	if a.StartTicks != b.StartTicks {
		return a.StartTicks < b.StartTicks
	}
	return a.PID < b.PID
}

// cmdline returns the argv of process pid; nil when unreadable.
func cmdline(pid int) []string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil || len(b) == 0 {
		return nil
	}
	return strings.Split(string(bytes.TrimSuffix(b, []byte{0})), "\x00")
}

// userHZ is the unit of /proc's clock ticks, fixed by the kernel's ABI
// whatever its internal HZ.
const userHZ = 100

// startTime is when a process that started ticks clock ticks after boot
// started; zero when the boot time cannot be read.
func startTime(ticks uint64) time.Time {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return time.Time{}
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "btime "); ok {
			sec, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return time.Time{}
			}
			return time.Unix(sec, 0).Add(time.Duration(ticks) * time.Second / userHZ)
		}
	}
	return time.Time{}
}
