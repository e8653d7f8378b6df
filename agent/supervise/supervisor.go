package supervise

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Errors the callers of a Supervisor branch on.
var (
	// ErrUnknown: no service of that name was ever ensured (or it was
	// removed).
	ErrUnknown = errors.New("unknown service")
	// ErrClosed: the Supervisor was closed.
	ErrClosed = errors.New("supervisor closed")
)

// Defaults of Options, used for its fields left at zero.
const (
	// DefaultCgroupName is the cgroup made under the cgroup2 mount to hold
	// the services' cgroups when Options.CgroupRoot is empty: each state
	// directory gets its own subtree in it, DefaultCgroupName/CgroupScope.
	DefaultCgroupName  = "herd"
	DefaultLogMaxBytes = 10 << 20
	DefaultLogKeep     = 5
	// DefaultLogCheckInterval is how often a service's log sizes are
	// checked for rotation.
	DefaultLogCheckInterval = 10 * time.Second
	// DefaultSettle is Options.Settle's default: long enough for a
	// program that fails on a bad config to do so, short enough not to
	// slow a run that starts a few services.
	DefaultSettle = time.Second
)

// Options configure a Supervisor.
type Options struct {
	// Store keeps the service records across agent restarts. Required.
	Store Store
	// LogDir holds the services' stdout and stderr files. Required; made
	// if missing.
	LogDir string
	// StateDir is the state directory the services belong to (the agent's;
	// LogDir when empty). The default cgroup subtree is derived from its
	// absolute path, so that supervisors over different state directories
	// (a production agent and a sandbox rehearsal) never share a cgroup and
	// never kill each other's services.
	StateDir string
	// CgroupRoot is the cgroup v2 directory under which each service gets
	// a cgroup; it must belong to this state directory alone. Empty means
	// UNIT/services/CgroupScope(StateDir) when the process runs in a
	// cgroup systemd delegated to it (Delegate=yes; New then moves the
	// process into UNIT/agent), DefaultCgroupName/CgroupScope(StateDir)
	// under the cgroup2 mount otherwise, and process groups alone when
	// that is not writable; a root that is set but not usable is an error.
	CgroupRoot string
	// RecordDir, when set, is a directory (made 0700) where the supervisor
	// also keeps each record as a file, NAME.json, written atomically and
	// 0600: New reads it for the services Store has no record of, so
	// that a Store that lost its records (the agent's database moved
	// aside as corrupt) loses no service, those in process groups alone
	// included, which no cgroup tells New of.
	RecordDir string
	// NoCgroups runs services in process groups alone, without cgroups.
	NoCgroups bool
	// Settle is how long Ensure and Restart wait, after they started a
	// process, for the start to be confirmed: the process still runs
	// after Settle, or its health check passed first. A process that exits
	// within it makes them fail with its exit and log tail.
	// DefaultSettle when zero; no wait when negative.
	Settle time.Duration
	// ForkTimeout bounds the start of a forking service: its starter
	// exiting and the daemon's pid file naming a process of the service.
	// DefaultForkTimeout when zero.
	ForkTimeout time.Duration
	// Logger receives the supervisor's logs; none when nil.
	Logger *slog.Logger
	// LogMaxBytes is the size past which a log file is rotated;
	// DefaultLogMaxBytes when zero.
	LogMaxBytes int64
	// LogKeep is how many rotated files are kept per log; DefaultLogKeep
	// when zero, none when negative.
	LogKeep int
	// LogCheckInterval is how often log sizes are checked;
	// DefaultLogCheckInterval when zero.
	LogCheckInterval time.Duration
	// Policy tunes the crash-loop limit and the backoff for every service
	// (Limit, Decay, MinDelay, MaxDelay); its Restart and Count are
	// ignored, each Spec brings its own restart policy.
	Policy Policy
}

