package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// Trigger says why a run was asked for. Triggers are bits so that the ones
// arriving while a run is in progress coalesce into one pending run: the
// daemon never replays them, it only remembers that one more run is due and
// why.
type Trigger uint8

// The triggers.
const (
	// TriggerTimer: the schedule said so (the server's next check-in time,
	// the interval with splay, or a retry after a failed check-in).
	TriggerTimer Trigger = 1 << iota
	// TriggerWatch: the server's Watch stream named a catalog other than
	// the cached one.
	TriggerWatch
	// TriggerDrift: a watched resource (drift = "watch") changed by hand.
	TriggerDrift
	// TriggerManual: a caller asked (RunOnce, herd agent --once).
	TriggerManual
	// TriggerHangup: the agent got SIGHUP: run now, with its
	// configuration read again (see Daemon.Hangup).
	TriggerHangup
	// TriggerServer: a Watch event asked for a run now (WatchEvent.run),
	// even with the catalog the node holds: a rollout wants a fresh report
	// (health at the end of a bake), or has a rehearsal for the check-in.
	TriggerServer
	// TriggerAudit: the audit interval passed since the last run that
	// checked the host: a noop check of the cached catalog, reported as
	// an audit run (DaemonOptions.AuditInterval). Any other trigger with
	// it makes a real run instead, which checks the host as well.
	TriggerAudit
)

// String names the triggers in t, joined by "+".
func (t Trigger) String() string {
	var names []string
	for _, n := range []struct {
		t    Trigger
		name string
	}{{TriggerTimer, "timer"}, {TriggerWatch, "watch"}, {TriggerDrift, "drift"}, {TriggerManual, "manual"}, {TriggerHangup, "hup"}, {TriggerServer, "server"}, {TriggerAudit, "audit"}} {
		if t&n.t != 0 {
			names = append(names, n.name)
		}
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, "+")
}

// local says whether a run for t needs only the cached catalog: a drift
// alone. Such a run skips the check-in, so that a hand edit is put back
// within moments even when the server is slow or away.
func (t Trigger) local() bool { return t == TriggerDrift }

// NextAudit returns when the next audit run is due: every after the last
// run that checked the host (a real run or an audit), so that a real
// apply puts the next audit off; zero when audits are off (every <= 0) or
// nothing has checked the host yet (the first run is a real one).
func NextAudit(every time.Duration, lastChecked time.Time) time.Time {
	if every <= 0 || lastChecked.IsZero() {
		return time.Time{}
	}
	return lastChecked.Add(every)
}

// Schedule holds the daemon's timing settings. Its methods are pure: every
// input, the random draw included, is an argument, so a test states a
// situation and reads the answer without a clock or a sleep.
type Schedule struct {
	// Interval is the time between runs when the server names no
	// check-in time (default 30 minutes).
	Interval time.Duration
	// Splay adds up to this much, at random, to Interval, so that agents
	// started together do not check in together.
	Splay time.Duration
	// MinBackoff and MaxBackoff bound the wait after a failed check-in
	// (defaults 10 seconds and 5 minutes; never more than Interval).
	MinBackoff, MaxBackoff time.Duration
}

// ScheduleState is what the daemon knows when it decides its next run.
type ScheduleState struct {
	// LastRun is when the last full run (one with a check-in) ended; zero
	// before the first.
	LastRun time.Time
	// ServerNext is the check-in time the server named at the last
	// successful check-in; zero when it named none.
	ServerNext time.Time
	// Failures counts the check-ins that failed in a row.
	Failures int
	// RetryAfter is the server's hint with the last failure (an overloaded
	// server's "retry-after-ms"); zero when it gave none.
	RetryAfter time.Duration
	// Jitter is a random draw in [0, 1), renewed after every run, so that
	// asking Next twice gives the same answer.
	Jitter float64
}

func (s Schedule) interval() time.Duration {
	if s.Interval <= 0 {
		return 30 * time.Minute
	}
	return s.Interval
}

func (s Schedule) minBackoff() time.Duration {
	if s.MinBackoff <= 0 {
		return 10 * time.Second
	}
	return s.MinBackoff
}

func (s Schedule) maxBackoff() time.Duration {
	m := s.MaxBackoff
	if m <= 0 {
		m = 5 * time.Minute
	}
	// Waiting longer than the interval after a failure would make a
	// failure slow the agent down below its normal pace.
	return max(min(m, s.interval()), s.minBackoff())
}

// Next returns when the next full run is due; a time not after now means
// at once.
//
//   - Before the first run: now.
//   - After a failed check-in: the backoff (see Backoff) after the last run.
//   - When the server named a time: that time, but not sooner than
//     MinBackoff after the last run (a server answering "now" must not spin
//     the agent) and not later than twice the interval with splay (a server
//     clock gone wrong must not silence the agent).
//   - Otherwise: Interval plus a random part of Splay after the last run.
func (s Schedule) Next(now time.Time, st ScheduleState) time.Time {
	if st.LastRun.IsZero() {
		return now
	}
	if st.Failures > 0 {
		return st.LastRun.Add(s.Backoff(st.Failures, st.RetryAfter, st.Jitter))
	}
	if !st.ServerNext.IsZero() {
		earliest := st.LastRun.Add(s.minBackoff())
		latest := st.LastRun.Add(2*s.interval() + s.Splay)
		switch {
		case st.ServerNext.Before(earliest):
			return earliest
		case st.ServerNext.After(latest):
			return latest
		}
		return st.ServerNext
	}
	return st.LastRun.Add(s.interval() + scale(s.Splay, st.Jitter))
}

