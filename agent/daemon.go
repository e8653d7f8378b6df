package agent

import (
	"cmp"
	"context"
	"crypto/ecdh"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/herdcm/herd/agent/resources"
	"github.com/herdcm/herd/agent/sandbox"
	"github.com/herdcm/herd/api/herdv1"
	"github.com/herdcm/herd/catalogs"
	"github.com/herdcm/herd/facts"
	"github.com/herdcm/herd/sdnotify"
)

// DaemonOptions configure the agent daemon. The node's name is not among
// them: it is the CN of the node's certificate, never a fact.
type DaemonOptions struct {
	// Server is host:port of the server, or of several separated by
	// commas (ParseServers): the agent talks to one at a time, tries
	// them in order and moves to the next when one fails.
	Server string
	// ServerName is the name to verify in every server's certificate;
	// default the host part of each address.
	ServerName string
	Root       string // the host root; default "/"
	// StateDir holds the run lock, the sqlite state (catalog cache,
	// report spool, history) and the file cache; default
	// ROOT/var/lib/herd.
	StateDir string
	// CertDir holds the identity Enroll wrote; default STATE/tls.
	CertDir string
	// Interval is the time between runs when the server names no
	// check-in time (default 30 minutes); Splay adds up to this much at
	// random.
	Interval, Splay time.Duration
	// AuditInterval, when positive, makes the daemon check the host
	// against its cached catalog (noop, no check-in) this long after the
	// last run that checked it, and send that as an audit report: its
	// would-change events are the node's drift. A real run puts the next
	// audit off. 0 (the default): no audit runs.
	AuditInterval time.Duration
	// MinBackoff and MaxBackoff bound the wait before a run retries a
	// failed check-in (defaults 10 seconds and 5 minutes); WatchBackoff is
	// the first wait before the Watch stream reconnects (default 1
	// second). Tests shorten them.
	MinBackoff, MaxBackoff, WatchBackoff time.Duration
	// ConnectWait bounds the wait for a connection before a check-in;
	// past it the server is taken to be away and the cached catalog is
	// applied (default 3 seconds).
	ConnectWait time.Duration
	Noop        bool
	Parallel    int
	// ResourceTimeout bounds one resource; RunTimeout a whole run.
	ResourceTimeout time.Duration
	RunTimeout      time.Duration
	// LockWait is how long a run waits for another run (a masterless
	// herd apply) to finish (default 10 minutes).
	LockWait time.Duration
	// FactsDir is the external facts directory (default under Root).
	FactsDir string
	// SandboxFactsExec runs the executables in a sandbox root's facts
	// directory; under "/" they always run.
	SandboxFactsExec bool
	AgentVersion     string
	// Environment is the environment (site branch) this node asks the
	// server for; "" leaves it to the server. A classification rule on
	// the server wins over it.
	Environment string
	// KeepRuns is how many runs the history keeps (default
	// DefaultKeepRuns).
	KeepRuns int
	Log      *slog.Logger
	// Emit receives each event as it happens; may be nil.
	Emit func(Event)
	// Done receives the report of each run that made one (an apply, a
	// drift repair, an audit) as it ends, after the report is spooled;
	// may be nil. The terminal view prints its summary from it, so that
	// every run of a daemon is summed up as herd apply's is (RunOnce's
	// too, which also returns it).
	Done func(*Report)
	// Services returns the supervisor for provider-herd services, as in
	// ApplyOptions. The daemon calls it once, at the first catalog with a
	// service, and keeps it until it stops, so that services are
	// supervised between runs too.
	Services func(ctx context.Context, st *State) (resources.Services, func(), error)
	// Types overrides the resource types (tests); default a fresh
	// resources.Types() for each run.
	Types map[string]resources.Type
	// Once makes Run do one run and return, without Watch or drift.
	Once bool
	// Select makes the run partial (--tags, --only); only with Once: a
	// daemon converges its whole catalog.
	Select catalogs.Selection

	// Notify tells the service manager (systemd, Type=notify) how the
	// daemon is: READY=1 once the supervisor has adopted the services and
	// serves the control socket, watchdog pings while the run loop keeps
	// its promises (watchdog.go), STOPPING=1 when Run returns. nil: none.
	Notify *sdnotify.Notifier
	// Executable is the path of the agent's own program. When set, the
	// daemon notices after each run that the file there was replaced (a
	// package upgrade), sends the run's report and returns ErrUpgraded
	// from Run, for its caller to re-execute it (upgrade.go). "": never.
	Executable string

	// NodeKey is the node's own X25519 key: it opens the catalog's sealed
	// values in memory just before a resource is checked. Default: the
	// sealing key enrollment made (LoadSealKey of CertDir), whose public
	// half every check-in sends.
	NodeKey *ecdh.PrivateKey
}

