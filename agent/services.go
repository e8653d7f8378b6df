package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/herdcm/herd/agent/resources"
	"github.com/herdcm/herd/agent/supervise"
	"github.com/herdcm/herd/catalogs"
)

// Services adapts the supervisor to the service resource type for one host
// root: it resolves the catalog's names (a program, a user) under the
// root, and remembers which catalog spec each running service was started
// with.
type Services struct {
	sup  *supervise.Supervisor
	st   *State
	root string
	lock *superviseLock
	srv  *controlServer

	mu    sync.Mutex
	wants map[string][2]string // name → {catalog digest, supervisor digest}
}

var _ resources.Services = (*Services)(nil)

// NewServices starts a supervisor over st (adopting the services an
// earlier run left running) for the host at root, and serves it on the
// state directory's socket to the other commands of that state. It fails
// with ErrSupervised when another process owns the state's supervisor
// (OpenServices then talks to that one). Close it when the run ends: the
// services keep running.
func NewServices(ctx context.Context, st *State, root string, log *slog.Logger) (*Services, error) {
	return newServices(ctx, st, root, log, false)
}

// OwnServices is NewServices for the daemon: it waits, until ctx ends, for
// a command that owns the supervisor meanwhile to let go, and then owns
// it for as long as it lives.
func OwnServices(ctx context.Context, st *State, root string, log *slog.Logger) (*Services, error) {
	return newServices(ctx, st, root, log, true)
}

func newServices(ctx context.Context, st *State, root string, log *slog.Logger, wait bool) (_ *Services, err error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	lock, err := takeSuperviseLock(ctx, st.dir, wait)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			lock.release()
		}
	}()
	sd := StateDir(st.dir)
	sup, err := supervise.New(ctx, supervise.Options{
		Store:     st.ServiceStore(),
		RecordDir: sd.ServiceRecords(),
		LogDir:    sd.Logs(),
		StateDir:  st.dir,
		Logger:    log,
	})
	if err != nil {
		return nil, err
	}
	s := &Services{sup: sup, st: st, root: root, lock: lock, wants: map[string][2]string{}}
	if err := s.loadWants(ctx); err != nil {
		sup.Close()
		return nil, err
	}
	if s.srv, err = serve(s, log); err != nil {
		sup.Close()
		return nil, err
	}
	return s, nil
}

func (s *Services) loadWants(ctx context.Context) error {
	wants, err := s.st.serviceWants(ctx)
	if err != nil {
		return err
	}
	for name, w := range wants {
		s.wants[name] = w
	}
	return nil
}

// Supervisor returns the underlying supervisor (for `herd services`).
func (s *Services) Supervisor() *supervise.Supervisor { return s.sup }

// Close stops serving and supervising, and lets go of the supervisor lock;
// the services keep running.
func (s *Services) Close() error {
	s.srv.close()
	err := s.sup.Close()
	s.lock.release()
	return err
}

// List returns every known service, sorted by name.
func (s *Services) List(context.Context) ([]supervise.Status, error) { return s.sup.List(), nil }

// Status returns one service, or an error wrapping supervise.ErrUnknown.
func (s *Services) Status(_ context.Context, name string) (supervise.Status, error) {
	st, ok := s.sup.Status(name)
	if !ok {
		return st, fmt.Errorf("service %s: %w", name, supervise.ErrUnknown)
	}
	return st, nil
}

// Logs returns the end of the service's stdout and stderr logs.
func (s *Services) Logs(ctx context.Context, name string) ([]LogTail, error) {
	st, err := s.Status(ctx, name)
	if err != nil {
		return nil, err
	}
	var out []LogTail
	for _, p := range []string{st.Stdout, st.Stderr} {
		text, err := readTail(p, maxLogBytes)
		if err != nil {
			return nil, fmt.Errorf("reading the logs of %s: %w", name, err)
		}
		out = append(out, LogTail{Path: p, Text: text})
	}
	return out, nil
}

// readTail reads the last max bytes of the file at path; "" when it does
// not exist (a service that never wrote).
func readTail(path string, max int64) (string, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	off := fi.Size() - max
	if off < 0 {
		off = 0
	}
	b, err := io.ReadAll(io.NewSectionReader(f, off, fi.Size()-off))
	return string(b), err
}