// Backoff is the wait after the failures-th failure in a row: exponential
// from MinBackoff, capped at MaxBackoff, with "equal jitter" (half fixed,
// so that a retry never comes at once; half random, so that a fleet that
// failed together does not retry together). A server's retry hint is a
// floor, itself jittered upwards by up to a quarter, and capped at twice
// the interval so that a wrong hint cannot silence the agent.
func (s Schedule) Backoff(failures int, hint time.Duration, jitter float64) time.Duration {
	if failures <= 0 {
		return 0
	}
	top := s.maxBackoff()
	d := s.minBackoff()
	for i := 1; i < failures && d < top; i++ {
		d *= 2
	}
	d = min(d, top)
	wait := d/2 + scale(d/2, jitter)
	if hint > 0 {
		hint = min(hint, 2*s.interval())
		wait = max(wait, hint+scale(hint/4, jitter))
	}
	return wait
}

// scale returns the fraction f (clamped to [0, 1)) of d.
func scale(d time.Duration, f float64) time.Duration {
	if f <= 0 || d <= 0 {
		return 0
	}
	if f >= 1 {
		f = 0.999999
	}
	return time.Duration(f * float64(d))
}

// Hangup is what the agent does on SIGHUP: it asks for a run now and,
// when reload is not nil, reads its settings again through reload (the
// configuration file and flags, as at start) and takes them from that run
// on. Settings only a restart can change (the server, the root, the state
// and certificate directories, the agent's version, once) must come back
// unchanged: a change is an error naming them, and then no setting is
// taken. The run is asked for either way. The functions in o (Log, Emit,
// Done, Services, Types) are never replaced.
func (d *Daemon) Hangup(reload func() (DaemonOptions, error)) error {
	defer d.Trigger(TriggerHangup)
	if reload == nil {
		return nil
	}
	o, err := reload()
	if err != nil {
		return fmt.Errorf("reloading the configuration: %w; keeping the one in effect", err)
	}
	if err := d.checkReload(o); err != nil {
		return err
	}
	d.mu.Lock()
	d.reload = &o
	d.mu.Unlock()
	return nil
}

// checkReload refuses new options that change a setting only a restart
// can change: the daemon would otherwise run on with the old one while
// the file says another.
func (d *Daemon) checkReload(o DaemonOptions) error {
	cur := d.o
	var changed []string
	for _, f := range []struct {
		name     string
		old, new string
	}{
		{"server", cur.Server, o.Server},
		{"server_name", cur.ServerName, o.ServerName},
		{"root", cur.Root, orDefault(o.Root, "/")},
		{"state_dir", cur.StateDir, o.StateDir},
		{"cert_dir", cur.CertDir, o.CertDir},
		{"agent version", cur.AgentVersion, o.AgentVersion},
	} {
		// An empty value in o means the default, which cur already holds
		// filled in.
		if f.new != "" && f.new != f.old {
			changed = append(changed, fmt.Sprintf("%s (%q → %q)", f.name, f.old, f.new))
		}
	}
	if o.Once != cur.Once {
		changed = append(changed, "once")
	}
	if len(changed) > 0 {
		return errors.New("reloading the configuration: only a restart of the agent changes " +
			strings.Join(changed, ", ") + "; no setting was reloaded")
	}
	return nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// takeReload applies the settings a Hangup left, between runs: the run
// loop owns the options, so nothing reads them half-changed.
func (d *Daemon) takeReload() {
	d.mu.Lock()
	o := d.reload
	d.reload = nil
	d.mu.Unlock()
	if o == nil {
		return
	}
	cur := &d.o
	cur.Interval, cur.Splay, cur.AuditInterval = o.Interval, o.Splay, o.AuditInterval
	cur.Noop, cur.Parallel = o.Noop, o.Parallel
	cur.ResourceTimeout, cur.RunTimeout = o.ResourceTimeout, o.RunTimeout
	if o.LockWait > 0 {
		cur.LockWait = o.LockWait
	}
	if o.KeepRuns > 0 {
		cur.KeepRuns = o.KeepRuns
	}
	cur.FactsDir = o.FactsDir
	// The runner reads its settings, derived from the options as at start
	// (the logger with the node's name kept).
	log := d.runs.Log
	d.runs = cur.settings()
	d.runs.Log = log
	d.sched.Interval, d.sched.Splay = o.Interval, o.Splay
	d.log.Info("configuration reloaded", "interval", o.Interval.String(), "splay", o.Splay.String(), "audit_interval", o.AuditInterval.String(), "noop", o.Noop,
		"parallel", o.Parallel, "resource_timeout", o.ResourceTimeout.String(), "run_timeout", o.RunTimeout.String())
}

// HandleHangups calls Hangup for every signal on sig until ctx ends,
// logging what a reload refused. The agent command routes SIGHUP here.
func (d *Daemon) HandleHangups(ctx context.Context, sig <-chan os.Signal, reload func() (DaemonOptions, error)) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-sig:
			d.log.Info("SIGHUP: running now, with the configuration read again")
			// systemd (ExecReload, or Type=notify-reload) waits for
			// READY=1 after RELOADING=1: the settings are read and
			// checked now, and taken by the run loop before its next run.
			d.o.Notify.Reloading("reading the configuration again")
			if err := d.Hangup(reload); err != nil {
				d.log.Error("SIGHUP", "err", err)
			}
			d.o.Notify.Ready("configuration read again")
		}
	}
}
