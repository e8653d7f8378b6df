package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/herdcm/herd/agent/resources"
	"github.com/herdcm/herd/agent/sandbox"
	"github.com/herdcm/herd/sdnotify"
)

// SiteDaemonOptions configure the masterless daemon (`herd agent --site
// DIR`): herd apply from a local checkout on a schedule and whenever the
// checkout changes, with the supervisor kept for the daemon's whole life so
// that services stay supervised between runs.
type SiteDaemonOptions struct {
	// ApplyOptions are those of each run; Noop is refused (a daemon that
	// only checks has nothing to supervise: use herd apply --noop).
	ApplyOptions
	// Interval is the time between runs (default 30 minutes); Splay adds
	// up to this much at random.
	Interval, Splay time.Duration
	// Debounce is how long the site must stay still after a change before
	// a run (default 500 ms): an editor's burst of writes or a git pull is
	// one run.
	Debounce time.Duration
	// Hangup, when set, asks for a run now with each value (the agent
	// command routes SIGHUP here).
	Hangup <-chan os.Signal
	// Done receives each run's report as the run ends; may be nil (see
	// DaemonOptions.Done).
	Done func(*Report)
	// Notify tells the service manager the daemon is ready (once the
	// supervisor serves), alive (while the loop keeps its promise, as
	// the pulling daemon's) and stopping; nil: none.
	Notify *sdnotify.Notifier
	// Executable is the agent's own program: after a run that left
	// another file there (a package upgrade), RunSiteDaemon lets go of
	// everything and returns ErrUpgraded for its caller to re-execute it,
	// as the pulling daemon does (upgrade.go). "": never.
	Executable string

	// afterRun is called after each run (tests).
	afterRun func(r *Report, err error)
}