// Ensure starts the service, or restarts it when its spec changed.
func (s *Services) Ensure(ctx context.Context, want resources.ServiceSpec) (bool, error) {
	spec, err := s.convert(want)
	if err != nil {
		return false, err
	}
	supDigest, err := spec.Digest()
	if err != nil {
		return false, fmt.Errorf("service %s: %w", want.Name, err)
	}
	changed, err := s.sup.Ensure(ctx, spec)
	var exit *supervise.ExitError
	if err != nil && !errors.As(err, &exit) {
		return changed, err
	}
	// A process that died at its start is in backoff with this spec:
	// remember it, so that the next Check reports that failure rather
	// than a changed spec.
	entry := [2]string{want.Digest(), supDigest}
	if dberr := s.st.saveServiceWant(ctx, want.Name, entry); dberr != nil {
		return changed, dberr
	}
	s.mu.Lock()
	s.wants[want.Name] = entry
	s.mu.Unlock()
	return changed, err
}

// Stop stops a service and forgets it.
func (s *Services) Stop(ctx context.Context, name string) error {
	if err := s.sup.Remove(ctx, name); err != nil {
		return err
	}
	if err := s.st.deleteServiceWant(ctx, name); err != nil {
		return err
	}
	s.mu.Lock()
	delete(s.wants, name)
	s.mu.Unlock()
	return nil
}

// Restart restarts a service (a refresh).
func (s *Services) Restart(ctx context.Context, name string) error { return s.sup.Restart(ctx, name) }

// Running says whether name runs, and with which catalog spec: the digest
// of the spec it was ensured with, when the supervisor still runs exactly
// that; otherwise a digest no catalog spec has, so that the service type
// sees a change.
func (s *Services) Running(name string) (resources.ServiceState, bool) {
	st, ok := s.sup.Status(name)
	if !ok {
		return resources.ServiceState{}, false
	}
	s.mu.Lock()
	w, known := s.wants[name]
	s.mu.Unlock()
	digest := "supervisor:" + st.Digest
	if known && w[1] == st.Digest {
		digest = w[0]
	}
	// A service in backoff is still wanted up; the supervisor brings it
	// back. Crash-loop, failed and stopped are not running.
	running := st.State == supervise.StateRunning || st.State == supervise.StateBackoff
	return resources.ServiceState{
		PID: st.PID, SpecDigest: digest, Running: running,
		State: string(st.State), Problem: supervise.Problem(st),
	}, true
}

// convert turns the catalog's spec into the supervisor's, resolving what
// the catalog names under the host root: the program (a package installed
// into a sandbox provides it), the working directory, the user and group
// (from the root's own accounts), and HERD_ROOT for the service to find its
// files.
func (s *Services) convert(w resources.ServiceSpec) (supervise.Spec, error) {
	sandbox := s.root != "" && s.root != "/"
	spec := supervise.Spec{
		Name: w.Name, Argv: append([]string(nil), w.Argv...), Dir: w.Dir,
		Restart: supervise.RestartPolicy(w.Restart), StopTimeout: w.StopTimeout,
		Type: supervise.ServiceType(w.Type), PIDFile: w.PIDFile,
	}
	if spec.Type == supervise.TypeForking {
		// The pid file is the catalog's path, read inside the root.
		spec.Root = rootOrSlash(s.root)
	}
	herdRoot := ""
	if sandbox {
		herdRoot = s.root
		if len(spec.Argv) > 0 {
			if fi, err := os.Stat(filepath.Join(s.root, spec.Argv[0])); err == nil && fi.Mode().IsRegular() {
				spec.Argv[0] = filepath.Join(s.root, spec.Argv[0])
			}
		}
		if spec.Dir != "" {
			spec.Dir = filepath.Join(s.root, spec.Dir)
		} else {
			spec.Dir = s.root
		}
	}
	spec.Env = append([]string{"PATH=" + supervise.DefaultPath, "LANG=C.UTF-8", "HERD_ROOT=" + herdRoot}, w.Env...)
	if w.StopSignal != "" {
		sig := catalogs.SignalNumber(w.StopSignal)
		if sig == 0 {
			return spec, fmt.Errorf("service %s: unknown stop signal %s", w.Name, w.StopSignal)
		}
		spec.StopSignal = sig
	}
	if w.User != "" || w.Group != "" {
		cred, err := s.credential(w.User, w.Group)
		if err != nil {
			return spec, fmt.Errorf("service %s: %w", w.Name, err)
		}
		spec.User = cred
	}
	if h := w.Health; h != nil {
		spec.Health = &supervise.HealthCheck{Exec: h.Exec, HTTP: h.HTTP, TCP: h.TCP, Interval: h.Interval, Timeout: h.Timeout, Retries: h.Retries}
		if sandbox && len(h.Exec) > 0 {
			exec := append([]string(nil), h.Exec...)
			if fi, err := os.Stat(filepath.Join(s.root, exec[0])); err == nil && fi.Mode().IsRegular() {
				exec[0] = filepath.Join(s.root, exec[0])
			}
			spec.Health.Exec = exec
		}
	}
	return spec, nil
}