// Supervisor keeps services running: it starts them, restarts them when
// they exit, watches their health, rotates their logs and stops them. One
// goroutine per service (its loop) owns that service's process and record;
// the Supervisor routes requests to it. A Supervisor is safe for concurrent
// use.
type Supervisor struct {
	opts       Options
	log        *slog.Logger
	cgroupRoot string // "" when services run in process groups alone
	// cgroupHome is the cgroup subtree of this state directory, even when
	// cgroups are not in use now: a recorded cgroup outside it was not
	// made by this state directory and is never emptied or killed.
	cgroupHome string
	// legacyHome is where services of this state directory had their
	// cgroups before the agent ran in a delegated cgroup
	// (DefaultCgroupName/CgroupScope under the mount), when cgroupHome is
	// now elsewhere: services found there are adopted, never killed, and
	// move to cgroupHome at their next start.
	legacyHome string
	bootID     string

	ctx    context.Context // ends on Close; ends the loops
	cancel context.CancelFunc
	wg     sync.WaitGroup // the loops

	mu     sync.Mutex
	closed bool
	svcs   map[string]*service
}

// service is one service known to the Supervisor.
type service struct {
	name string
	// status is the last state published by the service's loop, read
	// without locks by Status, List and Ensure's fast path.
	status atomic.Pointer[Status]

	// Guarded by Supervisor.mu.
	loop *loop  // nil when no process runs and no restart is pending
	rec  Record // the record as the last loop left it

	// changed is made by a waiter (AwaitHealth) and closed by the next
	// publish of a status: nobody waiting costs nothing per publish.
	wmu     sync.Mutex
	changed chan struct{}
}

// setStatus publishes st and wakes whoever waits for a change.
func (svc *service) setStatus(st *Status) {
	svc.status.Store(st)
	svc.wmu.Lock()
	if svc.changed != nil {
		close(svc.changed)
		svc.changed = nil
	}
	svc.wmu.Unlock()
}

// nextChange returns a channel closed at the next publish of a status.
func (svc *service) nextChange() <-chan struct{} {
	svc.wmu.Lock()
	defer svc.wmu.Unlock()
	if svc.changed == nil {
		svc.changed = make(chan struct{})
	}
	return svc.changed
}

