package resources

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/herdcm/herd/catalogs"
)

// Service is the service resource type: a long-running process, kept
// running by Herd's own supervisor (provider "herd", the default) or by
// systemd (provider "systemd", see systemd.go).
//
// With provider herd, Check asks Host.Services, an in-memory lookup in the
// supervisor, and spawns nothing, so an in-sync service costs next to
// nothing on every run. The wanted state is a ServiceSpec built from the
// attributes, with the documented defaults filled in; its Digest is
// compared with the digest of the spec the supervisor runs:
//   - not running, ensure running: "ensure stopped → running", Apply calls
//     Ensure;
//   - running another spec: "config <old digest> → <new digest>", Apply
//     calls Ensure, which restarts it;
//   - running, ensure stopped: "ensure running → stopped", Apply calls Stop.
//
// A service that should run but is down is a failure, never in sync: in
// backoff (the supervisor restarts it), Check fails with its last exit and
// log tail; in a crash loop or failed, the plan is "ensure crash-loop →
// running" and Apply fails when the process dies again within its start
// (the supervisor's settle time), the crash-loop count kept.
//
// Refresh restarts a service whose ensure is running (a stopped one stays
// stopped). ignore = ["ensure"] leaves starting and stopping to another
// tool: a running service still gets a changed spec (restart), a stopped
// one is not started, and a refresh restarts it only while it runs.
// enable concerns the systemd provider only: the herd supervisor runs
// whatever the agent's catalog says, from boot as soon as the agent runs.
type Service struct {
	// systemd, when set, stands in for the check that systemd manages the
	// host root (nil error: it does), so that tests drive the systemd
	// provider with a stand-in systemctl. Nil means the real check.
	systemd func(root string) error
}

var (
	_ Type      = (*Service)(nil)
	_ Refresher = (*Service)(nil)
)

// Defaults of the service attributes, as docs/site.md states them. They
// are filled in here, not left to the supervisor, so that the reference
// stays true whatever the supervisor's own defaults are, and so that a
// spec digest does not depend on them.
const (
	defaultStopSignal     = "SIGTERM"
	defaultStopTimeout    = 10 * time.Second
	defaultHealthInterval = 10 * time.Second
	defaultHealthTimeout  = 2 * time.Second
	defaultHealthRetries  = 3
)

// serviceWant is a service resource's attributes, checked and decoded.
type serviceWant struct {
	id       string
	spec     ServiceSpec
	running  bool   // ensure = running (the default)
	provider string // herd or systemd
	enable   *bool  // nil: leave enablement alone
	// ignoreEnsure and ignoreEnable: another tool owns those.
	ignoreEnsure bool
	ignoreEnable bool
}

// servicePlan is what Check learned that Apply needs.
type servicePlan struct {
	want   *serviceWant
	digest string // provider herd: want.spec.Digest()
	sd     *systemdPlan
}

