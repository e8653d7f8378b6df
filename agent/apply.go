package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/herdcm/herd/agent/resources"
	"github.com/herdcm/herd/catalogs"
	"github.com/herdcm/herd/facts"
)

// ApplyOptions configure a masterless run: compile a site locally and
// converge this host, like `puppet apply`.
type ApplyOptions struct {
	Site string // the site directory
	Node string // the node name; default: this host's fqdn, else its hostname
	Root string // the host root; default "/"
	// StateDir holds the run lock, the sqlite state and saved contents;
	// default ROOT/var/lib/herd.
	StateDir string
	Noop     bool
	Parallel int
	// ResourceTimeout bounds one resource; RunTimeout the whole run.
	ResourceTimeout time.Duration
	RunTimeout      time.Duration
	// LockWait is how long to wait for another run to finish; 0 declines
	// at once.
	LockWait time.Duration
	// FactsDir is the external facts directory (default under Root).
	FactsDir     string
	AgentVersion string
	Log          *slog.Logger
	// Emit receives each event as it happens; may be nil.
	Emit func(Event)
	// SandboxFactsExec runs the executables in a sandbox root's facts
	// directory (facts.Options.SandboxExec); under "/" they always run.
	SandboxFactsExec bool
	// Services returns the supervisor for provider-herd services. It is
	// called only when the catalog has a service, so that a run without
	// one pays nothing for it.
	Services func(ctx context.Context, st *State) (resources.Services, func(), error)
	// Types overrides the resource types (tests); default resources.Types().
	Types map[string]resources.Type
}

// Apply compiles the site for this host and converges it.
func Apply(ctx context.Context, o ApplyOptions) (*Report, error) {
	start := time.Now()
	phases := map[string]time.Duration{}
	mark := func(name string, since time.Time) time.Time {
		now := time.Now()
		phases[name] = now.Sub(since)
		return now
	}
	if o.Root == "" {
		o.Root = "/"
	}
	if o.StateDir == "" {
		o.StateDir = filepath.Join(o.Root, "var/lib/herd")
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.RunTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.RunTimeout)
		defer cancel()
	}
	lock, err := AcquireLock(ctx, o.StateDir, o.LockWait)
	if err != nil {
		return nil, err
	}
	defer lock.Release()
	st, err := OpenState(o.StateDir)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	t := mark("lock", start)

	f, ferr := facts.Collect(ctx, facts.Options{Root: o.Root, ExternalDir: o.FactsDir, SandboxExec: o.SandboxFactsExec, AgentVersion: o.AgentVersion})
	if ferr != nil {
		o.Log.Warn("some facts could not be collected", "err", ferr)
	}
	node := o.Node
	if node == "" {
		node = nodeName(f)
	}
	t = mark("facts", t)

	// The version is the content digest: masterless runs happen on every
	// host, and asking git (two child processes) would cost more than the
	// whole no-change run.
	site, err := catalogs.Load(ctx, o.Site, catalogs.LoadOptions{ContentVersion: true})
	if err != nil {
		return nil, err
	}
	cat, err := site.Compile(node, f)
	if err != nil {
		return nil, err
	}
	enc, err := cat.Encode()
	if err != nil {
		return nil, err
	}
	t = mark("compile", t)

	h := newRunHost(o.Root, st, siteFiles(o.Site, cat), cat, o.Log)
	if o.Services != nil && hasType(cat, "service") {
		// Without a supervisor the service resources fail, each saying
		// why; the rest of the host still converges.
		svc, closeSvc, err := o.Services(ctx, st)
		if err != nil {
			o.Log.Error("starting the supervisor", "err", err)
		} else {
			defer closeSvc()
			h.Services = svc
		}
	}
	events := Converge(ctx, h, cat, ConvergeOptions{
		Noop: o.Noop, Parallel: o.Parallel, ResourceTimeout: o.ResourceTimeout, Types: o.Types, Emit: o.Emit,
	})
	mark("converge", t)

	r := &Report{
		RunID: NewRunID(), Node: node, Version: cat.Version, CatalogDigest: catalogs.Digest(enc), Noop: o.Noop,
		Started: start, Duration: time.Since(start), Phases: phases, Events: events,
	}
	for _, e := range events {
		r.Summary.add(e)
	}
	// The history write must happen even when the run was interrupted:
	// use a context that the interruption did not cancel.
	if err := st.RecordRun(context.WithoutCancel(ctx), r); err != nil {
		return r, err
	}
	return r, nil
}

// nodeName picks a masterless node's name from its facts.
func nodeName(f facts.Facts) string {
	for _, k := range []string{"fqdn", "hostname"} {
		if v, ok := f.Lookup(k); ok {
			if s, ok := v.(string); ok && catalogs.ValidNodeName(s) == nil {
				return s
			}
		}
	}
	h, _ := os.Hostname()
	return h
}

func hasType(cat *catalogs.Catalog, typ string) bool {
	for i := range cat.Resources {
		if cat.Resources[i].Type == typ {
			return true
		}
	}
	return false
}

// siteFiles serves the catalog's static files from the site directory,
// checking each against its digest so that a file edited after the compile
// is refused rather than shipped under the wrong digest.
func siteFiles(site string, cat *catalogs.Catalog) func(context.Context, string) (io.ReadCloser, error) {
	paths := make(map[string]string, len(cat.Files))
	for _, fr := range cat.Files {
		paths[fr.Digest] = fr.Path
	}
	return func(_ context.Context, digest string) (io.ReadCloser, error) {
		p, ok := paths[digest]
		if !ok {
			return nil, fmt.Errorf("no file with digest %s in this catalog", digest)
		}
		b, err := os.ReadFile(filepath.Join(site, filepath.FromSlash(p)))
		if err != nil {
			return nil, fmt.Errorf("reading %s from the site: %w", p, err)
		}
		if catalogs.Digest(b) != digest {
			return nil, errors.New(p + " changed in the site since the catalog was compiled; run again")
		}
		return io.NopCloser(bytes.NewReader(b)), nil
	}
}