// New returns a Supervisor and adopts the services recorded in opts.Store
// by an earlier one: a recorded process that still runs (same boot, same
// start time) is watched again, one that died meanwhile is restarted as its
// restart policy says, and none is ever started twice. A service the Store
// has no record of is found again from its side record (Options.RecordDir)
// or, failing that, from its populated cgroup in this state directory's
// subtree, adopted, and recorded anew. ctx bounds the loading only; the
// Supervisor runs until Close.
func New(ctx context.Context, opts Options) (*Supervisor, error) {
	if opts.Store == nil {
		return nil, errors.New("new supervisor: Options.Store is nil")
	}
	if opts.LogDir == "" {
		return nil, errors.New("new supervisor: Options.LogDir is empty")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.LogMaxBytes <= 0 {
		opts.LogMaxBytes = DefaultLogMaxBytes
	}
	if opts.LogKeep == 0 {
		opts.LogKeep = DefaultLogKeep
	}
	if opts.LogCheckInterval <= 0 {
		opts.LogCheckInterval = DefaultLogCheckInterval
	}
	if opts.ForkTimeout <= 0 {
		opts.ForkTimeout = DefaultForkTimeout
	}
	if opts.Settle == 0 {
		opts.Settle = DefaultSettle
	}
	if opts.StateDir == "" {
		opts.StateDir = opts.LogDir
	}
	var side *DirStore
	if opts.RecordDir != "" {
		if err := prepareRecordDir(opts.RecordDir); err != nil {
			return nil, fmt.Errorf("new supervisor: %w", err)
		}
		side = NewDirStore(opts.RecordDir)
		opts.Store = mirrorStore{main: opts.Store, side: side}
	}
	log := opts.Logger.With("component", "supervise")
	if err := os.MkdirAll(opts.LogDir, 0o755); err != nil {
		return nil, fmt.Errorf("new supervisor: making log directory: %w", err)
	}
	bootID, err := readBootID()
	if err != nil {
		return nil, fmt.Errorf("new supervisor: %w", err)
	}
	s := &Supervisor{opts: opts, log: log, bootID: bootID, svcs: map[string]*service{}}
	s.cgroupHome = opts.CgroupRoot
	if s.cgroupHome == "" {
		if mnt, err := cgroup2Mount(); err == nil {
			s.cgroupHome = s.defaultCgroupHome(mnt)
		}
	}
	if !opts.NoCgroups {
		err := errors.New("cgroup2 is not mounted")
		if s.cgroupHome != "" {
			_, err = setupCgroupRoot(s.cgroupHome)
		}
		switch {
		case err == nil:
			s.cgroupRoot = s.cgroupHome
			log.Debug("services get cgroups", "root", s.cgroupRoot)
		case opts.CgroupRoot != "":
			return nil, fmt.Errorf("new supervisor: %w", err)
		default:
			log.Info("cgroup v2 is not writable; services run in process groups alone", "err", err)
		}
	}
	recs, err := opts.Store.Load(ctx)
	if err != nil {
		return nil, fmt.Errorf("new supervisor: %w", err)
	}
	// Services whose records Store lost are found again, and their
	// records written anew, before any of them is resumed.
	var found []Record
	if side != nil {
		found = s.fromSide(ctx, side, recs)
	}
	known := map[string]bool{}
	for _, r := range slices.Concat(recs, found) {
		known[r.Name] = true
	}
	found = append(found, s.fromCgroups(known)...)
	for _, r := range found {
		if err := s.opts.Store.Save(ctx, r); err != nil {
			log.Error("saving the record of a service found again", "service", r.Name, "err", err)
		}
	}
	recs = append(recs, found...)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	now := time.Now()
	for _, rec := range recs {
		if err := checkName(rec.Name); err != nil {
			log.Warn("skipping a bad service record", "err", err)
			continue
		}
		if rec.Cgroup != "" && !s.ownsCgroup(rec.Cgroup) {
			// A record from before each state directory had its own
			// subtree, or one edited by hand: that cgroup may hold
			// another root's services, so it is never emptied or killed;
			// the process group stands in for it.
			log.Warn("the service's recorded cgroup is not this state directory's; using its process group", "service", rec.Name, "cgroup", rec.Cgroup)
			rec.Cgroup = ""
		}
		s.resume(now, rec)
	}
	return s, nil
}

// Ensure makes the service run as spec says. It starts a service that is
// not running (stopped, failed or crash-looping: with the same spec the
// crash-loop count is kept, so one more failure is a crash loop again; a
// new spec starts it over), restarts one whose running spec differs, and
// does nothing for one that runs, or waits in backoff, as specified. It
// reports whether it started anything. A start that fails, or a process
// that exits within Options.Settle (an *ExitError), is returned as the
// error and also retried with backoff, as a crash would be.
//
// The no-change case touches neither processes nor /proc: it compares the
// digest of spec with the one the service's loop published.
func (s *Supervisor) Ensure(ctx context.Context, spec Spec) (changed bool, err error) {
	n, err := spec.normalize()
	if err != nil {
		return false, fmt.Errorf("ensuring service: %w", err)
	}
	digest := n.digest()
	s.mu.Lock()
	if svc := s.svcs[n.Name]; svc != nil && svc.loop != nil && !s.closed {
		if st := svc.status.Load(); st.Digest == digest && (st.State == StateRunning || st.State == StateBackoff) {
			s.mu.Unlock()
			return false, nil
		}
	}
	s.mu.Unlock()
	r, err := s.do(ctx, n.Name, command{kind: cmdEnsure, spec: n, digest: digest}, true)
	if err == nil {
		err = r.err
	}
	if err != nil {
		return r.changed, fmt.Errorf("ensuring service %s: %w", n.Name, err)
	}
	return r.changed, nil
}

// Stop stops the service: StopSignal to its process group (to every
// process of its cgroup when it has one), SIGKILL to all of them after
// StopTimeout, and no restart. The service stays known, stopped, until
// Ensure or Restart starts it again. Stopping a stopped service does
// nothing.
func (s *Supervisor) Stop(ctx context.Context, name string) error {
	r, err := s.do(ctx, name, command{kind: cmdStop}, false)
	if err == nil {
		err = r.err
	}
	if err != nil {
		return fmt.Errorf("stopping service %s: %w", name, err)
	}
	return nil
}

// Restart stops the service if it runs and starts it again with its last
// spec. The crash-loop count is kept: a refresh must not make a flapping
// service look fresh. Like Ensure, it fails with an *ExitError when the
// process exits within Options.Settle. It is what a refresh of the service
// resource does.
func (s *Supervisor) Restart(ctx context.Context, name string) error {
	r, err := s.do(ctx, name, command{kind: cmdRestart}, false)
	if err == nil {
		err = r.err
	}
	if err != nil {
		return fmt.Errorf("restarting service %s: %w", name, err)
	}
	return nil
}

// Remove stops the service and forgets it: its record is deleted and its
// cgroup removed. Its log files stay.
func (s *Supervisor) Remove(ctx context.Context, name string) error {
	r, err := s.do(ctx, name, command{kind: cmdRemove}, false)
	if err == nil {
		err = r.err
	}
	if err != nil {
		return fmt.Errorf("removing service %s: %w", name, err)
	}
	return nil
}

// Status returns the state of the service, and false when it is unknown.
func (s *Supervisor) Status(name string) (Status, bool) {
	s.mu.Lock()
	svc := s.svcs[name]
	s.mu.Unlock()
	if svc == nil {
		return Status{}, false
	}
	return svc.status.Load().clone(), true
}

// AwaitHealth waits for the service's first health verdict: it returns
// its status as soon as its health check has decided (healthy or
// unhealthy) or it is not running (stopped, in backoff after a crash, in a
// crash loop, failed), or when ctx ends, with the status as it is then
// (health still unknown). A run that just started or restarted a service
// waits here so that its report carries a real verdict; a running service
// without a health check has none to give, and the wait lasts until ctx
// ends. False when the service is unknown.
func (s *Supervisor) AwaitHealth(ctx context.Context, name string) (Status, bool) {
	s.mu.Lock()
	svc := s.svcs[name]
	s.mu.Unlock()
	if svc == nil {
		return Status{}, false
	}
	for {
		// The channel is taken before the status is read, so that a
		// publish between the two is never missed.
		changed := svc.nextChange()
		st := svc.status.Load()
		if st.State != StateRunning || st.Health != HealthUnknown {
			return st.clone(), true
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return svc.status.Load().clone(), true
		}
	}
}

// List returns the state of every known service, sorted by name.
func (s *Supervisor) List() []Status {
	s.mu.Lock()
	out := make([]Status, 0, len(s.svcs))
	for _, svc := range s.svcs {
		out = append(out, svc.status.Load().clone())
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b Status) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Close stops supervising and leaves the services running, their records
// saved for the next Supervisor to adopt. It waits for the loops to end,
// which takes as long as a stop in progress. Later calls return ErrClosed.
func (s *Supervisor) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	s.closed = true
	s.cancel()
	s.mu.Unlock()
	s.wg.Wait()
	if s.cgroupRoot != "" && s.opts.CgroupRoot == "" {
		// The subtree New made goes when no service cgroup is left in it
		// (the kernel refuses to remove it otherwise), so that sandboxes
		// and tests leave no empty cgroups behind.
		_ = unix.Rmdir(s.cgroupRoot)
		if s.legacyHome != "" {
			_ = unix.Rmdir(s.legacyHome)
		}
	}
	return nil
}

// cmdKind is a request to a service's loop.
type cmdKind int

const (
	cmdEnsure cmdKind = iota
	cmdStop
	cmdRestart
	cmdRemove
)

type command struct {
	kind   cmdKind
	spec   Spec // cmdEnsure: normalized
	digest string
	reply  chan result
}

type result struct {
	changed bool
	err     error
}

// do hands c to the loop of service name, starting a loop when none runs,
// and waits for the answer. create allows a service not yet known.
func (s *Supervisor) do(ctx context.Context, name string, c command, create bool) (result, error) {
	c.reply = make(chan result, 1)
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return result{}, ErrClosed
		}
		svc := s.svcs[name]
		if svc == nil {
			if !create {
				s.mu.Unlock()
				return result{}, ErrUnknown
			}
			svc = &service{name: name, rec: Record{Name: name, State: StateStopped}}
			svc.setStatus(&Status{Name: name, State: StateStopped, Health: HealthUnknown})
			s.svcs[name] = svc
		}
		l := svc.loop
		if l == nil {
			l = s.newLoop(svc, svc.rec)
			l.first = &c
			s.startLoop(l)
			s.mu.Unlock()
			return awaitReply(ctx, c.reply)
		}
		s.mu.Unlock()
		select {
		case l.cmds <- c:
			return awaitReply(ctx, c.reply)
		case <-l.done:
			// The loop ended (its service went idle) before taking c:
			// look again, and start a new loop if needed.
		case <-ctx.Done():
			return result{}, ctx.Err()
		}
	}
}