// Daemon is the agent's long-running side: it checks in with the server on
// the server's schedule, caches the last good catalog, applies it, keeps
// reports in a spool until the server has them, and runs at once when the
// server releases a new catalog (Watch) or a watched resource drifts.
//
// Every trigger only asks for a run. Triggers coalesce: those that arrive
// during a run make exactly one more run after it, never one each.
type Daemon struct {
	o     DaemonOptions
	runs  runSettings // what every run shares with herd apply
	id    *Identity
	st    *State
	conn  *grpc.ClientConn
	node  herdv1.NodeClient
	files fileCache
	sched Schedule
	log   *slog.Logger
	drift driftWatch
	// seal is the node's sealing key (sealkey.go): its public half goes
	// with every check-in.
	seal *ecdh.PrivateKey

	wake chan struct{} // a trigger is pending (capacity 1)
	sent chan struct{} // a report was spooled (capacity 1)
	// sending is held while the spool is sent: the send loop and an
	// upgrade's last send would otherwise both take the same oldest
	// reports and send them twice.
	sending sync.Mutex

	mu      sync.Mutex
	pending Trigger
	busy    bool           // a run is in progress
	etag    string         // the cached catalog's; the Watch loop reads it
	refused string         // the last catalog refused, so that Watch does not ask for it again
	watched string         // the etag the last Watch event named
	reload  *DaemonOptions // from Hangup, taken by the run loop between runs

	// Owned by the run loop.
	cat           *catalogs.Catalog
	state         ScheduleState
	services      resources.Services
	closeServices func()
	// rehearsed are the etags of the last rehearsals run, so that one the
	// server asks for again before it has the report is not run twice.
	rehearsed []string
	// checked is when the last run that checked the host (a real run or
	// an audit) ended: the next audit is due AuditInterval after it.
	checked time.Time
	// exe is the program file the daemon started from (upgrade.go);
	// upgrading is set once Run stops for a re-exec of a new one.
	exe       exeID
	upgrading bool

	// Tests: runCycle replaces cycle; afterRun is called after each run.
	runCycle func(ctx context.Context, why Trigger) (*Report, cycleResult)
	afterRun func(why Trigger, r *Report, err error)
	// revoked is the check-in's error once the server said this node's
	// certificate is revoked (revoked.go); drift runs then apply nothing.
	revokedErr atomic.Pointer[error]
}

// settings are the run settings of the daemon's runs.
func (o DaemonOptions) settings() runSettings {
	return runSettings{
		Root: o.Root, State: StateDirOr(o.StateDir, o.Root), Noop: o.Noop, Select: o.Select, Parallel: o.Parallel,
		ResourceTimeout: o.ResourceTimeout, RunTimeout: o.RunTimeout, LockWait: o.LockWait,
		FactsDir: o.FactsDir, SandboxFactsExec: o.SandboxFactsExec, AgentVersion: o.AgentVersion, KeepRuns: o.KeepRuns, Log: o.Log, Emit: o.Emit, Types: o.Types, NodeKey: o.NodeKey,
	}.withDefaults()
}

