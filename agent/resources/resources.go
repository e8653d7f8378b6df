package resources

import (
	"context"
	"io"
	"log/slog"
	"syscall"
	"time"

	"github.com/herdcm/herd/catalogs"
)

// Type checks and converges one kind of resource.
type Type interface {
	// Check reads the host and says how it differs from want. It never
	// changes the host. A plan with no changes means in sync.
	Check(ctx context.Context, h *Host, want *catalogs.Resource) (*Plan, error)
	// Apply makes the host match p. The engine calls it only for a
	// non-empty plan, never in noop, and calls Check again afterwards: a
	// plan then with any change not marked Converges is a failure ("did
	// not converge").
	Apply(ctx context.Context, h *Host, p *Plan) error
}

// Refresher is a Type whose resources react to a notification: a service
// restarts, a refreshonly exec runs.
type Refresher interface {
	Refresh(ctx context.Context, h *Host, r *catalogs.Resource) error
}

// Watcher is a Type that can report drift as it happens (a file edited by
// hand). WatchTarget says which host path to watch for r; the daemon
// watches the targets of all its resources with one DriftWatcher (one
// inotify instance, one watch per directory) and answers a change with a
// full check, never a partial one.
type Watcher interface {
	WatchTarget(h *Host, r *catalogs.Resource) (WatchTarget, error)
}

// Action is what a Change does to its attribute.
type Action int

// The actions.
const (
	Create Action = iota + 1
	Update
	Delete
)

func (a Action) String() string {
	switch a {
	case Create:
		return "create"
	case Update:
		return "update"
	case Delete:
		return "delete"
	}
	return "unknown"
}

// Change is one difference between the host and the catalog, readable as
// it stands: "mode 0600 → 0644", or a unified diff for content.
type Change struct {
	Attr   string `json:"attr"`
	From   string `json:"from,omitempty"`
	To     string `json:"to,omitempty"`
	Diff   string `json:"diff,omitempty"` // unified diff, for file content
	Action Action `json:"action"`
	// Sensitive changes never show their values (From, To and Diff are
	// left empty), in events, reports, logs or metrics.
	Sensitive bool `json:"sensitive,omitempty"`
	// Converges marks a change whose successful Apply is convergence: the
	// host keeps no state a Check could compare (an exec without guards
	// runs on every run). The engine's re-check after Apply does not hold
	// such a change against the resource; every other change still there
	// is "did not converge".
	Converges bool `json:"-"`
}

// Plan is what Apply would do to make one resource match its catalog.
type Plan struct {
	Resource *catalogs.Resource
	Changes  []Change
	// State is private to the Type: what Check learned that Apply needs
	// (a file's current digest, a package's installed version).
	State any
	// Output is what Apply's commands printed (an exec's output, a failed
	// dpkg's message), capped; the engine puts it in the event.
	Output string
}

// InSync reports whether the plan has nothing to do.
func (p *Plan) InSync() bool { return p == nil || len(p.Changes) == 0 }

// Host is the machine a run converges, and the tools types use on it.
type Host struct {
	// Root is the host root: "/" in production, a sandbox directory in
	// tests, `herd up` and rehearsals. Every path is under it.
	Root string
	// Run runs a command (never through a shell) and waits for it; a
	// timeout kills its whole process group.
	Run func(ctx context.Context, c Cmd) (Result, error)
	// Content keeps replaced file contents, by digest, so that nothing a
	// run overwrites is lost (`herd backups`).
	Content ContentStore
	// Files returns the content of a static file the catalog ships, by
	// digest (from the site in masterless apply, from the server otherwise).
	Files func(ctx context.Context, digest string) (io.ReadCloser, error)
	// Services is the supervisor behind provider "herd" services.
	Services Services
	// Catalog is the whole catalog being applied, for types that must
	// know their siblings (a purged directory keeps its managed entries).
	Catalog *catalogs.Catalog
	Log     *slog.Logger
}

// Cmd is a command to run.
type Cmd struct {
	Argv    []string
	Env     []string // KEY=VALUE, added to a minimal environment
	Dir     string   // working directory; the host root when empty
	User    string   // run as this user (name or uid); the agent's user when empty
	Timeout time.Duration
	Stdin   []byte
}

// Result is how a command ended.
type Result struct {
	ExitCode int            // -1 when a signal ended it
	Signal   syscall.Signal // the signal that ended it, if one did
	Output   []byte         // stdout and stderr interleaved, capped
	Duration time.Duration
}

// ContentStore keeps file contents by digest.
type ContentStore interface {
	// Save stores r's content under the given path's name and returns its
	// digest ("sha256:…").
	Save(ctx context.Context, path string, r io.Reader) (digest string, err error)
}

// Services is what the service type needs of the supervisor.
type Services interface {
	Ensure(ctx context.Context, s ServiceSpec) (changed bool, err error)
	Stop(ctx context.Context, name string) error
	Restart(ctx context.Context, name string) error
	Running(name string) (ServiceState, bool)
}

// ServiceSpec is a supervised service as the catalog wants it, defaults
// filled in. Paths and names are the catalog's: the Services
// implementation places them on the host root as RunCommand does (argv[0]
// and Dir under a sandbox root, HERD_ROOT, User and Group resolved in the
// root's own accounts).
type ServiceSpec struct {
	Name        string
	Argv        []string
	Env         []string
	Dir         string
	User        string
	Group       string
	Restart     string // always, on-failure, never
	StopSignal  string
	StopTimeout time.Duration
	Health      *HealthSpec
	// Type is "" (the program stays in the foreground) or "forking" (it
	// starts a daemon and exits 0; PIDFile, a path in the root, names the
	// daemon).
	Type    string
	PIDFile string
}

// HealthSpec is a service's health check.
type HealthSpec struct {
	Exec     []string
	HTTP     string
	TCP      string
	Interval time.Duration
	Timeout  time.Duration
	Retries  int
}

// ServiceState is what the supervisor says of a running service.
type ServiceState struct {
	PID int
	// SpecDigest is the ServiceSpec.Digest of the spec it runs, to detect
	// a changed spec; empty when unknown (a changed spec, then).
	SpecDigest string
	// Running is true while the supervisor keeps it running, including
	// between a crash and its restart (backoff), when Ensure does nothing.
	Running bool
	// State is the supervisor's word for it: running, stopped, backoff,
	// crash-loop or failed.
	State string
	// Problem, set when the service should run but does not (in backoff,
	// in a crash loop, failed), says so with its last exit and the last
	// lines of its log: a run reports it as the resource's failure.
	Problem string
}
