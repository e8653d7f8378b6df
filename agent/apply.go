package agent

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/herdcm/herd/agent/resources"
	"github.com/herdcm/herd/agent/sandbox"
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
	// Select makes the run partial (herd apply --tags, --only).
	Select   catalogs.Selection
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
	// SecretsKey is a copy of the server's secrets key file, which opens
	// the site's secrets; without it a catalog that uses one does not
	// compile, naming the secret.
	SecretsKey string
}

// Apply compiles the site for this host and converges it.
//
// In noop it writes nothing: no history row, no saved content, and on a
// host with no state yet, no state database (the run then has no
// supervisor to ask, and provider-herd services say so).
func Apply(ctx context.Context, o ApplyOptions) (*Report, error) {
	s := o.settings()
	if err := sandbox.Check(s.Root); err != nil {
		return nil, err
	}
	var st *State
	if !o.Noop || fileExists(s.State.DB()) {
		var err error
		if st, err = OpenState(s.State.String()); err != nil {
			return nil, err
		}
		defer st.Close()
		if msg := st.Recovered(); msg != "" {
			s.Log.Error(msg)
		}
	}
	call := runCall{state: st, facts: true}
	var closeServices func()
	switch {
	case o.Noop && st != nil:
		// Noop asks a running daemon's supervisor, or else reads the
		// supervisor's records: it never builds a supervisor of its own,
		// which would take the lock and the socket, and adopt (and restart)
		// what it finds.
		call.services = func(ctx context.Context) resources.Services {
			if c, err := DialServices(ctx, s.State.String(), s.Root); err == nil {
				return c
			}
			v, err := viewServices(ctx, st)
			if err != nil {
				s.Log.Error("reading the services' state", "err", err)
				return nil
			}
			return v
		}
	case o.Services != nil && st != nil:
		call.services = func(ctx context.Context) resources.Services {
			svc, closeSvc, err := o.Services(ctx, st)
			if err != nil {
				s.Log.Error("starting the supervisor", "err", err)
				return nil
			}
			// The run's handle: closed when Apply returns, the services
			// go on running.
			closeServices = closeSvc
			return svc
		}
	}
	defer func() {
		if closeServices != nil {
			closeServices()
		}
	}()
	r, _, err := s.run(ctx, &siteSource{site: o.Site, node: o.Node, secretsKey: o.SecretsKey}, call)
	if err != nil {
		return nil, err
	}
	return r, nil
}

// settings are the run settings of a masterless run.
func (o ApplyOptions) settings() runSettings {
	return runSettings{
		Root: o.Root, State: StateDirOr(o.StateDir, o.Root), Noop: o.Noop, Select: o.Select, Parallel: o.Parallel,
		ResourceTimeout: o.ResourceTimeout, RunTimeout: o.RunTimeout, LockWait: o.LockWait,
		FactsDir: o.FactsDir, SandboxFactsExec: o.SandboxFactsExec, AgentVersion: o.AgentVersion, Log: o.Log, Emit: o.Emit, Types: o.Types,
	}.withDefaults()
}

// siteSource compiles the catalog here, from a site checkout.
type siteSource struct {
	site       string
	node       string // "" picks the name from the facts
	secretsKey string // the server's secrets key file; "" when none
	versions   siteVersions
}

func (src *siteSource) catalog(ctx context.Context, f facts.Facts, mark func(string)) (*sourced, error) {
	node := src.node
	if node == "" {
		node = nodeName(f)
	}
	// Loaded by content digest, then labelled by its git commit when it is
	// a git checkout (see siteVersions): a plain directory spawns no git.
	site, err := catalogs.Load(ctx, src.site, catalogs.LoadOptions{ContentVersion: true})
	if err != nil {
		return nil, err
	}
	site.Version = src.versions.label(ctx, src.site, site.Version)
	opts, seal, err := src.compileOptions()
	if err != nil {
		return nil, err
	}
	cat, err := site.CompileWith(node, f, opts)
	if err != nil {
		return nil, err
	}
	enc, err := cat.Encode()
	if err != nil {
		return nil, err
	}
	mark("compile")
	return &sourced{node: node, cat: cat, digest: catalogs.Digest(enc), files: siteFiles(site, cat), sealKey: seal}, nil
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
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

// siteFiles serves the catalog's static files from the site through its
// confined reader (Site.ReadFile), which checks each against its digest so
// that a file edited, or swapped for a link or a FIFO, after the compile is
// refused rather than shipped or followed.
func siteFiles(site *catalogs.Site, cat *catalogs.Catalog) func(context.Context, string) (io.ReadCloser, error) {
	refs := make(map[string]catalogs.FileRef, len(cat.Files))
	for _, fr := range cat.Files {
		refs[fr.Digest] = fr
	}
	return func(_ context.Context, digest string) (io.ReadCloser, error) {
		fr, ok := refs[digest]
		if !ok {
			return nil, fmt.Errorf("no file with digest %s in this catalog", digest)
		}
		b, err := site.ReadFile(fr)
		if err != nil {
			return nil, fmt.Errorf("serving from the site: %w", err)
		}
		return io.NopCloser(bytes.NewReader(b)), nil
	}
}