// NewDaemon loads the node's identity and state and prepares the
// connection (made lazily). Close it when done.
func NewDaemon(ctx context.Context, o DaemonOptions) (*Daemon, error) {
	// Nothing under a root another user could have prepared is read or
	// written: its identity, state and files included.
	if err := sandbox.Check(o.Root); err != nil {
		return nil, fmt.Errorf("starting the agent: %w", err)
	}
	if !o.Select.Empty() && !o.Once {
		// A daemon that converged a part of its catalog on every run
		// would let the rest drift unseen.
		return nil, fmt.Errorf("starting the agent: a partial run (%s) needs --once", o.Select)
	}
	if o.LockWait == 0 {
		o.LockWait = 10 * time.Minute
	}
	runs := o.settings()
	o.Root, o.StateDir, o.KeepRuns, o.Log = runs.Root, runs.State.String(), runs.KeepRuns, runs.Log
	if o.CertDir == "" {
		o.CertDir = runs.State.TLS()
	}
	if o.Server == "" {
		return nil, errors.New("starting the agent: no server address")
	}
	id, err := LoadIdentity(o.CertDir)
	if err != nil {
		return nil, fmt.Errorf("starting the agent: %w", err)
	}
	log := o.Log.With("component", "agent", "node", id.Node)
	runs.Log = log
	if left := time.Until(id.NotAfter); left < 0 {
		log.Error("this node's certificate has expired; the server will refuse it", "not_after", id.NotAfter)
	}
	seal, err := LoadSealKey(o.CertDir)
	if err != nil {
		return nil, fmt.Errorf("starting the agent: %w", err)
	}
	// The key that opens the catalog's sealed values is the one whose
	// public half every check-in sends.
	if o.NodeKey == nil {
		o.NodeKey = seal
	}
	runs.NodeKey = o.NodeKey
	st, err := OpenState(o.StateDir)
	if err != nil {
		return nil, fmt.Errorf("starting the agent: %w", err)
	}
	if msg := st.Recovered(); msg != "" {
		log.Error(msg)
	}
	conn, err := dialNode(id, o.Server, o.ServerName, log)
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("starting the agent: %w", err)
	}
	d := &Daemon{
		o: o, runs: runs, id: id, st: st, conn: conn, node: herdv1.NewNodeClient(conn),
		files: fileCache{dir: runs.State.Files()},
		sched: Schedule{Interval: o.Interval, Splay: o.Splay, MinBackoff: o.MinBackoff, MaxBackoff: o.MaxBackoff},
		log:   log,
		seal:  seal,
		wake:  make(chan struct{}, 1),
		sent:  make(chan struct{}, 1),
	}
	d.drift = driftWatch{root: o.Root, log: log, changed: func() { d.Trigger(TriggerDrift) }}
	if o.Executable != "" {
		if d.exe, err = statExe(o.Executable); err != nil {
			log.Warn("the agent's program cannot be watched for upgrades", "path", o.Executable, "err", err)
		}
	}
	cat, etag, ok, err := st.loadCatalog(ctx, id.SigningKey, id.Node)
	switch {
	case err != nil:
		// A cache that no longer verifies is as good as none: the next
		// check-in fetches the catalog again.
		log.Warn("ignoring the cached catalog", "err", err)
	case ok:
		d.cat, d.etag = cat, etag
	}
	return d, nil
}

// Node returns the node's name, from its certificate.
func (d *Daemon) Node() string { return d.id.Node }

// Close releases the connection, the supervisor (its services keep
// running) and the state.
func (d *Daemon) Close() error {
	d.drift.stop()
	if d.closeServices != nil {
		d.closeServices()
		d.closeServices, d.services = nil, nil
	}
	err := d.conn.Close()
	return errors.Join(err, d.st.Close())
}

// Run runs until ctx ends, then returns nil: the run loop, the Watch
// stream and the report sender, each a goroutine that ends with ctx, and
// the drift watches of the cached catalog. With Once it does one run and
// returns its error.
func (d *Daemon) Run(ctx context.Context) error {
	if d.o.Once {
		_, err := d.RunOnce(ctx)
		return err
	}
	if d.o.Services != nil {
		// The daemon owns the state's supervisor for its whole life, so
		// that herd apply and herd services use it rather than their own.
		d.runServices(ctx)
	}
	defer d.drift.stop()
	d.drift.set(ctx, d.etag, d.cat)
	// Ready: every service an earlier agent left is adopted and the
	// control socket answers, so that a unit ordered after this one (or
	// an upgrade waiting for it) finds the services supervised.
	d.notifyReady()
	defer func() {
		if !d.upgrading {
			d.o.Notify.Stopping("stopping: the services keep running")
		}
	}()
	// Reports a previous process left in the spool go out first.
	d.poke()
	g, ctx := errgroup.WithContext(ctx)
	wd := d.o.Notify.Watchdog()
	g.Go(func() error { wd.Run(ctx); return nil })
	g.Go(func() error { return d.runLoop(ctx, wd) })
	g.Go(func() error { return d.watchLoop(ctx) })
	g.Go(func() error { return d.sendLoop(ctx) })
	return g.Wait()
}

