package supervise

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// killWait bounds the waits after a SIGKILL: for the main process to be
// gone, for a cgroup to empty.
const killWait = 5 * time.Second

// saveTimeout bounds one Store.Save.
const saveTimeout = 30 * time.Second

// loop is the goroutine that owns one service while it has a process or a
// pending restart. It ends when the service goes idle (stopped, failed,
// crash-loop) or the Supervisor closes; a later request starts a new one.
type loop struct {
	s    *Supervisor
	svc  *service
	log  *slog.Logger
	cmds chan command  // requests; unbuffered, so a request is either taken or not
	done chan struct{} // closed when the loop has ended

	// Set before the goroutine starts, handled first.
	first    *command
	startNow bool // start at once, as a fresh start (after a reboot)

	// Owned by the loop's goroutine.
	rec         Record
	proc        *process    // nil when no process runs
	retry       *time.Timer // pending restart; nil when none
	backoff     time.Duration
	health      Health
	healthErr   string
	healthFails int
	// settling is the request (Ensure or Restart) whose answer waits for
	// the start to be confirmed; nil when none.
	settling *settling
}

// settling is a start on request waiting to be confirmed: the process
// still runs when timer fires, or its health check passes first.
type settling struct {
	reply chan result
	res   result
	timer *time.Timer
}

// process is one run of a service: our child or an adopted process.
type process struct {
	pid, pgid int
	ticks     uint64
	started   time.Time
	cgroup    string
	adopted   bool
	pidfd     *os.File
	closing   atomic.Bool // set before pidfd is closed: the watcher's cue to end

	exited    chan struct{} // closed by the watcher when the process has exited
	watchDone chan struct{} // closed when the watcher goroutine has ended

	healthCh   chan error
	healthStop context.CancelFunc
	healthDone chan struct{}
}

// closePidfd closes p's pidfd and waits for its watcher to end.
func (p *process) closePidfd() {
	p.closing.Store(true)
	p.pidfd.Close()
	<-p.watchDone
}

func (s *Supervisor) newLoop(svc *service, rec Record) *loop {
	rec.Name = svc.name
	return &loop{
		s:      s,
		svc:    svc,
		log:    s.log.With("service", svc.name),
		cmds:   make(chan command),
		done:   make(chan struct{}),
		rec:    rec,
		health: HealthUnknown,
	}
}

func (l *loop) run() {
	defer l.s.wg.Done()
	rotation := time.NewTicker(l.s.opts.LogCheckInterval)
	defer rotation.Stop()
	if c := l.first; c != nil {
		l.first = nil
		l.handle(c)
	}
	if l.startNow {
		l.startNow = false
		_ = l.startFresh()
	}
	for l.proc != nil || l.retry != nil {
		var settled <-chan time.Time
		if l.settling != nil {
			settled = l.settling.timer.C
		}
		var exited <-chan struct{}
		var health <-chan error
		if l.proc != nil {
			exited, health = l.proc.exited, l.proc.healthCh
		}
		var retry <-chan time.Time
		if l.retry != nil {
			retry = l.retry.C
		}
		select {
		case <-l.s.ctx.Done():
			l.settle(nil)
			l.detach()
			l.finish()
			return
		case <-settled:
			l.settle(nil)
		case c := <-l.cmds:
			l.handle(&c)
		case <-exited:
			l.exited()
		case <-retry:
			l.retry = nil
			l.rec.Restarts++
			_ = l.start()
		case err := <-health:
			l.healthResult(err)
		case <-rotation.C:
			l.rotateLogs()
		}
	}
	l.finish()
}

// finish hands the service back to the Supervisor: the loop has ended.
func (l *loop) finish() {
	l.settle(nil)
	l.publish()
	l.s.mu.Lock()
	l.svc.loop = nil
	l.svc.rec = l.rec
	l.s.mu.Unlock()
	close(l.done)
}

