package agent

import (
	"context"
	"crypto/ecdh"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/herdcm/herd/agent/resources"
	"github.com/herdcm/herd/catalogs"
	"github.com/herdcm/herd/facts"
)

// runSettings are what every run shares, whatever its catalog source:
// herd apply and the daemon fill them from their options and get the same
// defaults.
type runSettings struct {
	Root  string
	State StateDir
	Noop  bool
	// Select makes the run partial: only the selected resources (--tags,
	// --only) and what they require are converged.
	Select   catalogs.Selection
	Parallel int
	// ResourceTimeout bounds one resource, RunTimeout a whole run, and
	// LockWait the wait for another run to finish (0 declines at once).
	ResourceTimeout, RunTimeout, LockWait time.Duration
	FactsDir, AgentVersion                string
	// SandboxFactsExec runs the executables in a sandbox root's facts
	// directory (facts.Options.SandboxExec); under "/" they always run.
	SandboxFactsExec bool
	// KeepRuns is how many runs the history keeps.
	KeepRuns int
	Log      *slog.Logger
	Emit     func(Event)
	Types    map[string]resources.Type
	// NodeKey opens the catalog's sealed values (ConvergeOptions.NodeKey).
	NodeKey *ecdh.PrivateKey
}

// withDefaults fills what was left unset.
func (s runSettings) withDefaults() runSettings {
	if s.Root == "" {
		s.Root = "/"
	}
	if s.State == "" {
		s.State = DefaultStateDir(s.Root)
	}
	if s.KeepRuns == 0 {
		s.KeepRuns = DefaultKeepRuns
	}
	if s.Log == nil {
		s.Log = slog.New(slog.DiscardHandler)
	}
	return s
}

// catalogSource gives a run its catalog: compiled here from a site
// checkout (masterless, siteSource) or taken from the server (pull,
// pullSource).
type catalogSource interface {
	// catalog returns what the run converges. f is this host's facts,
	// nil when the run skipped them; mark ends a phase of the run's
	// timings. A nil result means nothing to converge and nothing to say.
	catalog(ctx context.Context, f facts.Facts, mark func(phase string)) (*sourced, error)
}

// sourced is what a catalog source hands the run.
type sourced struct {
	// sealKey opens the catalog's sealed values, when a masterless
	// compile sealed them to a key of this run (nil: the node's own key).
	sealKey *ecdh.PrivateKey
	node    string
	cat     *catalogs.Catalog // nil: only problems to report
	digest  string            // the catalog's etag
	// files serves the catalog's static files by digest.
	files func(context.Context, string) (io.ReadCloser, error)
	// problems are events the source adds to the report (a refused
	// catalog).
	problems []Event
	// quiet: a run that finds everything in sync makes no report (a drift
	// alarm raised by the run's own write).
	quiet bool
	// converged is called after the catalog was converged.
	converged func()
}

// runCall is one run's inputs beside its source.
type runCall struct {
	// state is nil only for a noop run on a host that has none yet.
	state *State
	// facts: collect them (a drift run of the cached catalog does not).
	facts bool
	// services returns the run's supervisor handle: the daemon keeps one
	// for its whole life, herd apply starts one for the run. Nil, or nil
	// returned: service resources fail, each saying why.
	services func(ctx context.Context) resources.Services
}

// errNothing is run's answer when the source had nothing to converge and
// nothing to say.
var errNothing = errors.New("nothing to converge")

