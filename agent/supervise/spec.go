package supervise

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// RestartPolicy says when a service that exited on its own is started again.
type RestartPolicy string

// The restart policies. They mean what systemd's Restart= values of the same
// names mean.
const (
	// RestartAlways restarts the service whatever the exit. It is the default.
	RestartAlways RestartPolicy = "always"
	// RestartOnFailure restarts the service unless it exited cleanly: with
	// code 0, or killed by SIGHUP, SIGINT, SIGTERM or SIGPIPE (systemd's
	// definition of a clean exit).
	RestartOnFailure RestartPolicy = "on-failure"
	// RestartNever leaves an exited service stopped (exit code 0) or failed.
	RestartNever RestartPolicy = "never"
)

// Defaults filled in for fields of a Spec left at their zero value.
const (
	DefaultStopSignal     = syscall.SIGTERM
	DefaultStopTimeout    = 10 * time.Second
	DefaultHealthInterval = 10 * time.Second
	DefaultHealthTimeout  = 5 * time.Second
	DefaultHealthRetries  = 3
	// DefaultPath is the PATH a service gets when its Env sets none; it is
	// also where a bare argv[0] is looked up.
	DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

// Spec is how one service should run. The zero values of the optional
// fields mean the defaults above. Any change to a Spec (its digest) restarts
// a running service on the next Ensure.
type Spec struct {
	// Name identifies the service: letters, digits and "._@-", at most 100
	// characters, not starting with a dot. It names the log files, the
	// record and the cgroup.
	Name string `json:"name"`
	// Argv is the command: argv[0] is a path, or a name looked up in the
	// PATH of Env (DefaultPath when Env sets none). The process must stay in
	// the foreground: when it exits, what it left behind is killed.
	Argv []string `json:"argv"`
	// Env is the whole environment of the process, as KEY=VALUE entries.
	// Nothing is inherited from the agent except a default PATH.
	Env []string `json:"env,omitempty"`
	// Dir is the working directory; "/" when empty.
	Dir string `json:"dir,omitempty"`
	// User, when set, is who the process runs as; nil runs it as the agent.
	User *Credential `json:"user,omitempty"`
	// Restart is the restart policy; RestartAlways when empty.
	Restart RestartPolicy `json:"restart,omitempty"`
	// Health, when set, is probed while the service runs; see HealthCheck.
	Health *HealthCheck `json:"health,omitempty"`
	// StopSignal asks the service to stop; DefaultStopSignal when zero.
	StopSignal syscall.Signal `json:"stop_signal,omitempty"`
	// StopTimeout is how long a stopping service has between StopSignal and
	// SIGKILL; DefaultStopTimeout when zero.
	StopTimeout time.Duration `json:"stop_timeout,omitempty"`
	// Type is TypeSimple (empty: Argv stays in the foreground) or
	// TypeForking: Argv starts a daemon and exits 0, and PIDFile names
	// the daemon, which is then supervised. Forking needs cgroups: the
	// pid read from the file is taken only if it is in the service's own
	// cgroup, so that a stale or forged pidfile never makes the
	// supervisor signal an unrelated process.
	Type ServiceType `json:"type,omitempty"`
	// PIDFile is the daemon's pid file of a forking service: an absolute
	// path inside Root, read without following a link out of it.
	PIDFile string `json:"pidfile,omitempty"`
	// Root is the host root PIDFile is inside; "/" when empty.
	Root string `json:"root,omitempty"`
}

// ServiceType says how a service's command behaves; see Spec.Type.
type ServiceType string

// The service types, as systemd's Type= values of the same names.
const (
	TypeSimple  ServiceType = ""
	TypeForking ServiceType = "forking"
)

// DefaultForkTimeout bounds how long the starter of a forking service may
// take to exit and the daemon to write its pid file (systemd's
// TimeoutStartSec default).
const DefaultForkTimeout = 90 * time.Second

// Credential is a numeric user and group; the caller resolves names.
type Credential struct {
	UID uint32 `json:"uid"`
	GID uint32 `json:"gid"`
	// Groups are the supplementary groups; none when empty.
	Groups []uint32 `json:"groups,omitempty"`
}

// HealthCheck probes a running service. Exactly one of Exec, HTTP and TCP is
// set. The first probe runs one Interval after the start. The service is
// healthy after a probe passes and unhealthy after Retries probes in a row
// failed; until either, its health is unknown.
//
// An unhealthy service is reported (Status.Health), not restarted: a
// process that exits is restarted by its restart policy, and a restart
// loop driven by a flaky probe does more harm than the report, which the
// agent's run and the rollout gates read. This is what Docker's
// HEALTHCHECK does; systemd and supervisord have no probes at all.
type HealthCheck struct {
	// Exec runs this command with the service's Env, Dir and User; exit
	// code 0 passes.
	Exec []string `json:"exec,omitempty"`
	// HTTP gets this http or https URL; a 2xx or 3xx answer passes.
	// Redirects are not followed.
	HTTP string `json:"http,omitempty"`
	// TCP connects to this host:port; a connection passes.
	TCP string `json:"tcp,omitempty"`
	// Interval is the time between probes; DefaultHealthInterval when zero.
	Interval time.Duration `json:"interval,omitempty"`
	// Timeout bounds one probe; DefaultHealthTimeout (at most Interval)
	// when zero.
	Timeout time.Duration `json:"timeout,omitempty"`
	// Retries is how many failed probes in a row make the service
	// unhealthy; DefaultHealthRetries when zero.
	Retries int `json:"retries,omitempty"`
}

// normalize checks s and returns a deep copy with the defaults filled in,
// so that the digest of two specs meaning the same thing is the same and
// the caller may reuse its slices.
func (s Spec) normalize() (Spec, error) {
	var errs []error
	if err := checkName(s.Name); err != nil {
		errs = append(errs, err)
	}
	if len(s.Argv) == 0 || s.Argv[0] == "" {
		errs = append(errs, errors.New("argv is empty"))
	}
	for _, kv := range s.Env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			errs = append(errs, fmt.Errorf("env entry %q is not KEY=VALUE", kv))
		}
	}
	switch s.Restart {
	case "":
		s.Restart = RestartAlways
	case RestartAlways, RestartOnFailure, RestartNever:
	default:
		errs = append(errs, fmt.Errorf("restart %q is not always, on-failure or never", s.Restart))
	}
	if s.StopSignal == 0 {
		s.StopSignal = DefaultStopSignal
	} else if s.StopSignal < 1 || s.StopSignal > 64 {
		errs = append(errs, fmt.Errorf("stop_signal %d is not a signal", int(s.StopSignal)))
	}
	switch {
	case s.StopTimeout == 0:
		s.StopTimeout = DefaultStopTimeout
	case s.StopTimeout < 0:
		errs = append(errs, fmt.Errorf("stop_timeout %v is negative", s.StopTimeout))
	}
	if s.Dir == "" {
		s.Dir = "/"
	}
	switch s.Type {
	case "simple":
		s.Type = TypeSimple
	case TypeSimple:
		if s.PIDFile != "" {
			errs = append(errs, errors.New(`pidfile is for type "forking" only`))
		}
	case TypeForking:
		if !filepath.IsAbs(s.PIDFile) {
			errs = append(errs, fmt.Errorf(`type "forking" needs pidfile, an absolute path, not %q`, s.PIDFile))
		}
	default:
		errs = append(errs, fmt.Errorf("type %q is not simple or forking", s.Type))
	}
	if s.Type == TypeForking && s.Root == "" {
		s.Root = "/"
	}
	s.Argv = slices.Clone(s.Argv)
	s.Env = slices.Clone(s.Env)
	if s.User != nil {
		u := *s.User
		u.Groups = slices.Clone(u.Groups)
		s.User = &u
	}
	if s.Health != nil {
		h, err := s.Health.normalize()
		if err != nil {
			errs = append(errs, fmt.Errorf("health: %w", err))
		}
		s.Health = &h
	}
	if err := errors.Join(errs...); err != nil {
		return Spec{}, fmt.Errorf("invalid service %q: %w", s.Name, err)
	}
	return s, nil
}