// RunOnce does one full run now (check in, apply, report) and sends the
// spool before it returns; not while Run runs. The error is the
// check-in's when the server could not be reached (the cached catalog was
// applied all the same, and the report waits in the spool) or the
// sending's.
func (d *Daemon) RunOnce(ctx context.Context) (*Report, error) {
	r, out := d.cycle(ctx, TriggerManual)
	if out.err != nil {
		return r, out.err
	}
	if _, err := d.sendSpool(ctx); err != nil {
		return r, fmt.Errorf("the report stays spooled: %w", err)
	}
	return r, nil
}

// Trigger asks for a run as soon as the current one (if any) ends. Any
// number of triggers before that run starts make one run.
func (d *Daemon) Trigger(why Trigger) {
	d.mu.Lock()
	d.pending |= why
	d.mu.Unlock()
	select {
	case d.wake <- struct{}{}:
	default: // a wake-up is already due
	}
}

// takePending takes the pending triggers, and marks the daemon busy when
// there were any.
func (d *Daemon) takePending() Trigger {
	d.mu.Lock()
	defer d.mu.Unlock()
	t := d.pending
	d.pending = 0
	d.busy = t != 0
	return t
}

func (d *Daemon) poke() {
	select {
	case d.sent <- struct{}{}:
	default:
	}
}

// alreadyHave says whether the last Watch event named the cached catalog.
func (d *Daemon) alreadyHave() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.watched != "" && d.watched == d.etag
}

func (d *Daemon) currentEtag() (etag, refused string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.etag, d.refused
}

// runLoop runs when the schedule says so or a trigger asks, one run at a
// time.
func (d *Daemon) runLoop(ctx context.Context, wd *sdnotify.Watchdog) error {
	cycle := d.cycle
	if d.runCycle != nil {
		cycle = d.runCycle
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	// While idle the loop comes round every half watchdog interval and
	// promises to again; the watchdog pings only while that holds.
	var tick <-chan time.Time
	if every := wd.Every(); every > 0 {
		t := time.NewTicker(every)
		defer t.Stop()
		tick = t.C
	}
	for {
		wd.Alive(2 * wd.Every())
		next, fire := d.sched.Next(time.Now(), d.state), TriggerTimer
		if audit := NextAudit(d.o.AuditInterval, d.checked); !audit.IsZero() && audit.Before(next) && d.cat != nil {
			next, fire = audit, TriggerAudit
		}
		timer.Reset(time.Until(next))
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
			d.mu.Lock()
			d.pending |= fire
			d.mu.Unlock()
		case <-d.wake:
		case <-tick:
			continue
		}
		if ctx.Err() != nil {
			return nil // select picks at random among ready cases
		}
		why := d.takePending()
		d.takeReload()
		if why == 0 {
			continue // a wake-up whose trigger the last run already served
		}
		if why == TriggerWatch && d.alreadyHave() {
			// The event named the catalog a run took meanwhile (the
			// stream opened while the first run was fetching it).
			d.mu.Lock()
			d.busy = false
			d.mu.Unlock()
			continue
		}
		if why != TriggerAudit {
			// Any other trigger with an audit due makes a real run, which
			// checks the host as well.
			why &^= TriggerAudit
		}
		wd.Alive(d.runs.runBound())
		r, out := cycle(ctx, why)
		d.checked = time.Now()
		releaseMemory()
		if !out.local {
			d.state.LastRun = time.Now()
			d.state.Jitter = mrand.Float64()
			if out.checkinErr != nil {
				d.state.Failures++
				d.state.RetryAfter = retryHint(out.checkinErr)
			} else {
				d.state.Failures, d.state.RetryAfter = 0, 0
				d.state.ServerNext = out.serverNext
			}
			next := d.sched.Next(time.Now(), d.state)
			if out.offline != "" {
				in := time.Until(next).Round(time.Second)
				d.log.Warn(out.offline+"; checking in again in "+in.String(), "server", d.o.Server, "retry_in", in, "etag", d.etag)
			}
			d.log.Debug("next run", "at", next.Format(time.RFC3339), "in", time.Until(next).Round(time.Second))
		}
		if d.exeReplaced() {
			// The run that upgraded the agent (or any run after an
			// upgrade by hand) has ended and its report is spooled.
			if d.afterRun != nil {
				d.afterRun(why, r, out.err)
			}
			return d.upgraded(ctx)
		}
		d.poke()
		if d.afterRun != nil {
			d.afterRun(why, r, out.err)
		}
		d.mu.Lock()
		d.busy = false
		d.mu.Unlock()
	}
}