// detach lets go of the service on Close: it keeps running, its record
// saved for the next Supervisor.
func (l *loop) detach() {
	if l.proc != nil && exitedNow(l.proc.pidfd) {
		// Record the exit now rather than hand a dead pid over.
		l.exited()
	}
	if l.retry != nil {
		l.retry.Stop()
		l.retry = nil
	}
	if p := l.proc; p != nil {
		l.stopHealth(p)
		p.closePidfd()
		l.proc = nil
	}
	l.save()
}

// settle answers the request waiting for its start to be confirmed, if
// any: with err when the start failed after all.
func (l *loop) settle(err error) {
	st := l.settling
	if st == nil {
		return
	}
	l.settling = nil
	st.timer.Stop()
	if err != nil {
		st.res.err = err
	}
	st.reply <- st.res
}

func (l *loop) handle(c *command) {
	// A request that comes while a start settles confirms that start: it
	// has run as long as the service's loop lets it.
	l.settle(nil)
	var r result
	switch c.kind {
	case cmdEnsure:
		if l.rec.Digest == c.digest && (l.proc != nil || l.retry != nil) {
			break
		}
		if l.proc != nil {
			l.log.Info("spec changed; restarting service")
			l.stopProc()
		}
		l.cancelRetry()
		r.changed = true
		if l.rec.Digest == c.digest && l.rec.Digest != "" {
			// The same spec, down (crash-loop, failed, stopped): one more
			// try that keeps the crash-loop count, so that a run cannot
			// hide a crash loop by starting it over each time.
			l.backoff = 0
			r.err = l.start()
		} else {
			l.rec.Spec, l.rec.Digest = c.spec, c.digest
			r.err = l.startFresh()
		}
		if r.err == nil && l.awaitSettle(c, r) {
			return
		}
	case cmdStop, cmdRemove:
		l.cancelRetry()
		if l.proc != nil {
			l.log.Info("stopping service")
			l.stopProc()
		}
		l.rec.State = StateStopped
		l.rec.RetryAt = time.Time{}
		l.backoff = 0
		if l.rec.Cgroup != "" {
			if err := removeCgroup(l.rec.Cgroup); err != nil {
				l.log.Warn("removing the service's cgroup", "err", err)
			}
			l.rec.Cgroup = ""
		}
		if c.kind == cmdRemove {
			r.err = l.s.opts.Store.Delete(context.Background(), l.rec.Name)
			if r.err == nil {
				// Forget it now, so that Status after Remove finds nothing;
				// this loop ends next without touching it again.
				l.s.mu.Lock()
				if l.s.svcs[l.svc.name] == l.svc {
					delete(l.s.svcs, l.svc.name)
				}
				l.s.mu.Unlock()
			}
		} else {
			r.err = l.save()
		}
		l.publish()
	case cmdRestart:
		if l.rec.Digest == "" || len(l.rec.Spec.Argv) == 0 || l.rec.Spec.Argv[0] == "" {
			r.err = ErrUnknown
			break
		}
		l.cancelRetry()
		if l.proc != nil {
			l.log.Info("restarting service")
			l.stopProc()
		}
		r.changed = true
		// The crash-loop count is kept: a refresh of a flapping service
		// must not make it look fresh.
		l.backoff = 0
		r.err = l.start()
		if r.err == nil && l.awaitSettle(c, r) {
			return
		}
	}
	c.reply <- r
}

// awaitSettle holds the answer to c until the start just made is
// confirmed (see Options.Settle), and reports whether it does so.
func (l *loop) awaitSettle(c *command, r result) bool {
	if l.s.opts.Settle <= 0 || l.proc == nil {
		return false
	}
	l.settling = &settling{reply: c.reply, res: r, timer: time.NewTimer(l.s.opts.Settle)}
	return true
}

func (l *loop) cancelRetry() {
	if l.retry != nil {
		l.retry.Stop()
		l.retry = nil
	}
}

// startFresh starts the service on request: the restart count and the
// crash-loop count start over.
func (l *loop) startFresh() error {
	l.rec.Restarts = 0
	l.rec.Policy = l.s.policyFor(l.rec.Spec, 0)
	l.backoff = 0
	return l.start()
}

