package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/herdcm/herd/agent/resources"
	"github.com/herdcm/herd/agent/supervise"
)

// One supervisor per state directory. Its owner (the daemon, for its whole
// life, or a CLI command when no daemon runs) holds a kernel lock on
// STATE/supervise.lock and serves STATE/agent.sock; every other command of
// that state directory (herd apply, herd services) is a client of that
// socket, so that no two supervisors ever watch and restart the same
// process. OpenServices picks the role.

// Files of the supervisor's owner in the state directory.
const (
	SuperviseLockFile = "supervise.lock"
	ControlSocketFile = "agent.sock"
)

// ErrSupervised is returned by NewServices when another process (the
// daemon, or another command) supervises the services of the state
// directory.
var ErrSupervised = errors.New("another herd process supervises this state directory's services")

// ServiceControl is what the CLI and a run need of the services of one state
// directory: the service resource's Services, and what `herd services`
// shows. *Services (the owner) and *ServiceClient (over the owner's socket)
// implement it.
type ServiceControl interface {
	resources.Services
	// List returns every known service, sorted by name.
	List(ctx context.Context) ([]supervise.Status, error)
	// Status returns one service; an error wrapping supervise.ErrUnknown
	// when it is not known.
	Status(ctx context.Context, name string) (supervise.Status, error)
	// Logs returns the end (at most maxLogBytes of each) of the service's
	// stdout and stderr logs.
	Logs(ctx context.Context, name string) ([]LogTail, error)
	// Close lets go: an owner stops supervising (the services keep
	// running) and serving; a client just hangs up.
	Close() error
}

// LogTail is the end of one log file of a service.
type LogTail struct {
	Path string `json:"path"`
	Text string `json:"text"`
}

// maxLogBytes bounds what Logs returns of each log file.
const maxLogBytes = 64 << 10

var (
	_ ServiceControl = (*Services)(nil)
	_ ServiceControl = (*ServiceClient)(nil)
)

// OpenServices returns the services of the state in st for host root: the
// running owner's over its socket when there is one, else a supervisor of
// its own (which then serves the socket until Close).
func OpenServices(ctx context.Context, st *State, root string, log *slog.Logger) (ServiceControl, error) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		s, err := NewServices(ctx, st, root, log)
		if err == nil {
			return s, nil
		}
		if !errors.Is(err, ErrSupervised) {
			return nil, err
		}
		c, derr := DialServices(ctx, st.dir, root)
		if derr == nil {
			return c, nil
		}
		// The owner is starting (no socket yet) or just left (lock about
		// to be free): look again, a bounded time.
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%w, but its socket does not answer: %w", ErrSupervised, derr)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// superviseLock is the owner's flock on STATE/supervise.lock.
type superviseLock struct{ f *os.File }

// takeSuperviseLock takes the supervisor lock of dir; with wait it retries
// until ctx ends, without it it fails with ErrSupervised at once.
func takeSuperviseLock(ctx context.Context, dir string, wait bool) (*superviseLock, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("taking the supervisor lock: %w", err)
	}
	path := StateDir(dir).SuperviseLock()
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("taking the supervisor lock: %w", err)
	}
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return &superviseLock{f: f}, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("taking the supervisor lock %s: %w", path, err)
		}
		if !wait {
			f.Close()
			return nil, fmt.Errorf("%w (%s)", ErrSupervised, path)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waiting for the supervisor lock %s: %w", path, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (l *superviseLock) release() { l.f.Close() }

// controlServer serves the owner's Services on STATE/agent.sock.
type controlServer struct {
	svc   *Services
	ln    *net.UnixListener
	path  string
	owner uint32 // the uid that may connect besides root
	log   *slog.Logger
	ctx   context.Context
	stop  context.CancelFunc
	wg    sync.WaitGroup
}

// serve starts serving svc on the socket of its state directory. The
// caller holds the supervisor lock, so a socket file left there is stale.
func serve(svc *Services, log *slog.Logger) (*controlServer, error) {
	path := StateDir(svc.st.dir).ControlSocket()
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("serving the supervisor: %s exists and is not a socket", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("serving the supervisor: removing the stale %s: %w", path, err)
		}
	}
	// Nobody else may connect in the moment between bind and chmod: the
	// socket is made 0600 through the umask, and peers are checked anyway.
	addr, done, err := socketAddr(path)
	if err != nil {
		return nil, fmt.Errorf("serving the supervisor: %w", err)
	}
	old := unix.Umask(0o177)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: addr, Net: "unix"})
	unix.Umask(old)
	done()
	if err != nil {
		return nil, fmt.Errorf("serving the supervisor: %w", err)
	}
	// The listener's own name may be a /proc/self/fd alias: remove the
	// socket by its real path on close.
	ln.SetUnlinkOnClose(false)
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("serving the supervisor: %w", err)
	}
	cs := &controlServer{svc: svc, ln: ln, path: path, owner: uint32(os.Geteuid()), log: log}
	cs.ctx, cs.stop = context.WithCancel(context.Background())
	cs.wg.Add(1)
	go cs.accept()
	return cs, nil
}

