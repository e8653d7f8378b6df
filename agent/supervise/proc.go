package supervise

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// procStat is what the supervisor reads from /proc/PID/stat.
type procStat struct {
	PID     int
	Comm    string
	State   byte // R, S, D, Z, T, …
	PPID    int
	PGRP    int
	Session int
	// StartTicks is field 22, starttime: clock ticks after boot at which
	// the process started. With the boot id it tells a process from a later
	// one that reused its pid.
	StartTicks uint64
}

// parseStat parses the contents of /proc/PID/stat (proc(5)). The command
// name may hold spaces and parentheses, so the fields after it are found
// from the last ')'.
func parseStat(b []byte) (procStat, error) {
	var st procStat
	open := bytes.IndexByte(b, '(')
	closing := bytes.LastIndexByte(b, ')')
	if open < 1 || closing < open {
		return st, errors.New("parsing stat: no (comm)")
	}
	pid, err := strconv.Atoi(string(bytes.TrimSpace(b[:open])))
	if err != nil || pid <= 0 {
		return st, fmt.Errorf("parsing stat: bad pid %q", b[:open])
	}
	st.PID = pid
	st.Comm = string(b[open+1 : closing])
	// Fields 3 onwards; fields[i] is field i+3.
	fields := strings.Fields(string(b[closing+1:]))
	if len(fields) < 20 {
		return st, fmt.Errorf("parsing stat: %d fields after comm, want at least 20", len(fields))
	}
	if len(fields[0]) != 1 {
		return st, fmt.Errorf("parsing stat: bad state %q", fields[0])
	}
	st.State = fields[0][0]
	ints := []*int{&st.PPID, &st.PGRP, &st.Session}
	for i, p := range ints {
		n, err := strconv.Atoi(fields[1+i])
		if err != nil {
			return st, fmt.Errorf("parsing stat: field %d: %w", 4+i, err)
		}
		*p = n
	}
	st.StartTicks, err = strconv.ParseUint(fields[19], 10, 64)
	if err != nil {
		return st, fmt.Errorf("parsing stat: starttime: %w", err)
	}
	return st, nil
}

// readStat reads /proc/PID/stat.
func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	return parseStat(b)
}

// live reports whether the process is there and has not exited (a zombie
// has exited).
func (st procStat) live() bool { return st.State != 'Z' && st.State != 'X' }

// readBootID reads the id the kernel draws at each boot.
func readBootID() (string, error) {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "", fmt.Errorf("reading boot id: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// groupMembers lists the live processes in process group pgid, by a scan of
// /proc. Only Stop and cleanups use it, never the Ensure path.
func groupMembers(pgid int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := readStat(pid)
		if err == nil && st.PGRP == pgid && st.live() {
			pids = append(pids, pid)
		}
	}
	return pids
}

// lookPath finds argv[0] the way execvp does, but in the PATH of the
// service's environment rather than the agent's. Relative PATH entries are
// skipped: a service's binary never depends on the agent's directory.
func lookPath(file string, env []string) (string, error) {
	if strings.Contains(file, "/") {
		return file, nil
	}
	path, ok := envValue(env, "PATH")
	if !ok {
		path = DefaultPath
	}
	for _, dir := range filepath.SplitList(path) {
		if !filepath.IsAbs(dir) {
			continue
		}
		p := filepath.Join(dir, file)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("looking up %q in PATH %q: %w", file, path, exec.ErrNotFound)
}

// serviceEnv is the environment a service gets: its Env, plus DefaultPath
// when Env sets no PATH.
func serviceEnv(env []string) []string {
	out := append([]string(nil), env...)
	if _, ok := envValue(env, "PATH"); !ok {
		out = append(out, "PATH="+DefaultPath)
	}
	return out
}

// Alive reports whether the process rec names still runs: the same boot,
// and a live process at its pid that started when the record says. It only
// reads /proc, for a caller that must not supervise (a noop run).
func Alive(rec Record) bool {
	if rec.PID <= 0 {
		return false
	}
	boot, err := readBootID()
	if err != nil || boot != rec.BootID {
		return false
	}
	st, err := readStat(rec.PID)
	return err == nil && st.live() && st.StartTicks == rec.StartTicks
}