// run is the one run pipeline of herd apply and the daemon: the run lock,
// facts, the source's catalog, convergence, the report, and the report
// recorded in the history (never in noop). quiet says the report was not
// recorded because the run found nothing worth one.
func (s runSettings) run(ctx context.Context, src catalogSource, call runCall) (r *Report, quiet bool, err error) {
	start := time.Now()
	phases := map[string]time.Duration{}
	last := start
	mark := func(name string) {
		now := time.Now()
		phases[name] += now.Sub(last)
		last = now
	}
	if s.RunTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.RunTimeout)
		defer cancel()
	}
	// A noop run writes nothing, the lock file included: it waits on the
	// lock only where a run made one.
	take := AcquireLock
	if s.Noop {
		take = acquireNoopLock
	}
	lock, err := take(ctx, s.State.String(), s.LockWait)
	if err != nil {
		return nil, false, err
	}
	defer lock.Release()
	if call.state != nil {
		// Under the lock: no other run is writing these.
		if err := call.state.sweepIncoming(); err != nil {
			s.Log.Warn("removing temporary files a killed run left", "err", err)
		}
	}
	mark("lock")

	var f facts.Facts
	if call.facts {
		var ferr error
		f, ferr = facts.Collect(ctx, facts.Options{Root: s.Root, ExternalDir: s.FactsDir, SandboxExec: s.SandboxFactsExec, AgentVersion: s.AgentVersion})
		if ferr != nil {
			s.Log.Warn("some facts could not be collected", "err", ferr)
		}
		mark("facts")
	}
	got, err := src.catalog(ctx, f, mark)
	if err != nil {
		return nil, false, err
	}
	if got == nil {
		return nil, false, errNothing
	}

	var events []Event
	var health []ServiceHealth
	version := ""
	if got.cat != nil {
		version = got.cat.Version
		var content resources.ContentStore
		if call.state != nil {
			content = call.state
		}
		// The host sees the whole catalog (a purged directory keeps what
		// any resource manages); the run converges the selection.
		cat := got.cat
		if !s.Select.Empty() {
			if cat, err = cat.Select(s.Select); err != nil {
				return nil, false, err
			}
		}
		h := newRunHost(s.Root, content, got.files, got.cat, s.Log)
		if call.services != nil && hasType(cat, "service") {
			h.Services = call.services(ctx)
		}
		key := s.NodeKey
		if got.sealKey != nil {
			key = got.sealKey // a masterless compile sealed to this run's key
		}
		events = Converge(ctx, h, cat, ConvergeOptions{
			Noop: s.Noop, Parallel: s.Parallel, ResourceTimeout: s.ResourceTimeout, Types: s.Types, Emit: s.Emit, NodeKey: key,
		})
		mark("converge")
		if h.Services != nil {
			// Before the report, so that a rollout reads the verdict on
			// what this run started, not the state before it.
			if health = servicesHealth(ctx, h.Services, cat, events, s.Noop); health != nil {
				redactHealth(health, cat, key)
				mark("health")
			}
		}
		if got.converged != nil {
			got.converged()
		}
	}
	events = append(events, got.problems...)

	r = &Report{
		RunID: NewRunID(), Node: got.node, Version: version, CatalogDigest: got.digest, Noop: s.Noop,
		Started: start, Duration: time.Since(start), Phases: phases, Events: events, Services: health,
		Partial: !s.Select.Empty(),
	}
	for _, e := range events {
		r.Summary.add(e)
	}
	r.bound()
	if got.quiet && r.Summary.Changed == 0 && r.Summary.Failed == 0 && r.Summary.Skipped == 0 && r.Summary.Unknown == 0 {
		return r, true, nil
	}
	if s.Noop || call.state == nil {
		return r, false, nil // noop writes nothing, the history included
	}
	// The history must be written even when the run was interrupted: use
	// a context the interruption did not cancel.
	wctx := context.WithoutCancel(ctx)
	if err := call.state.RecordRun(wctx, r); err != nil {
		s.Log.Error("recording the run", "err", err)
		s.stateFailed(r, fmt.Errorf("recording the run: %w", err))
	} else if err := call.state.TrimRuns(wctx, s.KeepRuns); err != nil {
		s.Log.Warn("trimming the run history", "err", err)
	}
	if err := call.state.TrimBackups(wctx, KeepBackups); err != nil {
		s.Log.Warn("trimming backups", "err", err)
	}
	return r, false, nil
}

// stateFailed marks r failed because the state could not keep it, and
// shows the event as the run's own events are shown.
func (s runSettings) stateFailed(r *Report, err error) {
	if e, added := r.stateFailed(err); added && s.Emit != nil {
		s.Emit(e)
	}
}

// newRunHost builds the host a run converges: commands run under root,
// replaced contents go to content (nil in a noop run without state),
// static files come from files.
func newRunHost(root string, content resources.ContentStore, files func(context.Context, string) (io.ReadCloser, error), cat *catalogs.Catalog, log *slog.Logger) *resources.Host {
	return &resources.Host{
		Root: root,
		Run: func(ctx context.Context, c resources.Cmd) (resources.Result, error) {
			return resources.RunCommand(ctx, root, c)
		},
		Content: content,
		Files:   files,
		Catalog: cat,
		Log:     log,
	}
}

// releaseMemory hands the memory a run used back to the system once it
// is over. A daemon runs every half hour or so and idles in between, and
// Go's runtime returns freed pages only gradually: without this the
// agent would sit idle on the garbage of its last run (about 4 MiB of a
// 200-resource run). One collection per run is cheap at that rate.
func releaseMemory() { debug.FreeOSMemory() }