// parseService decodes r's attributes into a ServiceSpec and the rest.
func parseService(r *catalogs.Resource) (*serviceWant, error) {
	name := r.Name
	if err := checkServiceName(name); err != nil {
		return nil, err
	}
	w := &serviceWant{
		id:       r.ID,
		provider: r.String("provider"),
		running:  true,
		spec: ServiceSpec{
			Name:        name,
			Argv:        r.Strings("run"),
			Env:         keyValueList(r.StringMap("env")),
			Dir:         r.String("dir"),
			User:        r.String("user"),
			Group:       r.String("group"),
			Restart:     r.String("restart"),
			StopSignal:  strings.ToUpper(r.String("stop_signal")),
			StopTimeout: defaultStopTimeout,
		},
	}
	bad := func(format string, args ...any) (*serviceWant, error) {
		return nil, fmt.Errorf("service %s: %s", name, fmt.Sprintf(format, args...))
	}
	switch e := r.String("ensure"); e {
	case "", "running":
	case "stopped":
		w.running = false
	default:
		return bad("ensure %q: want running or stopped", e)
	}
	switch w.provider {
	case "":
		w.provider = "herd"
	case "herd", "systemd":
	default:
		return bad("provider %q: want herd or systemd", w.provider)
	}
	s := &w.spec
	if s.Argv != nil && (len(s.Argv) == 0 || !filepath.IsAbs(s.Argv[0])) {
		return bad("run must be a program by absolute path and its arguments, not %q", s.Argv)
	}
	if w.provider == "herd" && w.running && len(s.Argv) == 0 {
		return bad("provider herd needs run = [\"/path/to/program\", …]")
	}
	if s.Dir != "" && !filepath.IsAbs(s.Dir) {
		return bad("dir %q is not an absolute path", s.Dir)
	}
	for _, f := range []struct{ attr, v string }{{"user", s.User}, {"group", s.Group}, {"dir", s.Dir}} {
		if strings.ContainsFunc(f.v, isControl) {
			return bad("%s %q holds a control character", f.attr, f.v)
		}
	}
	for _, kv := range s.Env {
		if k, _, _ := strings.Cut(kv, "="); k == "" || strings.ContainsFunc(k, isControl) {
			return bad("env name %q is not a variable name", k)
		}
	}
	switch s.Restart {
	case "":
		s.Restart = "always"
	case "always", "on-failure", "never":
	default:
		return bad("restart %q: want always, on-failure or never", s.Restart)
	}
	switch {
	case s.StopSignal == "":
		s.StopSignal = defaultStopSignal
	case !strings.HasPrefix(s.StopSignal, "SIG") || strings.ContainsFunc(s.StopSignal, isControl):
		return bad("stop_signal %q: want a signal name like SIGTERM", s.StopSignal)
	}
	if t := r.String("stop_timeout"); t != "" {
		d, err := time.ParseDuration(t)
		if err != nil || d <= 0 {
			return bad("stop_timeout %q: want a positive duration like \"30s\"", t)
		}
		s.StopTimeout = d
	}
	switch t := r.String("type"); t {
	case "", "simple":
	case "forking":
		s.Type = t
	default:
		return bad("type %q: want simple or forking", t)
	}
	s.PIDFile = r.String("pidfile")
	switch {
	case s.Type == "forking" && !filepath.IsAbs(s.PIDFile):
		return bad("type \"forking\" needs pidfile, the absolute path of the daemon's pid file")
	case s.Type != "forking" && s.PIDFile != "":
		return bad("pidfile is for type \"forking\" only")
	}
	hs, err := parseHealth(r)
	if err != nil {
		return bad("%v", err)
	}
	s.Health = hs
	if r.Has("enable") {
		b := r.Bool("enable")
		w.enable = &b
	}
	for _, a := range r.Strings("ignore") {
		switch a {
		case "ensure":
			w.ignoreEnsure = true
		case "enable":
			w.ignoreEnable = true
		}
	}
	return w, nil
}

// parseHealth builds the health check from the flattened health.*
// attributes; nil when the service has none.
func parseHealth(r *catalogs.Resource) (*HealthSpec, error) {
	exec, http, tcp := r.Strings("health.exec"), r.String("health.http"), r.String("health.tcp")
	kinds := 0
	for _, set := range [...]bool{exec != nil, http != "", tcp != ""} {
		if set {
			kinds++
		}
	}
	switch {
	case kinds == 0 && (r.Has("health.interval") || r.Has("health.timeout") || r.Has("health.retries")):
		return nil, errors.New("health.interval, health.timeout and health.retries need a check: health.exec, health.http or health.tcp")
	case kinds == 0:
		return nil, nil
	case kinds > 1:
		return nil, errors.New("a health check is one of health.exec, health.http or health.tcp")
	}
	h := &HealthSpec{
		Exec:     exec,
		HTTP:     http,
		TCP:      tcp,
		Interval: defaultHealthInterval,
		Timeout:  defaultHealthTimeout,
		Retries:  defaultHealthRetries,
	}
	if h.Exec != nil && (len(h.Exec) == 0 || !filepath.IsAbs(h.Exec[0])) {
		return nil, fmt.Errorf("health.exec must be a program by absolute path and its arguments, not %q", h.Exec)
	}
	for _, d := range []struct {
		attr string
		to   *time.Duration
	}{{"health.interval", &h.Interval}, {"health.timeout", &h.Timeout}} {
		if t := r.String(d.attr); t != "" {
			v, err := time.ParseDuration(t)
			if err != nil || v <= 0 {
				return nil, fmt.Errorf("%s %q: want a positive duration like \"30s\"", d.attr, t)
			}
			*d.to = v
		}
	}
	if n, ok := r.Int("health.retries"); ok {
		if n < 1 || n > 1000 {
			return nil, fmt.Errorf("health.retries %d: want 1 to 1000", n)
		}
		h.Retries = int(n)
	}
	return h, nil
}