func (cs *controlServer) close() {
	cs.stop()
	cs.ln.Close()
	cs.wg.Wait()
	_ = os.Remove(cs.path)
}

// maxSunPath is the room for a socket's path in struct sockaddr_un.
const maxSunPath = 107

// socketAddr returns the name to bind or dial the socket at path by. A path
// too long for a sockaddr_un (a sandbox deep in a build tree) is reached
// through /proc/self/fd and a descriptor of its directory; done closes it.
func socketAddr(path string) (addr string, done func(), err error) {
	if len(path) <= maxSunPath {
		return path, func() {}, nil
	}
	fd, err := unix.Open(filepath.Dir(path), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", nil, fmt.Errorf("opening the directory of %s: %w", path, err)
	}
	addr = fmt.Sprintf("/proc/self/fd/%d/%s", fd, filepath.Base(path))
	if len(addr) > maxSunPath {
		unix.Close(fd)
		return "", nil, fmt.Errorf("socket path %s is too long", path)
	}
	return addr, func() { unix.Close(fd) }, nil
}

func (cs *controlServer) accept() {
	defer cs.wg.Done()
	for {
		c, err := cs.ln.AcceptUnix()
		if err != nil {
			if cs.ctx.Err() == nil {
				cs.log.Error("accepting on the supervisor socket", "err", err)
			}
			return
		}
		cs.wg.Add(1)
		go func() {
			defer cs.wg.Done()
			defer c.Close()
			if err := cs.handle(c); err != nil {
				cs.log.Warn("a supervisor socket request", "err", err)
			}
		}()
	}
}

// peerUID reads the uid of the process at the other end of c.
func peerUID(c *net.UnixConn) (uint32, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := rc.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, err
	}
	if cerr != nil {
		return 0, cerr
	}
	return cred.Uid, nil
}

// checkPeer admits root and the uid that owns the socket: a service's spec
// is a command the owner runs, so anyone else asking is refused.
func checkPeer(uid, owner uint32) error {
	if uid == 0 || uid == owner {
		return nil
	}
	return fmt.Errorf("uid %d may not use the supervisor socket (only root and uid %d)", uid, owner)
}

// controlRequest is one request on the socket: one JSON object, one line.
type controlRequest struct {
	Op   string                 `json:"op"` // list, status, running, ensure, stop, restart, logs
	Root string                 `json:"root"`
	Name string                 `json:"name,omitempty"`
	Spec *resources.ServiceSpec `json:"spec,omitempty"`
}

// controlResponse answers it.
type controlResponse struct {
	Error string `json:"error,omitempty"`
	// Unknown says the error is supervise.ErrUnknown.
	Unknown  bool                    `json:"unknown,omitempty"`
	Changed  bool                    `json:"changed,omitempty"`
	Statuses []supervise.Status      `json:"statuses,omitempty"`
	State    *resources.ServiceState `json:"state,omitempty"`
	Logs     []LogTail               `json:"logs,omitempty"`
}

// maxRequest bounds a request: a spec is a few kilobytes.
const maxRequest = 1 << 20

// decodeRequest reads and checks one request.
func decodeRequest(r io.Reader) (controlRequest, error) {
	var req controlRequest
	line, err := bufio.NewReaderSize(io.LimitReader(r, maxRequest), 4096).ReadBytes('\n')
	if err != nil && !(errors.Is(err, io.EOF) && len(line) > 0) {
		return req, fmt.Errorf("reading the request: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return req, fmt.Errorf("decoding the request: %w", err)
	}
	switch req.Op {
	case "list":
	case "status", "running", "stop", "restart", "logs":
		if err := checkControlName(req.Name); err != nil {
			return req, err
		}
	case "ensure":
		if req.Spec == nil {
			return req, errors.New("ensure without a spec")
		}
		if err := checkControlName(req.Spec.Name); err != nil {
			return req, err
		}
	default:
		return req, fmt.Errorf("unknown op %q", req.Op)
	}
	return req, nil
}

func checkControlName(name string) error {
	if name == "" || len(name) > 100 || name[0] == '.' {
		return fmt.Errorf("service name %q: 1 to 100 characters, not starting with a dot", name)
	}
	for _, c := range []byte(name) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '@' || c == '-') {
			return fmt.Errorf("service name %q: only letters, digits and ._@-", name)
		}
	}
	return nil
}