func awaitReply(ctx context.Context, reply <-chan result) (result, error) {
	select {
	case r := <-reply:
		return r, nil
	case <-ctx.Done():
		// The loop finishes the request anyway; only the wait ends.
		return result{}, ctx.Err()
	}
}

// startLoop runs l. Called with s.mu held and s not closed, so that Close
// waits for it.
func (s *Supervisor) startLoop(l *loop) {
	l.svc.loop = l
	s.wg.Add(1)
	go l.run()
}

// CgroupScope names the cgroup subtree of the services of stateDir: a short
// hash of its absolute path (symlinks resolved where it exists), so that
// two state directories never share one.
func CgroupScope(stateDir string) string {
	p, err := filepath.Abs(stateDir)
	if err != nil {
		p = stateDir
	}
	if r, err := filepath.EvalSymlinks(p); err == nil {
		p = r
	}
	sum := sha256.Sum256([]byte(p))
	return "s-" + hex.EncodeToString(sum[:8])
}

// ownsCgroup reports whether cgroup dir is a service cgroup of this state
// directory's subtree, or of its legacy one.
func (s *Supervisor) ownsCgroup(dir string) bool {
	parent := filepath.Dir(filepath.Clean(dir))
	for _, home := range s.homes() {
		if parent == filepath.Clean(home) {
			return true
		}
	}
	// A delegated agent's subtree, UNIT/services/SCOPE, seen by a
	// supervisor that is not in UNIT (a shell's herd apply while the
	// daemon is stopped): this state directory's too, so its services
	// keep their cgroups rather than fall back to process groups.
	if s.opts.CgroupRoot == "" && s.cgroupHome != "" && filepath.Base(parent) == filepath.Base(s.cgroupHome) {
		services := filepath.Dir(parent)
		return filepath.Base(services) == delegateServices && isDelegated(filepath.Dir(services))
	}
	return false
}