// SupervisedHealth returns the health check of a service resource that
// the herd supervisor keeps running (provider herd, ensure running), and
// nil for any other resource: a systemd service, a stopped one, one
// without a check, or one whose attributes do not parse (its own event
// says why). A run reports the health of these services. It allocates
// nothing for a resource without a health check.
func SupervisedHealth(r *catalogs.Resource) *HealthSpec {
	if r.Type != "service" || !(r.Has("health.exec") || r.Has("health.http") || r.Has("health.tcp")) {
		return nil
	}
	w, err := parseService(r)
	if err != nil || w.provider != "herd" || !w.running {
		return nil
	}
	return w.spec.Health
}

// checkServiceName accepts the names that are safe both for the herd
// supervisor (a file and cgroup name) and for systemd (a unit name).
func checkServiceName(name string) error {
	if name == "" || len(name) > 100 || name[0] == '.' {
		return fmt.Errorf("service %q: a name is 1 to 100 characters and does not start with a dot", name)
	}
	for _, c := range []byte(name) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '@' || c == '-') {
			return fmt.Errorf("service %q: a name holds only letters, digits and ._@-", name)
		}
	}
	return nil
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// Digest returns the identity of the spec, "sha256:<hex>" of its
// canonical encoding: a versioned header, then one line per field that is
// set, in a fixed order, each value as its length in bytes, a colon and
// the bytes (a list as its count, then its elements so written), and
// durations in nanoseconds. Two specs digest the same exactly when they
// run the same way, and a field added to ServiceSpec later changes no
// existing digest while it is left unset, so that an agent upgrade
// restarts nothing. A Services implementation reports this digest as
// ServiceState.SpecDigest.
func (s ServiceSpec) Digest() string {
	var stack [512]byte
	b := append(stack[:0], "herd.service.v1\n"...)
	b = appendDigestField(b, "name", s.Name)
	b = appendDigestList(b, "argv", s.Argv)
	b = appendDigestList(b, "env", s.Env)
	b = appendDigestField(b, "dir", s.Dir)
	b = appendDigestField(b, "user", s.User)
	b = appendDigestField(b, "group", s.Group)
	b = appendDigestField(b, "restart", s.Restart)
	b = appendDigestField(b, "stop_signal", s.StopSignal)
	b = appendDigestInt(b, "stop_timeout", int64(s.StopTimeout))
	b = appendDigestField(b, "type", s.Type)
	b = appendDigestField(b, "pidfile", s.PIDFile)
	if h := s.Health; h != nil {
		b = append(b, "health\n"...)
		b = appendDigestList(b, "health.exec", h.Exec)
		b = appendDigestField(b, "health.http", h.HTTP)
		b = appendDigestField(b, "health.tcp", h.TCP)
		b = appendDigestInt(b, "health.interval", int64(h.Interval))
		b = appendDigestInt(b, "health.timeout", int64(h.Timeout))
		b = appendDigestInt(b, "health.retries", int64(h.Retries))
	}
	sum := sha256.Sum256(b)
	var out [7 + 64]byte
	copy(out[:], "sha256:")
	hex.Encode(out[7:], sum[:])
	return string(out[:])
}

func appendDigestField(b []byte, k, v string) []byte {
	if v == "" {
		return b
	}
	b = append(b, k...)
	return append(appendDigestString(b, v), '\n')
}

func appendDigestString(b []byte, v string) []byte {
	b = append(b, ' ')
	b = strconv.AppendInt(b, int64(len(v)), 10)
	b = append(b, ':')
	return append(b, v...)
}

func appendDigestInt(b []byte, k string, v int64) []byte {
	if v == 0 {
		return b
	}
	b = append(b, k...)
	b = append(b, ' ')
	b = strconv.AppendInt(b, v, 10)
	return append(b, '\n')
}

// appendDigestList writes a list (even an empty one, which differs from
// none) as its count and its elements.
func appendDigestList(b []byte, k string, l []string) []byte {
	if l == nil {
		return b
	}
	b = append(b, k...)
	b = append(b, ' ')
	b = strconv.AppendInt(b, int64(len(l)), 10)
	for _, e := range l {
		b = appendDigestString(b, e)
	}
	return append(b, '\n')
}