// cycleResult is what a run tells the schedule.
type cycleResult struct {
	local      bool      // only the cached catalog was applied (drift)
	checkinErr error     // the check-in failed
	serverNext time.Time // the server's next check-in time
	err        error     // the run's error (the check-in's, or the run could not start)
	// offline says, when the check-in failed, what went wrong with the
	// server and what the run did without it; the loop logs it with
	// when it checks in again.
	offline string
}

// cycle is one run of the daemon: the runner with the server as its
// catalog source, then the report into the spool, then the rehearsal the
// check-in brought, if any. A drift-only run skips facts and the check-in.
func (d *Daemon) cycle(ctx context.Context, why Trigger) (*Report, cycleResult) {
	if why == TriggerAudit {
		return d.audit(ctx)
	}
	src := &pullSource{d: d, ctx: ctx, local: why.local() && d.cat != nil}
	if err := d.revokedErr.Load(); err != nil && src.local {
		// A drift trigger would re-apply the cached catalog without
		// asking the server; a revoked node applies nothing.
		return nil, cycleResult{local: true, err: *err}
	}
	r, out := d.runOwn(ctx, why, src)
	if src.rehearsal != nil {
		// After the node's own catalog: a rehearsal never delays it.
		d.rehearse(ctx, src.rehearsal)
	}
	return r, out
}

// audit is an audit run: a noop check of the cached catalog, without
// facts or a check-in, always reported (marked audit), so that the
// server's view of the node's drift follows the host, in sync or not.
// It changes nothing and never touches the schedule of real runs.
func (d *Daemon) audit(ctx context.Context) (*Report, cycleResult) {
	out := cycleResult{local: true}
	if err := d.revokedErr.Load(); err != nil {
		// A revoked node reports nothing to a server that disowned it.
		out.err = *err
		return nil, out
	}
	if d.cat == nil {
		return nil, out
	}
	runs := d.runs
	runs.Noop = true
	src := &pullSource{d: d, ctx: ctx, local: true, audit: true}
	r, _, err := runs.run(ctx, src, runCall{state: d.st, services: d.runServices})
	switch {
	case errors.Is(err, errNothing):
		return nil, out
	case err != nil:
		// A run holding the lock (a herd apply) checks the host anyway.
		d.log.Warn("audit run not started", "err", err)
		out.err = err
		return nil, out
	}
	r.Audit = true
	d.spool(ctx, r)
	d.done(r)
	d.log.Info("audit done", "run", r.RunID, "version", r.Version, "drift", r.Summary.Drift,
		"failed", r.Summary.Failed, "in_sync", r.Summary.InSync, "duration", r.Duration.Round(time.Millisecond))
	return r, out
}

// runOwn runs the node's own catalog and spools the report.
func (d *Daemon) runOwn(ctx context.Context, why Trigger, src *pullSource) (*Report, cycleResult) {
	r, quiet, err := d.runs.run(ctx, src, runCall{state: d.st, facts: !src.local, services: d.runServices})
	out := cycleResult{local: src.local, checkinErr: src.checkinErr, serverNext: src.serverNext, err: src.checkinErr}
	if src.checkinErr != nil && !errors.Is(src.checkinErr, ErrRevoked) {
		trouble := serverTrouble(d.o.Server, src.checkinErr)
		switch {
		case errors.Is(err, errNothing):
			out.offline = trouble + "; there is no cached catalog to apply, so nothing ran"
		case err != nil:
			out.offline = trouble + "; the run did not start either"
		default:
			out.offline = trouble + "; applied the cached catalog instead, and its report waits in the spool"
		}
	}
	switch {
	case errors.Is(err, errNothing):
		return nil, out // nothing to apply and nothing to say
	case err != nil:
		d.log.Error("run not started", "why", why.String(), "err", err)
		out.checkinErr, out.err = err, err
		return nil, out
	case quiet:
		// A drift alarm that found nothing to do was the run's own write
		// (or an edit already undone): not worth a report.
		d.log.Debug("drift check: in sync")
		return r, out
	}
	d.spool(ctx, r)
	d.done(r)
	d.log.Info("run done", "why", why.String(), "run", r.RunID, "version", r.Version,
		"changed", r.Summary.Changed, "failed", r.Summary.Failed, "in_sync", r.Summary.InSync,
		"duration", r.Duration.Round(time.Millisecond))
	return r, out
}