func (s *Services) credential(user, group string) (*supervise.Credential, error) {
	root := s.root
	if root == "" {
		root = "/"
	}
	cred := &supervise.Credential{}
	if user != "" {
		a, ok, err := resources.LookupUser(root, user)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("user %s does not exist in %s", user, filepath.Join(root, "etc/passwd"))
		}
		cred.UID, cred.GID = uint32(a.ID), uint32(a.GID)
	}
	if group != "" {
		g, ok, err := resources.LookupGroup(root, group)
		if err != nil {
			return nil, err
		}
		if !ok {
			if n, err := strconv.Atoi(group); err == nil {
				cred.GID = uint32(n)
				return cred, nil
			}
			return nil, fmt.Errorf("group %s does not exist in %s", group, filepath.Join(root, "etc/group"))
		}
		cred.GID = uint32(g.ID)
	}
	return cred, nil
}

// recordView answers what a noop run asks about services from the
// supervisor's records in the state, without supervising: it takes no
// lock, serves no socket, and adopts, restarts and writes nothing. Ensure,
// Stop and Restart refuse; noop never calls them.
type recordView struct {
	recs  map[string]supervise.Record
	wants map[string][2]string // name → {catalog digest, supervisor digest}
}

var _ resources.Services = (*recordView)(nil)

// viewServices reads the records and wants of the state in st.
func viewServices(ctx context.Context, st *State) (*recordView, error) {
	recs, err := st.ServiceStore().Load(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the supervisor's records: %w", err)
	}
	wants, err := st.serviceWants(ctx)
	if err != nil {
		return nil, err
	}
	v := &recordView{recs: map[string]supervise.Record{}, wants: wants}
	for _, r := range recs {
		v.recs[r.Name] = r
	}
	return v, nil
}

// Running says what the record of name says, with its process checked to
// be alive: a service whose process died reads as not running, as the
// supervisor would find it.
func (v *recordView) Running(name string) (resources.ServiceState, bool) {
	rec, ok := v.recs[name]
	if !ok {
		return resources.ServiceState{}, false
	}
	digest := "supervisor:" + rec.Digest
	if w, known := v.wants[name]; known && w[1] == rec.Digest {
		digest = w[0]
	}
	st := supervise.Status{Name: rec.Name, State: rec.State, Restarts: rec.Restarts, RetryAt: rec.RetryAt, LastExit: rec.LastExit}
	alive := supervise.Alive(rec)
	if alive {
		st.PID = rec.PID
	}
	running := (rec.State == supervise.StateRunning && alive) || rec.State == supervise.StateBackoff
	return resources.ServiceState{
		PID: st.PID, SpecDigest: digest, Running: running,
		State: string(rec.State), Problem: supervise.Problem(st),
	}, true
}

var errView = errors.New("a noop run changes no service")

// Ensure refuses: a noop run never calls it.
func (v *recordView) Ensure(context.Context, resources.ServiceSpec) (bool, error) {
	return false, errView
}

// Stop refuses: a noop run never calls it.
func (v *recordView) Stop(context.Context, string) error { return errView }

// Restart refuses: a noop run never calls it.
func (v *recordView) Restart(context.Context, string) error { return errView }
