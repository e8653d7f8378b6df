package supervise

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// forked finishes the start of a forking service: it waits for the starter
// (our child pid, pidfd fd) to exit 0, reads the daemon's pid from the
// pid file, and takes that process, adopted, as the service's main
// process. The pid is taken only while it is in cgroup cg, the service's
// own: a stale pid file, or one naming another process, is never
// believed.
func (l *loop) forked(pid, fd int, cg string, now time.Time) (*process, error) {
	spec := l.rec.Spec
	ctx, cancel := context.WithTimeout(context.Background(), l.s.opts.ForkTimeout)
	defer cancel()
	starter, err := starterFile(fd, pid)
	if err != nil {
		return nil, err
	}
	code, sig, err := awaitStarter(ctx, starter)
	if err != nil {
		return nil, err
	}
	if sig != 0 || code != 0 {
		ex := ExitInfo{Code: code, Signal: sig}
		return nil, fmt.Errorf("the starter of forking service %s %s", spec.Name, ex.String())
	}
	var last error
	for {
		p, err := l.takeDaemon(spec, cg, now)
		if err == nil {
			return p, nil
		}
		last = err
		if !cgroupPopulated(cg) {
			return nil, fmt.Errorf("forking service %s: its starter exited 0 and left no process running", spec.Name)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("forking service %s: %w", spec.Name, last)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// starterFile wraps the starter's pidfd (or opens one: our unreaped child
// holds its pid).
func starterFile(fd, pid int) (*os.File, error) {
	if fd >= 0 {
		return pidfdFile(fd, pid)
	}
	return openPidfd(pid)
}

// awaitStarter waits for the starter to exit and reaps it; past ctx it is
// killed.
func awaitStarter(ctx context.Context, f *os.File) (int, unix.Signal, error) {
	defer f.Close()
	done := make(chan error, 1)
	go func() { done <- awaitExit(f) }()
	select {
	case err := <-done:
		if err != nil {
			return -1, 0, fmt.Errorf("waiting for the starter: %w", err)
		}
	case <-ctx.Done():
		_ = pidfdSignal(f, unix.SIGKILL)
		<-done
		_, _, _, _ = reap(f)
		return -1, 0, errors.New("the starter did not exit in time (Options.ForkTimeout)")
	}
	code, sig, _, err := reap(f)
	if err != nil {
		return -1, 0, fmt.Errorf("collecting the starter's exit: %w", err)
	}
	return code, sig, nil
}

// takeDaemon reads the pid file and adopts the process it names if it is
// in cgroup cg.
func (l *loop) takeDaemon(spec Spec, cg string, now time.Time) (*process, error) {
	pid, err := readPIDFile(spec.Root, spec.PIDFile)
	if err != nil {
		return nil, err
	}
	inCgroup := func() bool {
		pids, err := cgroupProcs(cg)
		return err == nil && slices.Contains(pids, pid)
	}
	if !inCgroup() {
		return nil, fmt.Errorf("pid %d of %s is not a process of the service (not in %s)", pid, spec.PIDFile, cg)
	}
	f, err := openPidfd(pid)
	if err != nil {
		return nil, err
	}
	// The pidfd pins that process: if it is still in the cgroup now, it is
	// the one the file named, not a newcomer that reused the pid.
	st, err := readStat(pid)
	if err != nil || !st.live() || !inCgroup() {
		f.Close()
		return nil, fmt.Errorf("pid %d of %s exited", pid, spec.PIDFile)
	}
	p := &process{pid: pid, pgid: st.PGRP, ticks: st.StartTicks, started: now, cgroup: cg, adopted: true, pidfd: f}
	l.watch(p)
	return p, nil
}

// readPIDFile reads a pid from path inside root without following a link
// out of the root.
func readPIDFile(root, path string) (int, error) {
	r, err := os.OpenRoot(root)
	if err != nil {
		return 0, fmt.Errorf("reading pid file: %w", err)
	}
	defer r.Close()
	rel := strings.TrimLeft(path, "/")
	f, err := r.Open(rel)
	if err != nil {
		return 0, fmt.Errorf("reading pid file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("reading pid file %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return 0, fmt.Errorf("reading pid file %s: not a regular file", path)
	}
	b := make([]byte, 64)
	n, err := f.Read(b)
	if err != nil {
		return 0, fmt.Errorf("reading pid file %s: %w", path, err)
	}
	return parsePID(b[:n])
}

// parsePID parses the first line of a pid file.
func parsePID(b []byte) (int, error) {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	pid, err := strconv.Atoi(string(bytes.TrimSpace(line)))
	if err != nil || pid <= 1 {
		return 0, errors.New("pid file holds no pid")
	}
	return pid, nil
}