// done hands a finished run's report to DaemonOptions.Done.
func (d *Daemon) done(r *Report) {
	if d.o.Done != nil {
		d.o.Done(r)
	}
}

// spool puts r into the report spool for the sender.
func (d *Daemon) spool(ctx context.Context, r *Report) {
	if dropped, err := d.st.spoolReport(context.WithoutCancel(ctx), r.Proto()); err != nil {
		// A full disk (or a broken state) must not leave the server
		// showing the last green run: the report goes out from memory
		// now, saying why it was not kept.
		d.log.Error("spooling the report: sending it from memory", "run", r.RunID, "err", err)
		d.runs.stateFailed(r, fmt.Errorf("spooling the report: %w", err))
		if err := sendReport(ctx, d.node, r.Proto()); err != nil {
			d.log.Error("the report is lost: it could not be spooled or sent", "run", r.RunID, "err", err)
		}
	} else if dropped > 0 {
		d.log.Warn("the report spool is full: dropped the oldest reports", "dropped", dropped)
	}
}

// pullSource takes the catalog from the server: a check-in, a new
// verified catalog or the cached one, and its files fetched by digest.
// With the server unreachable the cached catalog is applied.
type pullSource struct {
	d     *Daemon
	ctx   context.Context // the daemon's, which outlives the run: drift watches hang on it
	local bool            // apply the cached catalog, without a check-in (drift)
	audit bool            // an audit run: reported even when all is in sync

	// What the check-in told, for the schedule.
	checkinErr error
	serverNext time.Time
	// rehearsal is the one the check-in's answer carried, not verified
	// yet; nil when none.
	rehearsal *herdv1.Rehearsal
}

func (p *pullSource) catalog(ctx context.Context, f facts.Facts, mark func(string)) (*sourced, error) {
	d := p.d
	var problems []Event
	catChanged := false
	if !p.local {
		payload, digest, err := factsPayload(f)
		var resp *herdv1.CheckinResponse
		d.maybeRenew(ctx) // at two thirds of the certificate's life (renew.go)
		if err == nil {
			resp, err = d.checkin(ctx, payload, digest)
		}
		mark("checkin")
		if err != nil {
			p.checkinErr = err
			if errors.Is(err, ErrRevoked) {
				// The server disowned this node: enforcing its old catalog
				// would manage a host nobody manages any more.
				d.log.Error("run refused: this node's certificate is revoked", "err", err)
				d.revokedErr.Store(&err)
				return nil, err
			}
			// Logged by the run loop (cycleResult.offline), once the
			// run is over and the schedule knows when it asks again.
		} else {
			if resp.NextCheckinUnixMs > 0 {
				p.serverNext = time.UnixMilli(resp.NextCheckinUnixMs)
			}
			p.rehearsal = resp.Rehearsal
			if problem, changed := d.takeCatalog(p.ctx, resp); problem != nil {
				problems = append(problems, *problem)
			} else {
				catChanged = changed
			}
		}
	}
	if d.cat == nil && len(problems) == 0 {
		return nil, nil
	}
	out := &sourced{node: d.id.Node, problems: problems, quiet: p.local && !p.audit}
	if cat := d.cat; cat != nil {
		out.cat, out.digest = cat, d.etag
		if !p.local && p.checkinErr == nil {
			if err := fetchFiles(ctx, d.node, d.files, cat); err != nil {
				// Only the resources that need a missing file fail.
				d.log.Warn("some files could not be fetched", "err", err)
			}
			mark("files")
		}
		out.files = d.files.files(cat)
		if catChanged {
			out.converged = func() {
				keep := make(map[string]bool, len(cat.Files))
				for _, fr := range cat.Files {
					keep[fr.Digest] = true
				}
				if err := d.files.gc(keep); err != nil {
					d.log.Warn("cleaning the file cache", "err", err)
				}
			}
		}
	}
	return out, nil
}