// start starts the service's process. A failure counts as an exit for the
// restart policy.
func (l *loop) start() error {
	now := time.Now()
	if l.rec.Digest == "" || len(l.rec.Spec.Argv) == 0 || l.rec.Spec.Argv[0] == "" {
		// Found by its cgroup, without a record: what it ran is not
		// known, so only an Ensure, which brings the spec, starts it.
		err := errors.New("its spec is unknown (it was adopted without a record): ensure it to start it")
		l.afterExit(now, ExitInfo{At: now, Code: -1, Err: err.Error()})
		return err
	}
	p, err := l.spawn(now)
	if err != nil {
		l.log.Warn("starting service failed", "err", err)
		l.afterExit(now, ExitInfo{At: now, Code: -1, Err: err.Error()})
		return err
	}
	l.proc = p
	l.rec.State = StateRunning
	l.rec.PID, l.rec.PGID, l.rec.StartTicks = p.pid, p.pgid, p.ticks
	l.rec.BootID, l.rec.Cgroup, l.rec.StartedAt = l.s.bootID, p.cgroup, now
	l.rec.RetryAt = time.Time{}
	if err := l.save(); err != nil {
		// A process whose record is not saved could be neither adopted
		// nor stopped by the next agent: it must not run.
		l.log.Error("saving the service record failed; stopping the service", "err", err)
		ex := l.stopProc()
		ex.Err = err.Error()
		l.afterExit(time.Now(), ex)
		return err
	}
	l.log.Info("service started", "pid", p.pid, "cgroup", p.cgroup)
	l.startHealth(p)
	l.publish()
	return nil
}