// homes lists the subtrees this state directory's service cgroups may be
// in: cgroupHome, and legacyHome when there is one.
func (s *Supervisor) homes() []string {
	var out []string
	for _, h := range []string{s.cgroupHome, s.legacyHome} {
		if h != "" {
			out = append(out, h)
		}
	}
	return out
}

// defaultCgroupHome is the services' subtree when Options.CgroupRoot is
// empty, under cgroup2 mount mnt: UNIT/services/SCOPE when the process
// runs in a cgroup systemd delegated to it (it then moves itself into
// UNIT/agent; see delegate.go), DefaultCgroupName/SCOPE otherwise, or
// when entering the delegated cgroup fails (logged).
func (s *Supervisor) defaultCgroupHome(mnt string) string {
	scope := CgroupScope(s.opts.StateDir)
	legacy := filepath.Join(mnt, DefaultCgroupName, scope)
	if s.opts.NoCgroups {
		return legacy
	}
	unit, ok := delegatedUnit(mnt)
	if !ok {
		return legacy
	}
	home, err := enterDelegated(unit, scope)
	if err != nil {
		s.log.Warn("not using the cgroup systemd delegated to the agent", "cgroup", unit, "err", err)
		return legacy
	}
	s.log.Debug("services get cgroups in the agent's delegated cgroup", "unit", unit, "root", home)
	s.legacyHome = legacy
	return home
}

// policyFor is the restart policy of spec, tuned by Options.Policy, with
// the given count.
func (s *Supervisor) policyFor(spec Spec, count int) Policy {
	p := s.opts.Policy
	p.Restart = spec.Restart
	p.Count = count
	return p
}