// checkin is one check-in: one RPC, or two when the server asks for the
// facts it was not sent. The facts travel in full only when their digest
// differs from the one the server last acknowledged.
func (d *Daemon) checkin(ctx context.Context, payload []byte, digest string) (*herdv1.CheckinResponse, error) {
	acked, err := d.st.setting(ctx, "facts_digest")
	if err != nil {
		return nil, err
	}
	req := &herdv1.CheckinRequest{FactsDigest: digest, CatalogEtag: d.etag, AgentVersion: d.o.AgentVersion, SealPublicKey: d.seal.PublicKey().Bytes(), Environment: d.o.Environment}
	if digest != acked {
		req.FactsJson = payload
	}
	awaitConnection(ctx, d.conn, cmp.Or(d.o.ConnectWait, connectWait))
	resp, err := d.callCheckin(ctx, req)
	if err == nil && resp.Status == herdv1.CheckinResponse_NEED_FACTS && req.FactsJson == nil {
		req.FactsJson = payload
		resp, err = d.callCheckin(ctx, req)
	}
	if err != nil {
		return nil, err
	}
	if resp.Status == herdv1.CheckinResponse_NEED_FACTS {
		return nil, errors.New("checking in: the server asked again for the facts it was just sent")
	}
	if digest != acked {
		if err := d.st.setSetting(ctx, "facts_digest", digest); err != nil {
			return nil, err
		}
	}
	d.placed(ctx, resp.Environment)
	return resp, nil
}

// placed records the environment the server put this node in, and says
// so when it changed or differs from the one asked for: a
// classification rule on the server wins over the agent's setting.
func (d *Daemon) placed(ctx context.Context, env string) {
	if env == "" {
		return
	}
	prev, _ := d.st.setting(ctx, "environment")
	if prev == env {
		return
	}
	if err := d.st.setSetting(ctx, "environment", env); err != nil {
		d.log.Warn("recording the environment", "err", err)
	}
	if d.o.Environment != "" && d.o.Environment != env {
		d.log.Warn("the server placed this node in another environment than the one asked for (classification wins)", "environment", env, "asked", d.o.Environment)
		return
	}
	d.log.Info("environment", "environment", env, "previous", prev)
}

func (d *Daemon) callCheckin(ctx context.Context, req *herdv1.CheckinRequest) (*herdv1.CheckinResponse, error) {
	var trailer metadata.MD
	ctx, cancel := context.WithTimeout(ctx, rpcTimeout)
	defer cancel()
	resp, err := d.node.Checkin(ctx, req, grpc.Trailer(&trailer))
	if err != nil {
		return nil, revoked(rpcError("checking in", err, trailer))
	}
	return resp, nil
}

// takeCatalog acts on a check-in's answer. A new catalog is verified and
// becomes the cached one; one that fails verification is refused, the old
// one is kept, and the returned event says so in the report.
func (d *Daemon) takeCatalog(ctx context.Context, resp *herdv1.CheckinResponse) (problem *Event, changed bool) {
	switch resp.Status {
	case herdv1.CheckinResponse_NEW_CATALOG:
	case herdv1.CheckinResponse_NO_CATALOG:
		d.log.Warn("the server has no catalog for this node; keeping the cached one", "compile_error", resp.CompileError, "etag", d.etag)
		return nil, false
	case herdv1.CheckinResponse_UNCHANGED:
		return nil, false
	default:
		d.log.Warn("unexpected check-in answer; keeping the cached catalog", "status", resp.Status.String())
		return nil, false
	}
	cat, err := acceptCatalog(d.id.SigningKey, d.id.Node, resp.Etag, resp.Catalog, resp.Signature)
	if err == nil {
		err = d.st.saveCatalog(context.WithoutCancel(ctx), d.id.Node, resp.Etag, resp.Catalog, resp.Signature)
	}
	if err != nil {
		kept := "no catalog is cached"
		if d.cat != nil {
			kept = "kept " + d.etag + " (version " + d.cat.Version + ")"
		}
		msg := fmt.Sprintf("refused catalog %s: %v; %s", resp.Etag, err, kept)
		d.log.Error("refused a catalog from the server", "etag", resp.Etag, "err", err, "kept", d.etag)
		d.mu.Lock()
		d.refused = resp.Etag
		d.mu.Unlock()
		return &Event{ID: "herd:catalog", Type: "herd", Status: Failed, Error: msg}, false
	}
	d.log.Info("new catalog", "etag", resp.Etag, "version", cat.Version, "resources", len(cat.Resources))
	d.mu.Lock()
	d.cat, d.etag, d.refused = cat, resp.Etag, ""
	d.mu.Unlock()
	if !d.o.Once {
		d.drift.set(ctx, resp.Etag, cat)
	}
	return nil, true
}