func (cs *controlServer) handle(c *net.UnixConn) error {
	uid, err := peerUID(c)
	if err != nil {
		return fmt.Errorf("reading the peer's credentials: %w", err)
	}
	if err := checkPeer(uid, cs.owner); err != nil {
		_ = json.NewEncoder(c).Encode(controlResponse{Error: err.Error()})
		return err
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	req, err := decodeRequest(c)
	if err != nil {
		_ = json.NewEncoder(c).Encode(controlResponse{Error: err.Error()})
		return err
	}
	resp := cs.do(req)
	return json.NewEncoder(c).Encode(resp)
}

// do carries out req on the owner's Services.
func (cs *controlServer) do(req controlRequest) controlResponse {
	var resp controlResponse
	ctx := cs.ctx
	svc := cs.svc
	if filepath.Clean(rootOrSlash(req.Root)) != filepath.Clean(rootOrSlash(svc.root)) {
		resp.Error = fmt.Sprintf("the supervisor of %s runs services for root %s, not %s", svc.st.dir, rootOrSlash(svc.root), rootOrSlash(req.Root))
		return resp
	}
	var err error
	switch req.Op {
	case "list":
		resp.Statuses, err = svc.List(ctx)
	case "status":
		var st supervise.Status
		st, err = svc.Status(ctx, req.Name)
		resp.Statuses = []supervise.Status{st}
	case "running":
		if st, ok := svc.Running(req.Name); ok {
			resp.State = &st
		}
	case "ensure":
		resp.Changed, err = svc.Ensure(ctx, *req.Spec)
	case "stop":
		err = svc.Stop(ctx, req.Name)
	case "restart":
		err = svc.Restart(ctx, req.Name)
	case "logs":
		resp.Logs, err = svc.Logs(ctx, req.Name)
	}
	if err != nil {
		resp.Error = err.Error()
		resp.Unknown = errors.Is(err, supervise.ErrUnknown)
	}
	return resp
}

func rootOrSlash(root string) string {
	if root == "" {
		return "/"
	}
	return root
}

// ServiceClient talks to the supervisor's owner over its socket. It holds
// no connection between calls: each is one request on a fresh one.
type ServiceClient struct {
	path string
	root string
}

// DialServices returns a client of the supervisor that owns stateDir's
// services, after checking that it answers.
func DialServices(ctx context.Context, stateDir, root string) (*ServiceClient, error) {
	c := &ServiceClient{path: StateDir(stateDir).ControlSocket(), root: root}
	if _, err := c.call(ctx, controlRequest{Op: "list"}); err != nil {
		return nil, err
	}
	return c, nil
}

// clientTimeout bounds a call that has no deadline of its own (Running).
const clientTimeout = 30 * time.Second

func (c *ServiceClient) call(ctx context.Context, req controlRequest) (controlResponse, error) {
	var resp controlResponse
	req.Root = c.root
	addr, done, err := socketAddr(c.path)
	if err != nil {
		return resp, fmt.Errorf("asking the supervisor: %w", err)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", addr)
	done()
	if err != nil {
		return resp, fmt.Errorf("asking the supervisor: %w", err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	if err := json.NewEncoder(conn).Encode(req); err != nil {
		return resp, fmt.Errorf("asking the supervisor: %w", err)
	}
	dec := json.NewDecoder(io.LimitReader(conn, 64<<20))
	if err := dec.Decode(&resp); err != nil {
		if ctx.Err() != nil {
			return resp, fmt.Errorf("asking the supervisor: %w", ctx.Err())
		}
		return resp, fmt.Errorf("asking the supervisor: reading the answer: %w", err)
	}
	if resp.Error != "" {
		if resp.Unknown {
			return resp, fmt.Errorf("%w: %s", supervise.ErrUnknown, resp.Error)
		}
		return resp, errors.New(resp.Error)
	}
	return resp, nil
}

// Ensure asks the owner to run s.
func (c *ServiceClient) Ensure(ctx context.Context, s resources.ServiceSpec) (bool, error) {
	resp, err := c.call(ctx, controlRequest{Op: "ensure", Spec: &s})
	return resp.Changed, err
}

// Stop asks the owner to stop name and forget it.
func (c *ServiceClient) Stop(ctx context.Context, name string) error {
	_, err := c.call(ctx, controlRequest{Op: "stop", Name: name})
	return err
}

// Restart asks the owner to restart name.
func (c *ServiceClient) Restart(ctx context.Context, name string) error {
	_, err := c.call(ctx, controlRequest{Op: "restart", Name: name})
	return err
}

// Running asks the owner about name. The interface has no error: an owner
// that does not answer reads as a service not known, and the Ensure that
// follows reports the error.
func (c *ServiceClient) Running(name string) (resources.ServiceState, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
	defer cancel()
	resp, err := c.call(ctx, controlRequest{Op: "running", Name: name})
	if err != nil || resp.State == nil {
		return resources.ServiceState{}, false
	}
	return *resp.State, true
}

// List asks the owner for every service.
func (c *ServiceClient) List(ctx context.Context) ([]supervise.Status, error) {
	resp, err := c.call(ctx, controlRequest{Op: "list"})
	return resp.Statuses, err
}

// Status asks the owner for one service.
func (c *ServiceClient) Status(ctx context.Context, name string) (supervise.Status, error) {
	resp, err := c.call(ctx, controlRequest{Op: "status", Name: name})
	if err != nil {
		return supervise.Status{}, err
	}
	if len(resp.Statuses) != 1 {
		return supervise.Status{}, errors.New("asking the supervisor: no status in the answer")
	}
	return resp.Statuses[0], nil
}

// Logs asks the owner for the end of name's logs.
func (c *ServiceClient) Logs(ctx context.Context, name string) ([]LogTail, error) {
	resp, err := c.call(ctx, controlRequest{Op: "logs", Name: name})
	return resp.Logs, err
}

// Close does nothing: a client holds no connection between calls.
func (c *ServiceClient) Close() error { return nil }