// RunSiteDaemon runs the masterless daemon until ctx ends, then returns
// nil. A site that fails to compile is logged and changes nothing: the
// host stays as the last good run left it, and its services run on.
func RunSiteDaemon(ctx context.Context, o SiteDaemonOptions) error {
	if o.Site == "" {
		return errors.New("starting the masterless agent: no site directory")
	}
	if o.Noop {
		return errors.New("starting the masterless agent: --noop with --site: a daemon that only checks supervises nothing; use herd apply --noop")
	}
	if fi, err := os.Stat(o.Site); err != nil || !fi.IsDir() {
		return fmt.Errorf("starting the masterless agent: the site %s is not a directory", o.Site)
	}
	if o.LockWait == 0 {
		o.LockWait = 10 * time.Minute
	}
	if o.Debounce <= 0 {
		o.Debounce = 500 * time.Millisecond
	}
	s := o.settings()
	if err := sandbox.Check(s.Root); err != nil {
		return fmt.Errorf("starting the masterless agent: %w", err)
	}
	log := s.Log.With("component", "agent", "site", o.Site)
	s.Log = log
	st, err := OpenState(s.State.String())
	if err != nil {
		return fmt.Errorf("starting the masterless agent: %w", err)
	}
	defer st.Close()
	if msg := st.Recovered(); msg != "" {
		log.Error(msg)
	}

	// The run's supervisor handle: started at the first catalog with a
	// service, kept until the daemon stops.
	var svc resources.Services
	var closeSvc func()
	defer func() {
		if closeSvc != nil {
			closeSvc()
		}
	}()
	services := func(ctx context.Context) resources.Services {
		if svc != nil || o.Services == nil {
			return svc
		}
		var err error
		if svc, closeSvc, err = o.Services(ctx, st); err != nil {
			log.Error("starting the supervisor", "err", err)
			svc, closeSvc = nil, nil
		}
		return svc
	}

	// Like the pulling daemon, own the supervisor from the start, so that
	// herd apply and herd services use this one between runs.
	services(ctx)

	changed := make(chan struct{}, 1)
	stopWatch, err := watchTree(ctx, o.Site, o.Debounce, changed, log)
	if err != nil {
		// Runs still happen on the schedule.
		log.Error("watching the site: changes wait for the next scheduled run", "err", err)
	} else {
		defer stopWatch()
	}

	var exe exeID
	if o.Executable != "" {
		if exe, err = statExe(o.Executable); err != nil {
			log.Warn("the agent's program cannot be watched for upgrades", "path", o.Executable, "err", err)
		}
	}
	upgrading := false
	if err := o.Notify.Ready("masterless: applying " + o.Site); err != nil {
		log.Warn("telling systemd the agent is ready", "err", err)
	}
	defer func() {
		if !upgrading {
			o.Notify.Stopping("stopping: the services keep running")
		}
	}()
	wd := o.Notify.Watchdog()
	wctx, stopWatchdog := context.WithCancel(ctx)
	wdDone := make(chan struct{})
	go func() { defer close(wdDone); wd.Run(wctx) }()
	defer func() { stopWatchdog(); <-wdDone }()
	var tick <-chan time.Time
	if every := wd.Every(); every > 0 {
		t := time.NewTicker(every)
		defer t.Stop()
		tick = t.C
	}

	sched := Schedule{Interval: o.Interval, Splay: o.Splay}
	var state ScheduleState
	timer := time.NewTimer(0) // the first run at once
	defer timer.Stop()
	src := &siteSource{site: o.Site, node: o.Node, secretsKey: o.SecretsKey}
	for {
		wd.Alive(2 * wd.Every())
		select {
		case <-ctx.Done():
			return nil
		case <-tick:
			continue
		case <-timer.C:
		case <-changed:
		case <-o.Hangup:
			log.Info("SIGHUP: running now")
			// systemd's reload waits for READY=1 after RELOADING=1; the
			// run itself reads the site again.
			o.Notify.Reloading("running now")
			o.Notify.Ready("masterless: applying " + o.Site)
		}
		if ctx.Err() != nil {
			return nil
		}
		wd.Alive(s.runBound())
		r, _, err := s.run(ctx, src, runCall{state: st, facts: true, services: services})
		switch {
		case err != nil:
			log.Error("run failed: the host is left as the last run made it", "err", err)
		default:
			log.Info("run done", "run", r.RunID, "version", r.Version,
				"changed", r.Summary.Changed, "failed", r.Summary.Failed, "in_sync", r.Summary.InSync,
				"duration", r.Duration.Round(time.Millisecond))
			if o.Done != nil {
				o.Done(r)
			}
		}
		if o.afterRun != nil {
			o.afterRun(r, err)
		}
		if exe != (exeID{}) {
			if now, err := statExe(o.Executable); err == nil && now != exe {
				// The run is recorded in the history; the deferred closes
				// let go of the supervisor (its services run on) and the
				// state before the caller re-executes.
				log.Info("the agent's program was replaced (a package upgrade): re-executing it, the services left running", "path", o.Executable)
				upgrading = true
				o.Notify.Reloading("re-executing the upgraded agent")
				return fmt.Errorf("%w (%s)", ErrUpgraded, o.Executable)
			}
		}
		releaseMemory()
		state.LastRun, state.Jitter = time.Now(), mrand.Float64()
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(time.Until(sched.Next(time.Now(), state)))
	}
}

// watchTree watches every directory of root but hidden ones (.git: the
// masterless version is the content's digest, not the commit) and sends on
// changed when a change has been followed by debounce of quiet. Sends
// coalesce: changed holds at most one. stop ends the watch.
func watchTree(ctx context.Context, root string, debounce time.Duration, changed chan<- struct{}, log *slog.Logger) (stop func(), err error) {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	addTree := func(dir string) error {
		return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil // a directory removed meanwhile
			}
			if !d.IsDir() {
				return nil
			}
			if strings.HasPrefix(d.Name(), ".") && p != root {
				return filepath.SkipDir
			}
			return fw.Add(p)
		})
	}
	if err := addTree(root); err != nil {
		fw.Close()
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer fw.Close()
		timer := time.NewTimer(time.Hour)
		timer.Stop()
		defer timer.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-fw.Events:
				if !ok {
					return
				}
				if ev.Op&fsnotify.Create != 0 {
					if fi, err := os.Lstat(ev.Name); err == nil && fi.IsDir() && !strings.HasPrefix(filepath.Base(ev.Name), ".") {
						if err := addTree(ev.Name); err != nil {
							log.Warn("watching a new site directory", "dir", ev.Name, "err", err)
						}
					}
				}
				timer.Reset(debounce)
			case err, ok := <-fw.Errors:
				if !ok {
					return
				}
				log.Warn("watching the site", "err", err)
			case <-timer.C:
				select {
				case changed <- struct{}{}:
				default: // a run is already due
				}
			}
		}
	}()
	return func() { cancel(); <-done }, nil
}