func (h HealthCheck) normalize() (HealthCheck, error) {
	var errs []error
	kinds := 0
	if len(h.Exec) > 0 {
		kinds++
		if h.Exec[0] == "" {
			errs = append(errs, errors.New("exec argv[0] is empty"))
		}
	}
	if h.HTTP != "" {
		kinds++
		u, err := url.Parse(h.HTTP)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("http %q is not an http or https URL", h.HTTP))
		}
	}
	if h.TCP != "" {
		kinds++
		if _, _, err := net.SplitHostPort(h.TCP); err != nil {
			errs = append(errs, fmt.Errorf("tcp %q: %w", h.TCP, err))
		}
	}
	if kinds != 1 {
		errs = append(errs, fmt.Errorf("exactly one of exec, http and tcp must be set, not %d", kinds))
	}
	if h.Interval < 0 || h.Timeout < 0 || h.Retries < 0 {
		errs = append(errs, errors.New("interval, timeout and retries must not be negative"))
	}
	if h.Interval == 0 {
		h.Interval = DefaultHealthInterval
	}
	if h.Timeout == 0 {
		h.Timeout = min(DefaultHealthTimeout, h.Interval)
	}
	if h.Retries == 0 {
		h.Retries = DefaultHealthRetries
	}
	h.Exec = slices.Clone(h.Exec)
	return h, errors.Join(errs...)
}

// digest is the identity of a normalized spec: a running service whose
// digest differs from the wanted one is restarted.
func (s Spec) digest() string {
	b, err := json.Marshal(s)
	if err != nil {
		// A Spec holds only strings, numbers and slices of them.
		panic("supervise: encoding a spec: " + err.Error())
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// checkName accepts names that are safe as a file name and a cgroup name.
func checkName(name string) error {
	if name == "" || len(name) > 100 || name[0] == '.' {
		return fmt.Errorf("name %q must be 1 to 100 characters and not start with a dot", name)
	}
	for _, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' ||
			r == '.' || r == '_' || r == '@' || r == '-'
		if !ok {
			return fmt.Errorf("name %q may hold only letters, digits and ._@-", name)
		}
	}
	return nil
}

// envValue returns the value of key in a KEY=VALUE list; the last entry wins,
// as in a shell.
func envValue(env []string, key string) (string, bool) {
	for i := len(env) - 1; i >= 0; i-- {
		if k, v, ok := strings.Cut(env[i], "="); ok && k == key {
			return v, true
		}
	}
	return "", false
}

// Digest returns the identity of s as Status.Digest reports it once s
// runs: the digest of s with its defaults filled in, so that two specs
// meaning the same thing have the same digest. A caller can thus tell
// whether a service runs a given spec without racing the service's loop.
func (s Spec) Digest() (string, error) {
	n, err := s.normalize()
	if err != nil {
		return "", err
	}
	return n.digest(), nil
}