// shortDigest shortens "sha256:<64 hex>" to 12 hex digits for people.
func shortDigest(d string) string {
	if len(d) > len("sha256:")+12 {
		return d[:len("sha256:")+12]
	}
	if d == "" {
		return "unknown"
	}
	return d
}

// Check compares the service with what the supervisor (or systemd) runs.
func (sv *Service) Check(ctx context.Context, h *Host, want *catalogs.Resource) (*Plan, error) {
	w, err := parseService(want)
	if err != nil {
		return nil, err
	}
	sp := &servicePlan{want: w}
	p := &Plan{Resource: want, State: sp}
	if w.provider == "systemd" {
		return p, sv.checkSystemd(ctx, h, w, p, sp)
	}
	if h.Services == nil {
		return nil, fmt.Errorf("service %s: no supervisor on this host (provider herd needs the agent's)", w.spec.Name)
	}
	st, known := h.Services.Running(w.spec.Name)
	running := known && st.Running
	switch {
	case !w.running:
		if running && !w.ignoreEnsure {
			p.Changes = append(p.Changes, Change{Attr: "ensure", From: "running", To: "stopped", Action: Update})
		}
	case !running:
		if !w.ignoreEnsure {
			from := "stopped"
			if known && st.Problem != "" {
				// Crash-loop or failed: the run tries once more (the
				// supervisor keeps the crash-loop count) and fails when
				// the service dies again within its start.
				from = st.State
			}
			p.Changes = append(p.Changes, Change{Attr: "ensure", From: from, To: "running", Action: Update})
		}
	default:
		// Only a running service has a spec to compare: a stopped one
		// gets the wanted spec when it starts.
		sp.digest = w.spec.Digest()
		if st.SpecDigest != sp.digest {
			p.Changes = append(p.Changes, Change{Attr: "config", From: shortDigest(st.SpecDigest), To: shortDigest(sp.digest), Action: Update})
		} else if st.Problem != "" {
			// In backoff with the wanted spec: the supervisor restarts
			// it on its own, but it is down and failing, not in sync.
			return nil, errors.New(st.Problem)
		}
	}
	return p, nil
}

// Apply starts, restarts or stops the service as p says.
func (sv *Service) Apply(ctx context.Context, h *Host, p *Plan) error {
	sp, ok := p.State.(*servicePlan)
	if !ok {
		return fmt.Errorf("service %s: plan was not made by Service.Check", p.Resource.Name)
	}
	w := sp.want
	if w.provider == "systemd" {
		return sv.applySystemd(ctx, h, p, sp)
	}
	if h.Services == nil {
		return fmt.Errorf("service %s: no supervisor on this host (provider herd needs the agent's)", w.spec.Name)
	}
	if !w.running {
		if err := h.Services.Stop(ctx, w.spec.Name); err != nil {
			return fmt.Errorf("service %s: stopping: %w", w.spec.Name, err)
		}
		return nil
	}
	changed, err := h.Services.Ensure(ctx, w.spec)
	if err != nil {
		return fmt.Errorf("service %s: starting: %w", w.spec.Name, err)
	}
	if !changed && h.Log != nil {
		// The supervisor found nothing to do although Check saw a change:
		// the re-check will tell whether that was a stale digest.
		h.Log.Debug("the supervisor changed nothing", "resource", p.Resource.ID)
	}
	return nil
}

// Refresh restarts a service whose ensure is running; a stopped service
// stays stopped.
func (sv *Service) Refresh(ctx context.Context, h *Host, r *catalogs.Resource) error {
	w, err := parseService(r)
	if err != nil {
		return err
	}
	if !w.running {
		return nil
	}
	if w.provider == "systemd" {
		return sv.refreshSystemd(ctx, h, w)
	}
	if h.Services == nil {
		return fmt.Errorf("service %s: no supervisor on this host (provider herd needs the agent's)", w.spec.Name)
	}
	if w.ignoreEnsure {
		if st, ok := h.Services.Running(w.spec.Name); !ok || !st.Running {
			return nil
		}
	}
	if err := h.Services.Restart(ctx, w.spec.Name); err != nil {
		return fmt.Errorf("service %s: restarting: %w", w.spec.Name, err)
	}
	return nil
}