// spawn forks and execs the service into its own process group and, when
// cgroups are in use, straight into its own cgroup (clone3 with
// CLONE_INTO_CGROUP), so that not even its first instructions run outside.
func (l *loop) spawn(now time.Time) (*process, error) {
	spec := l.rec.Spec
	argv0, err := lookPath(spec.Argv[0], spec.Env)
	if err != nil {
		return nil, err
	}
	l.rotateLogs()
	outPath, errPath := logPaths(l.s.opts.LogDir, spec.Name)
	stdout, err := openLog(outPath)
	if err != nil {
		return nil, err
	}
	defer stdout.Close()
	stderr, err := openLog(errPath)
	if err != nil {
		return nil, err
	}
	defer stderr.Close()
	null, err := os.Open(os.DevNull)
	if err != nil {
		return nil, err
	}
	defer null.Close()

	pidfd := -1
	sys := &syscall.SysProcAttr{Setpgid: true, PidFD: &pidfd}
	if u := spec.User; u != nil {
		sys.Credential = &syscall.Credential{Uid: u.UID, Gid: u.GID, Groups: u.Groups}
	}
	var cg string
	if spec.Type == TypeForking && l.s.cgroupRoot == "" {
		return nil, errors.New(`type "forking" needs cgroup v2 (not writable here): without a cgroup the pid in a pid file cannot be told to be the service's`)
	}
	if root := l.s.cgroupRoot; root != "" {
		cg = cgroupDir(root, spec.Name)
		fd, err := openCgroup(cg)
		if err != nil {
			return nil, err
		}
		defer unix.Close(fd)
		sys.UseCgroupFD, sys.CgroupFD = true, fd
		if old := l.rec.Cgroup; old != "" && old != cg {
			// The service was adopted in its legacy cgroup (from before
			// the agent ran delegated): it starts in its new one, and
			// the old one, ours and without a live main process, goes.
			if err := removeCgroup(old); err != nil {
				l.log.Warn("removing the service's old cgroup", "err", err)
			}
		}
	} else if l.rec.Cgroup != "" {
		// Cgroups were turned off since the last run: clean up.
		if err := removeCgroup(l.rec.Cgroup); err != nil {
			l.log.Warn("removing the service's old cgroup", "err", err)
		}
	}
	attr := &syscall.ProcAttr{
		Dir:   spec.Dir,
		Env:   serviceEnv(spec.Env),
		Files: []uintptr{null.Fd(), stdout.Fd(), stderr.Fd()},
		Sys:   sys,
	}
	pid, err := syscall.ForkExec(argv0, spec.Argv, attr)
	if errors.Is(err, unix.ENOSYS) && sys.UseCgroupFD {
		// No clone3 (a kernel before 5.7, or a seccomp filter that hides
		// it): start the process, then move it into its cgroup. Whatever it
		// forks in between stays outside.
		l.log.Warn("clone3 is not available; moving the service into its cgroup after the start")
		sys.UseCgroupFD, sys.CgroupFD = false, 0
		pid, err = syscall.ForkExec(argv0, spec.Argv, attr)
		if err == nil {
			if werr := os.WriteFile(cg+"/cgroup.procs", []byte(strconv.Itoa(pid)), 0); werr != nil {
				l.log.Warn("moving the service into its cgroup", "err", werr)
			}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("starting %s in %s: %w", argv0, spec.Dir, err)
	}
	if spec.Type == TypeForking {
		p, err := l.forked(pid, pidfd, cg, now)
		if err != nil {
			// Nothing of a start that failed may run on unseen.
			if cerr := removeCgroup(cg); cerr != nil {
				l.log.Warn("killing what the failed start left", "err", cerr)
			}
		}
		return p, err
	}
	var f *os.File
	if pidfd >= 0 {
		f, err = pidfdFile(pidfd, pid)
	} else {
		f, err = openPidfd(pid) // safe: our unreaped child holds its pid
	}
	if err != nil {
		_ = unix.Kill(-pid, unix.SIGKILL)
		var ws unix.WaitStatus
		_, _ = unix.Wait4(pid, &ws, 0, nil)
		return nil, err
	}
	// Our child is not reaped yet, so /proc/PID is there even if it exited.
	st, err := readStat(pid)
	if err != nil {
		_ = pidfdSignal(f, unix.SIGKILL)
		_ = awaitExit(f)
		_, _, _, _ = reap(f)
		f.Close()
		return nil, fmt.Errorf("reading the start time of %d: %w", pid, err)
	}
	p := &process{pid: pid, pgid: pid, ticks: st.StartTicks, started: now, cgroup: cg, pidfd: f}
	l.watch(p)
	return p, nil
}

// watch starts the goroutine that learns when p exits. It ends when p has
// exited or p.pidfd is closed.
func (l *loop) watch(p *process) {
	p.exited = make(chan struct{})
	p.watchDone = make(chan struct{})
	go func() {
		defer close(p.watchDone)
		for {
			err := awaitExit(p.pidfd)
			if err == nil {
				close(p.exited)
				return
			}
			if p.closing.Load() {
				return
			}
			l.log.Warn("waiting on the service's pidfd", "err", err)
			time.Sleep(100 * time.Millisecond)
		}
	}()
}

// exited handles the exit of the service's process.
func (l *loop) exited() {
	p := l.proc
	// A main process that leaves others behind when it exits at once is a
	// daemon that forked into the background. Its leftovers are killed
	// like any other's: the supervisor would not see them die.
	forked := l.settling != nil && !p.adopted && l.hasLeftovers(p)
	// Kill what the main process left behind (systemd's control-group
	// kill mode). Before the reap: until then the main process, a zombie,
	// holds its pid and so its process group id, which no other process
	// can therefore be using.
	l.killLeftovers(p)
	ex := l.endProc()
	if forked && !ex.Failed() {
		ex.Err = ErrForked.Error()
	}
	l.log.Info("service exited", "exit", ex.String(), "ran", ex.At.Sub(ex.Started).Round(time.Millisecond))
	l.afterExit(ex.At, ex)
	if l.settling != nil {
		l.settle(&ExitError{Name: l.rec.Name, Exit: ex, LogTail: l.logTail()})
	}
}

// hasLeftovers reports whether a process of the service other than its
// exited main process is still there.
func (l *loop) hasLeftovers(p *process) bool {
	if p.cgroup != "" {
		return cgroupPopulated(p.cgroup)
	}
	return len(groupMembers(p.pgid)) > 0
}

// afterExit asks the restart policy what follows an exit (or a failed
// start), and records it.
func (l *loop) afterExit(now time.Time, ex ExitInfo) {
	l.rec.LastExit = &ex
	l.rec.PID, l.rec.PGID, l.rec.StartTicks = 0, 0, 0
	act, delay := l.rec.Policy.Next(now, ex)
	l.backoff = 0
	switch act {
	case ActionRestart:
		l.rec.State = StateBackoff
		l.backoff = delay
		l.rec.RetryAt = now.Add(delay)
		l.retry = time.NewTimer(delay)
	case ActionStop:
		l.rec.State = StateStopped
	case ActionFail:
		l.rec.State = StateFailed
	case ActionCrashLoop:
		l.rec.State = StateCrashLoop
		l.log.Error("service is in a crash loop; not restarting it", "restarts", l.rec.Restarts, "last_exit", ex.String())
	}
	l.save()
	l.publish()
}

// stopProc stops the running process as Stop documents and returns how it
// ended. It blocks the loop for up to StopTimeout (plus killWait); requests
// wait meanwhile, Status does not.
func (l *loop) stopProc() ExitInfo {
	p := l.proc
	spec := l.rec.Spec
	ctx, cancel := context.WithTimeout(context.Background(), spec.StopTimeout)
	defer cancel()
	l.signal(p, spec.StopSignal)
	select {
	case <-p.exited:
	case <-ctx.Done():
		l.log.Warn("service did not stop in time; killing it", "stop_timeout", spec.StopTimeout)
		l.kill(p)
		kctx, kcancel := context.WithTimeout(context.Background(), killWait)
		select {
		case <-p.exited:
		case <-kctx.Done():
			l.log.Error("service survived SIGKILL", "pid", p.pid)
		}
		kcancel()
	}
	// The main process is gone. What it leaves behind gets the rest of
	// StopTimeout, then SIGKILL. The main process stays unreaped until
	// then, so that its process group id cannot be reused.
	if !l.groupEmpty(ctx, p) {
		l.kill(p)
		kctx, kcancel := context.WithTimeout(context.Background(), killWait)
		if !l.groupEmpty(kctx, p) {
			l.log.Error("processes of the service survived SIGKILL")
		}
		kcancel()
	}
	ex := l.endProc()
	l.log.Info("service stopped", "exit", ex.String())
	l.rec.LastExit = &ex
	l.rec.PID, l.rec.PGID, l.rec.StartTicks = 0, 0, 0
	return ex
}

// signal sends sig to the service: to every process of its cgroup, or to
// its process group (and to the main process, should it have left it).
func (l *loop) signal(p *process, sig syscall.Signal) {
	if p.cgroup != "" {
		cgroupSignal(p.cgroup, sig)
		return
	}
	_ = unix.Kill(-p.pgid, sig)
	if st, err := readStat(p.pid); err == nil && st.PGRP != p.pgid {
		_ = pidfdSignal(p.pidfd, sig)
	}
}

// kill SIGKILLs every process of the service.
func (l *loop) kill(p *process) {
	if p.cgroup != "" {
		if err := cgroupKill(p.cgroup); err != nil {
			l.log.Warn("killing the service's cgroup", "err", err)
		}
	} else {
		_ = unix.Kill(-p.pgid, unix.SIGKILL)
	}
	_ = pidfdSignal(p.pidfd, unix.SIGKILL)
}

// killLeftovers SIGKILLs what is left of the service after its main
// process exited.
func (l *loop) killLeftovers(p *process) {
	if p.cgroup != "" {
		if cgroupPopulated(p.cgroup) {
			l.log.Info("killing processes the service left behind")
			_ = cgroupKill(p.cgroup)
		}
		return
	}
	_ = unix.Kill(-p.pgid, unix.SIGKILL)
}

// groupEmpty waits until no process of the service is left, or ctx ends.
func (l *loop) groupEmpty(ctx context.Context, p *process) bool {
	if p.cgroup != "" {
		return awaitCgroupEmpty(ctx, p.cgroup)
	}
	return poll(ctx, func() bool { return len(groupMembers(p.pgid)) == 0 })
}

// endProc lets go of the exited process: reaps it when it is our child and
// ends its watcher and health checks.
func (l *loop) endProc() ExitInfo {
	p := l.proc
	l.stopHealth(p)
	ex := ExitInfo{Started: p.started, Code: -1}
	code, sig, known, err := reap(p.pidfd)
	ex.At = time.Now()
	switch {
	case known:
		ex.Code, ex.Signal = code, sig
	case err != nil:
		l.log.Warn("collecting the exit status", "err", err)
		ex.Unknown = true
	default:
		ex.Unknown = true // adopted: not our child
	}
	p.closePidfd()
	l.proc = nil
	l.health, l.healthErr, l.healthFails = HealthUnknown, "", 0
	return ex
}

func (l *loop) startHealth(p *process) {
	h := l.rec.Spec.Health
	if h == nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.healthCh = make(chan error)
	p.healthStop = cancel
	p.healthDone = make(chan struct{})
	spec := l.rec.Spec
	go func() {
		defer close(p.healthDone)
		runHealth(ctx, *h, spec, p.healthCh)
	}()
}

func (l *loop) stopHealth(p *process) {
	if p.healthStop != nil {
		p.healthStop()
		<-p.healthDone
		p.healthStop = nil
	}
}

func (l *loop) healthResult(err error) {
	was := l.health
	if err == nil {
		l.health, l.healthErr, l.healthFails = HealthHealthy, "", 0
		// A passing health check confirms the start at once.
		l.settle(nil)
	} else {
		l.healthErr = err.Error()
		l.healthFails++
		if l.healthFails >= l.rec.Spec.Health.Retries {
			l.health = HealthUnhealthy
		}
	}
	if l.health != was {
		lvl := slog.LevelInfo
		if l.health == HealthUnhealthy {
			lvl = slog.LevelWarn
		}
		l.log.Log(context.Background(), lvl, "service health changed", "health", l.health, "err", l.healthErr)
	}
	l.publish()
}

func (l *loop) rotateLogs() {
	out, errp := logPaths(l.s.opts.LogDir, l.svc.name)
	for _, path := range []string{out, errp} {
		if ok, err := rotate(path, l.s.opts.LogMaxBytes, l.s.opts.LogKeep); err != nil {
			l.log.Warn("rotating a log", "path", path, "err", err)
		} else if ok {
			l.log.Debug("rotated a log", "path", path)
		}
	}
}

// save writes the record; failures are logged and returned.
func (l *loop) save() error {
	ctx, cancel := context.WithTimeout(context.Background(), saveTimeout)
	defer cancel()
	err := l.s.opts.Store.Save(ctx, l.rec)
	if err != nil {
		l.log.Error("saving the service record", "err", err)
	}
	return err
}

// publish makes the loop's view of the service what Status returns.
func (l *loop) publish() {
	st := statusOf(l.rec, l.s.opts.LogDir)
	st.Backoff = l.backoff
	st.Health, st.HealthError = l.health, l.healthErr
	st.Adopted = l.proc != nil && l.proc.adopted
	l.svc.setStatus(&st)
}

// statusOf is the status a record implies.
func statusOf(rec Record, logDir string) Status {
	st := Status{
		Name:      rec.Name,
		State:     rec.State,
		PID:       rec.PID,
		StartedAt: rec.StartedAt,
		Restarts:  rec.Restarts,
		LastExit:  rec.LastExit,
		Health:    HealthUnknown,
		Cgroup:    rec.Cgroup,
		Digest:    rec.Digest,
	}
	if rec.State == StateBackoff {
		st.RetryAt = rec.RetryAt
	}
	if st.State == "" {
		st.State = StateStopped
	}
	st.Stdout, st.Stderr = logPaths(logDir, rec.Name)
	return st
}

// resume takes over a recorded service when the Supervisor starts (called
// from New, before any request).
func (s *Supervisor) resume(now time.Time, rec Record) {
	svc := &service{name: rec.Name, rec: rec}
	s.svcs[rec.Name] = svc
	l := s.newLoop(svc, rec)
	l.rec.Policy = s.policyFor(rec.Spec, rec.Policy.Count)
	switch {
	case rec.PID > 0:
		if p := s.adopt(rec); p != nil {
			l.log.Info("adopted running service", "pid", p.pid)
			l.proc = p
			l.watch(p)
			l.startHealth(p)
			break
		}
		s.cleanupDead(l.log, rec)
		if rec.BootID != s.bootID && rec.Digest != "" {
			// The host rebooted: the service did not fail, start it as
			// the boot would.
			l.log.Info("starting service after a reboot")
			l.rec.PID, l.rec.PGID, l.rec.StartTicks = 0, 0, 0
			l.startNow = true
			break
		}
		l.log.Warn("service died while no supervisor ran", "pid", rec.PID)
		l.afterExit(now, ExitInfo{Started: rec.StartedAt, At: now, Code: -1, Unknown: true})
	case rec.State == StateBackoff:
		l.retry = time.NewTimer(max(0, rec.RetryAt.Sub(now)))
	}
	l.publish()
	if l.proc != nil || l.retry != nil || l.startNow {
		s.startLoop(l)
	}
}

// adopt finds the recorded process of rec if it still runs, and returns it
// watched by a pidfd; nil if it is gone. A process is the recorded one only
// when the boot id and its start time match: a pid alone may have been
// reused by an unrelated process, which is never adopted, signalled or
// killed.
func (s *Supervisor) adopt(rec Record) *process {
	if rec.BootID != s.bootID {
		return nil
	}
	same := func() bool {
		st, err := readStat(rec.PID)
		return err == nil && st.live() && st.StartTicks == rec.StartTicks
	}
	if !same() {
		return nil
	}
	f, err := openPidfd(rec.PID)
	if err != nil {
		return nil
	}
	// The pidfd now pins this very process; check it is still the one we
	// looked at, not a newcomer that took the pid in between.
	if !same() {
		f.Close()
		return nil
	}
	pgid := rec.PGID
	if pgid <= 0 {
		pgid = rec.PID
	}
	return &process{
		pid: rec.PID, pgid: pgid, ticks: rec.StartTicks, started: rec.StartedAt,
		cgroup: rec.Cgroup, adopted: true, pidfd: f,
	}
}

// cleanupDead kills what a service whose main process died while no
// supervisor ran may have left behind. With a cgroup that is exact. With a
// process group alone it is done only when the group can still be told to
// be ours: the leader's pid is not in use by another process (a live
// member keeps the group id, hence that pid, from being reused). Should an
// unrelated group with the same id have come and its leader gone, its
// members would be killed too; cgroups do not have this weakness.
func (s *Supervisor) cleanupDead(log *slog.Logger, rec Record) {
	if rec.Cgroup != "" {
		if err := removeCgroup(rec.Cgroup); err != nil {
			log.Warn("killing what the dead service left behind", "err", err)
		}
		return
	}
	if rec.BootID != s.bootID || rec.PGID <= 0 {
		return
	}
	if st, err := readStat(rec.PGID); err == nil && st.StartTicks != rec.StartTicks {
		return // the pid is someone else's now, and so is any group of that id
	}
	for _, pid := range groupMembers(rec.PGID) {
		log.Info("killing a process the dead service left behind", "pid", pid)
		_ = unix.Kill(pid, unix.SIGKILL)
	}
}