// runServices is the run's supervisor handle: the daemon starts the
// supervisor at the first catalog with a service and keeps it until it
// stops, so that services are supervised between runs too. Without it the
// service resources fail, each saying why; the rest of the host still
// converges.
func (d *Daemon) runServices(ctx context.Context) resources.Services {
	if d.services != nil || d.o.Services == nil {
		return d.services
	}
	svc, closeSvc, err := d.o.Services(ctx, d.st)
	if err != nil {
		d.log.Error("starting the supervisor", "err", err)
		return nil
	}
	d.services, d.closeServices = svc, closeSvc
	return svc
}

// sendLoop sends the spool whenever a run adds to it. A failure leaves the
// reports spooled for the next run's attempt: runs already follow the
// backoff, so the sender needs none of its own.
func (d *Daemon) sendLoop(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-d.sent:
		}
		n, err := d.sendSpool(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			d.log.Warn(serverTrouble(d.o.Server, err)+"; the reports stay spooled until the next run sends them", "sent", n)
		case n > 0:
			d.log.Debug("sent spooled reports", "sent", n)
		}
	}
}

// sendSpool sends the spool, one sender at a time.
func (d *Daemon) sendSpool(ctx context.Context) (int, error) {
	d.sending.Lock()
	defer d.sending.Unlock()
	return sendSpooled(ctx, d.st, d.node, d.log)
}

// watchLoop keeps a Watch stream open, reconnecting with backoff, and asks
// for a run when the server names a catalog other than the cached one.
func (d *Daemon) watchLoop(ctx context.Context) error {
	backoff := Schedule{MinBackoff: cmp.Or(d.o.WatchBackoff, time.Second), MaxBackoff: time.Minute, Interval: d.sched.interval()}
	failures := 0
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		start := time.Now()
		got, err := d.watch(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if got || time.Since(start) > time.Minute {
			failures = 0 // the stream was healthy: start the backoff afresh
		}
		failures++
		wait := backoff.Backoff(failures, retryHint(err), mrand.Float64())
		d.log.Debug("watch stream ended; reconnecting", "err", err, "in", wait.Round(time.Millisecond))
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}
	}
}

func (d *Daemon) watch(ctx context.Context) (got bool, err error) {
	etag, _ := d.currentEtag()
	// Wait for the connection rather than fail: the stream is meant to
	// be open whenever the server is there.
	stream, err := d.node.Watch(ctx, &herdv1.WatchRequest{Etag: etag}, grpc.WaitForReady(true))
	if err != nil {
		return false, rpcError("watching", err, nil)
	}
	var ev herdv1.WatchEvent
	for {
		ev.Reset()
		if err := stream.RecvMsg(&ev); err != nil {
			if errors.Is(err, io.EOF) {
				return got, errors.New("watching: the server ended the stream")
			}
			return got, rpcError("watching", err, stream.Trailer())
		}
		got = true
		d.mu.Lock()
		fresh := ev.Etag != "" && ev.Etag != d.etag && ev.Etag != d.refused
		if fresh {
			d.watched = ev.Etag
		}
		d.mu.Unlock()
		var why Trigger
		if fresh {
			d.log.Info("the server released a new catalog", "etag", ev.Etag, "version", ev.Version)
			why |= TriggerWatch
		}
		if ev.Run {
			// Even with the catalog held: the run's check-in and report
			// are what the server asks for.
			d.log.Info("the server asked for a run")
			why |= TriggerServer
		}
		if why != 0 {
			d.Trigger(why)
		}
	}
}
