package resources

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/herdcm/herd/catalogs"
)

// fakeServices stands in for the supervisor: services are records in a
// map, and every call that would touch a process is logged. The real
// supervisor is tested on real processes in agent/supervise, and once
// here, in TestServiceWithSupervisor.
type fakeServices struct {
	mu    sync.Mutex
	svcs  map[string]*fakeService
	calls []string
	pid   int
	// fail makes the next Ensure, Stop or Restart fail.
	fail error
}

type fakeService struct {
	spec    ServiceSpec
	digest  string
	running bool
	pid     int
}

var _ Services = (*fakeServices)(nil)

func newFakeServices() *fakeServices {
	return &fakeServices{svcs: map[string]*fakeService{}, pid: 100}
}

func (f *fakeServices) Ensure(_ context.Context, s ServiceSpec) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "ensure "+s.Name)
	if err := f.fail; err != nil {
		f.fail = nil
		return false, err
	}
	d := s.Digest()
	if svc := f.svcs[s.Name]; svc != nil && svc.running && svc.digest == d {
		return false, nil
	}
	f.pid++
	f.svcs[s.Name] = &fakeService{spec: s, digest: d, running: true, pid: f.pid}
	return true, nil
}

func (f *fakeServices) Stop(_ context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "stop "+name)
	svc := f.svcs[name]
	if svc == nil {
		return fmt.Errorf("stopping service %s: unknown service", name)
	}
	svc.running, svc.pid = false, 0
	return nil
}

func (f *fakeServices) Restart(_ context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "restart "+name)
	if err := f.fail; err != nil {
		f.fail = nil
		return err
	}
	svc := f.svcs[name]
	if svc == nil {
		return fmt.Errorf("restarting service %s: unknown service", name)
	}
	f.pid++
	svc.running, svc.pid = true, f.pid
	return nil
}

func (f *fakeServices) Running(name string) (ServiceState, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	svc := f.svcs[name]
	if svc == nil {
		return ServiceState{}, false
	}
	return ServiceState{PID: svc.pid, SpecDigest: svc.digest, Running: svc.running}, true
}

// takeCalls returns the calls since the last takeCalls.
func (f *fakeServices) takeCalls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls
	f.calls = nil
	return c
}

// newServiceHost returns a test host whose supervisor is a fakeServices.
func newServiceHost(t *testing.T) (*Host, *fakeServices) {
	t.Helper()
	h, _ := newTestHost(t)
	f := newFakeServices()
	h.Services = f
	return h, f
}

// serviceRun is one agent run over a service: Check, and when there is a
// change Apply and the engine's re-check, which must be in sync. It
// returns the changes Check saw.
func serviceRun(t *testing.T, typ Type, h *Host, r *catalogs.Resource) []Change {
	t.Helper()
	ctx := context.Background()
	p, err := typ.Check(ctx, h, r)
	if err != nil {
		t.Fatalf("Check(%s): %v", r.ID, err)
	}
	if p.InSync() {
		return nil
	}
	if err := typ.Apply(ctx, h, p); err != nil {
		t.Fatalf("Apply(%s): %v", r.ID, err)
	}
	again, err := typ.Check(ctx, h, r)
	if err != nil {
		t.Fatalf("re-check of %s: %v", r.ID, err)
	}
	if !again.InSync() {
		t.Fatalf("%s did not converge: still %+v", r.ID, again.Changes)
	}
	return p.Changes
}

func webAttrs(extra map[string]any) map[string]any {
	a := map[string]any{"run": []string{"/usr/bin/web", "--port", "8080"}, "env": map[string]string{"MODE": "prod"}}
	for k, v := range extra {
		a[k] = v
	}
	return a
}

// TestServiceHerd walks a service through a life of runs, each step one
// agent run against the same fake supervisor.
func TestServiceHerd(t *testing.T) {
	t.Parallel()
	h, f := newServiceHost(t)
	sv := &Service{}
	steps := []struct {
		name        string
		attrs       map[string]any
		wantChanges []Change // nil: in sync
		wantCalls   []string
		wantRunning bool
	}{
		{
			name:        "start",
			attrs:       webAttrs(nil),
			wantChanges: []Change{{Attr: "ensure", From: "stopped", To: "running", Action: Update}},
			wantCalls:   []string{"ensure web"},
			wantRunning: true,
		},
		{
			name:        "no change",
			attrs:       webAttrs(nil),
			wantRunning: true,
		},
		{
			name:        "spec change restarts",
			attrs:       webAttrs(map[string]any{"env": map[string]string{"MODE": "debug"}}),
			wantChanges: []Change{{Attr: "config", Action: Update}}, // From, To: digests, compared below
			wantCalls:   []string{"ensure web"},
			wantRunning: true,
		},
		{
			name:        "stop",
			attrs:       webAttrs(map[string]any{"ensure": "stopped"}),
			wantChanges: []Change{{Attr: "ensure", From: "running", To: "stopped", Action: Update}},
			wantCalls:   []string{"stop web"},
		},
		{
			name:  "stopped stays stopped",
			attrs: webAttrs(map[string]any{"ensure": "stopped"}),
		},
		{
			name:  "stopped, another tool owns ensure",
			attrs: webAttrs(map[string]any{"ignore": []string{"ensure"}}),
		},
		{
			name:        "started again with the latest spec",
			attrs:       webAttrs(map[string]any{"restart": "on-failure"}),
			wantChanges: []Change{{Attr: "ensure", From: "stopped", To: "running", Action: Update}},
			wantCalls:   []string{"ensure web"},
			wantRunning: true,
		},
	}
	var lastDigest string
	for _, st := range steps {
		r := res("service", "web", st.attrs)
		got := serviceRun(t, sv, h, &r)
		for i := range got {
			if got[i].Attr == "config" {
				w, err := parseService(&r)
				if err != nil {
					t.Fatal(err)
				}
				from, to := shortDigest(lastDigest), shortDigest(w.spec.Digest())
				if got[i].From != from || got[i].To != to {
					t.Errorf("%s: config change %s → %s, want %s → %s", st.name, got[i].From, got[i].To, from, to)
				}
				got[i].From, got[i].To = "", ""
			}
		}
		if diff := cmp.Diff(st.wantChanges, got); diff != "" {
			t.Errorf("%s: changes (-want +got):\n%s", st.name, diff)
		}
		if diff := cmp.Diff(st.wantCalls, f.takeCalls()); diff != "" {
			t.Errorf("%s: supervisor calls (-want +got):\n%s", st.name, diff)
		}
		state, _ := f.Running("web")
		if state.Running != st.wantRunning {
			t.Errorf("%s: running = %v, want %v", st.name, state.Running, st.wantRunning)
		}
		lastDigest = state.SpecDigest
	}
}

func TestServiceHerdRefresh(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		attrs     map[string]any
		start     bool // ensure the service first
		wantCalls []string
	}{
		{"running restarts", webAttrs(nil), true, []string{"restart web"}},
		{"stopped stays stopped", webAttrs(map[string]any{"ensure": "stopped"}), false, nil},
		{"ignored ensure, running, restarts", webAttrs(map[string]any{"ignore": []string{"ensure"}}), true, []string{"restart web"}},
		{"ignored ensure, not running, stays so", webAttrs(map[string]any{"ignore": []string{"ensure"}}), false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h, f := newServiceHost(t)
			r := res("service", "web", tc.attrs)
			if tc.start {
				w, err := parseService(&r)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := f.Ensure(context.Background(), w.spec); err != nil {
					t.Fatal(err)
				}
				f.takeCalls()
			}
			before, _ := f.Running("web")
			if err := (&Service{}).Refresh(context.Background(), h, &r); err != nil {
				t.Fatalf("Refresh: %v", err)
			}
			if diff := cmp.Diff(tc.wantCalls, f.takeCalls()); diff != "" {
				t.Errorf("supervisor calls (-want +got):\n%s", diff)
			}
			if after, _ := f.Running("web"); tc.wantCalls != nil && after.PID == before.PID {
				t.Errorf("the refresh left pid %d running", after.PID)
			}
		})
	}
}

func TestServiceHerdErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := res("service", "web", webAttrs(nil))

	h, _ := newTestHost(t) // no supervisor
	if _, err := (&Service{}).Check(ctx, h, &r); err == nil || !strings.Contains(err.Error(), "no supervisor on this host") {
		t.Errorf("Check without a supervisor = %v, want no supervisor on this host", err)
	}
	if err := (&Service{}).Refresh(ctx, h, &r); err == nil || !strings.Contains(err.Error(), "no supervisor on this host") {
		t.Errorf("Refresh without a supervisor = %v, want no supervisor on this host", err)
	}

	h, f := newServiceHost(t)
	p, err := (&Service{}).Check(ctx, h, &r)
	if err != nil {
		t.Fatal(err)
	}
	boom := errors.New("exec format error")
	f.fail = boom
	if err := (&Service{}).Apply(ctx, h, p); !errors.Is(err, boom) || !strings.HasPrefix(err.Error(), "service web: starting: ") {
		t.Errorf("Apply with a failing supervisor = %v, want service web: starting: …%v", err, boom)
	}
}

func TestParseService(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		attrs map[string]any
		want  ServiceSpec
	}{
		{
			name:  "defaults",
			attrs: map[string]any{"run": []string{"/usr/bin/web"}},
			want: ServiceSpec{Name: "web", Argv: []string{"/usr/bin/web"}, Restart: "always",
				StopSignal: "SIGTERM", StopTimeout: 10 * time.Second},
		},
		{
			name: "everything",
			attrs: map[string]any{
				"run": []string{"/usr/bin/web", "-v"}, "user": "www", "group": "www", "dir": "/srv/web",
				"env": map[string]string{"Z": "26", "A": "1"}, "restart": "never",
				"stop_signal": "sigquit", "stop_timeout": "1m30s",
			},
			want: ServiceSpec{Name: "web", Argv: []string{"/usr/bin/web", "-v"}, Env: []string{"A=1", "Z=26"},
				Dir: "/srv/web", User: "www", Group: "www", Restart: "never", StopSignal: "SIGQUIT", StopTimeout: 90 * time.Second},
		},
		{
			name:  "health http with defaults",
			attrs: map[string]any{"run": []string{"/usr/bin/web"}, "health.http": "http://127.0.0.1:8080/healthz"},
			want: ServiceSpec{Name: "web", Argv: []string{"/usr/bin/web"}, Restart: "always", StopSignal: "SIGTERM", StopTimeout: 10 * time.Second,
				Health: &HealthSpec{HTTP: "http://127.0.0.1:8080/healthz", Interval: 10 * time.Second, Timeout: 2 * time.Second, Retries: 3}},
		},
		{
			name: "health exec tuned",
			attrs: map[string]any{"run": []string{"/usr/bin/web"}, "health.exec": []string{"/usr/bin/web", "--ping"},
				"health.interval": "5s", "health.timeout": "1s", "health.retries": int64(5)},
			want: ServiceSpec{Name: "web", Argv: []string{"/usr/bin/web"}, Restart: "always", StopSignal: "SIGTERM", StopTimeout: 10 * time.Second,
				Health: &HealthSpec{Exec: []string{"/usr/bin/web", "--ping"}, Interval: 5 * time.Second, Timeout: time.Second, Retries: 5}},
		},
		{
			name:  "health tcp",
			attrs: map[string]any{"run": []string{"/usr/bin/web"}, "health.tcp": "127.0.0.1:5432"},
			want: ServiceSpec{Name: "web", Argv: []string{"/usr/bin/web"}, Restart: "always", StopSignal: "SIGTERM", StopTimeout: 10 * time.Second,
				Health: &HealthSpec{TCP: "127.0.0.1:5432", Interval: 10 * time.Second, Timeout: 2 * time.Second, Retries: 3}},
		},
		{
			name:  "forking",
			attrs: map[string]any{"run": []string{"/usr/sbin/oldd"}, "type": "forking", "pidfile": "/run/oldd.pid"},
			want: ServiceSpec{Name: "web", Argv: []string{"/usr/sbin/oldd"}, Restart: "always", StopSignal: "SIGTERM", StopTimeout: 10 * time.Second,
				Type: "forking", PIDFile: "/run/oldd.pid"},
		},
		{
			name:  "simple is the default",
			attrs: map[string]any{"run": []string{"/usr/bin/web"}, "type": "simple"},
			want:  ServiceSpec{Name: "web", Argv: []string{"/usr/bin/web"}, Restart: "always", StopSignal: "SIGTERM", StopTimeout: 10 * time.Second},
		},
		{
			name:  "stopped needs no run",
			attrs: map[string]any{"ensure": "stopped"},
			want:  ServiceSpec{Name: "web", Restart: "always", StopSignal: "SIGTERM", StopTimeout: 10 * time.Second},
		},
	} {
		r := res("service", "web", tc.attrs)
		w, err := parseService(&r)
		if err != nil {
			t.Errorf("%s: parseService: %v", tc.name, err)
			continue
		}
		if diff := cmp.Diff(tc.want, w.spec); diff != "" {
			t.Errorf("%s: spec (-want +got):\n%s", tc.name, diff)
		}
	}
}

func TestParseServiceErrors(t *testing.T) {
	t.Parallel()
	run := []string{"/usr/bin/web"}
	for _, tc := range []struct {
		name, svc string
		attrs     map[string]any
		want      string
	}{
		{"no run", "web", map[string]any{}, "provider herd needs run"},
		{"relative run", "web", map[string]any{"run": []string{"web"}}, "run must be a program by absolute path"},
		{"bad name", "web/x", map[string]any{"run": run}, "a name holds only letters"},
		{"dot name", ".web", map[string]any{"run": run}, "does not start with a dot"},
		{"bad ensure", "web", map[string]any{"run": run, "ensure": "present"}, `ensure "present"`},
		{"bad provider", "web", map[string]any{"run": run, "provider": "runit"}, `provider "runit"`},
		{"bad restart", "web", map[string]any{"run": run, "restart": "sometimes"}, `restart "sometimes"`},
		{"bad signal", "web", map[string]any{"run": run, "stop_signal": "TERM"}, `stop_signal "TERM"`},
		{"bad stop timeout", "web", map[string]any{"run": run, "stop_timeout": "-1s"}, `stop_timeout "-1s"`},
		{"relative dir", "web", map[string]any{"run": run, "dir": "srv"}, `dir "srv" is not an absolute path`},
		{"newline in user", "web", map[string]any{"run": run, "user": "www\nExecStartPre=/bin/evil"}, "control character"},
		{"bad env name", "web", map[string]any{"run": run, "env": map[string]string{"": "x"}}, "env name"},
		{"two health checks", "web", map[string]any{"run": run, "health.tcp": "h:1", "health.http": "http://h/"}, "one of health.exec"},
		{"health tuning without a check", "web", map[string]any{"run": run, "health.interval": "5s"}, "need a check"},
		{"bad health interval", "web", map[string]any{"run": run, "health.tcp": "h:1", "health.interval": "often"}, `health.interval "often"`},
		{"bad health retries", "web", map[string]any{"run": run, "health.tcp": "h:1", "health.retries": int64(0)}, "health.retries 0"},
		{"relative health exec", "web", map[string]any{"run": run, "health.exec": []string{"curl"}}, "health.exec must be"},
		{"forking without pidfile", "web", map[string]any{"run": run, "type": "forking"}, "needs pidfile"},
		{"pidfile without forking", "web", map[string]any{"run": run, "pidfile": "/run/web.pid"}, "for type \"forking\" only"},
		{"relative pidfile", "web", map[string]any{"run": run, "type": "forking", "pidfile": "web.pid"}, "needs pidfile"},
		{"bad type", "web", map[string]any{"run": run, "type": "oneshot"}, `type "oneshot"`},
	} {
		r := res("service", tc.svc, tc.attrs)
		if _, err := parseService(&r); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: parseService = %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
}

// TestServiceSpecDigest pins the digest of a spec: a change to the
// encoding would restart every service of every fleet on the agent's
// upgrade, so it must be deliberate (bump herd.service.v1).
func TestServiceSpecDigest(t *testing.T) {
	t.Parallel()
	base := ServiceSpec{Name: "web", Argv: []string{"/usr/bin/web", "--port", "8080"}, Env: []string{"A=1"},
		Restart: "always", StopSignal: "SIGTERM", StopTimeout: 10 * time.Second}
	// sha256 of the encoding spelled out, computed outside Go:
	// herd.service.v1\nname 3:web\nargv 3 12:/usr/bin/web 6:--port 4:8080\n
	// env 1 3:A=1\nrestart 6:always\nstop_signal 7:SIGTERM\nstop_timeout 10000000000\n
	const want = "sha256:7ad341ab411bf8a1e1cedc51e950cd63aaaa3bcfc03c5c65bfaf372d20488394"
	if got := base.Digest(); got != want {
		t.Errorf("Digest() = %s, want %s (the encoding changed: every running service would restart)", got, want)
	}
	variants := map[string]func(s *ServiceSpec){
		"name":          func(s *ServiceSpec) { s.Name = "web2" },
		"argv split":    func(s *ServiceSpec) { s.Argv = []string{"/usr/bin/web", "--port 8080"} },
		"argv empty":    func(s *ServiceSpec) { s.Argv = []string{} },
		"argv nil":      func(s *ServiceSpec) { s.Argv = nil },
		"env":           func(s *ServiceSpec) { s.Env = []string{"A=2"} },
		"env no list":   func(s *ServiceSpec) { s.Env = nil },
		"dir":           func(s *ServiceSpec) { s.Dir = "/srv" },
		"user":          func(s *ServiceSpec) { s.User = "www" },
		"group":         func(s *ServiceSpec) { s.Group = "www" },
		"user as group": func(s *ServiceSpec) { s.Group, s.User = "x", "" },
		"restart":       func(s *ServiceSpec) { s.Restart = "never" },
		"stop signal":   func(s *ServiceSpec) { s.StopSignal = "SIGINT" },
		"stop timeout":  func(s *ServiceSpec) { s.StopTimeout = time.Second },
		"health": func(s *ServiceSpec) {
			s.Health = &HealthSpec{TCP: "h:1", Interval: time.Second, Timeout: time.Second, Retries: 1}
		},
		"health retries": func(s *ServiceSpec) {
			s.Health = &HealthSpec{TCP: "h:1", Interval: time.Second, Timeout: time.Second, Retries: 2}
		},
		"quote in argv": func(s *ServiceSpec) { s.Argv = []string{"/usr/bin/web\" \"--port", "8080"} },
		"forking":       func(s *ServiceSpec) { s.Type, s.PIDFile = "forking", "/run/web.pid" },
	}
	seen := map[string]string{base.Digest(): "base"}
	for _, name := range slices.Sorted(maps.Keys(variants)) {
		s := base
		s.Argv = slices.Clone(base.Argv)
		variants[name](&s)
		d := s.Digest()
		if prev, dup := seen[d]; dup {
			t.Errorf("%s and %s have the same digest", name, prev)
		}
		seen[d] = name
	}
}

// BenchmarkServiceCheckInSync is the cost of a converged herd service on
// every run: decoding the attributes, a digest, a map lookup; no spawn.
func BenchmarkServiceCheckInSync(b *testing.B) {
	root := b.TempDir()
	f := newFakeServices()
	h := &Host{Root: root, Services: f, Run: func(context.Context, Cmd) (Result, error) {
		b.Fatal("Check spawned a command")
		return Result{}, nil
	}}
	r := res("service", "web", webAttrs(map[string]any{"user": "www", "health.http": "http://127.0.0.1:8080/healthz"}))
	w, err := parseService(&r)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := f.Ensure(context.Background(), w.spec); err != nil {
		b.Fatal(err)
	}
	sv := &Service{}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		p, err := sv.Check(ctx, h, &r)
		if err != nil || !p.InSync() {
			b.Fatalf("Check = %+v, %v; want in sync", p, err)
		}
	}
}

func TestSupervisedHealth(t *testing.T) {
	t.Parallel()
	svc := func(attrs map[string]any) *catalogs.Resource {
		a := map[string]any{"run": []string{"/bin/sleep", "300"}}
		for k, v := range attrs {
			a[k] = v
		}
		return &catalogs.Resource{ID: "service:web", Type: "service", Name: "web", Attrs: a}
	}
	tests := []struct {
		name string
		res  *catalogs.Resource
		want *HealthSpec
	}{
		{"no check", svc(nil), nil},
		{"exec with defaults", svc(map[string]any{"health.exec": []string{"/bin/true"}}),
			&HealthSpec{Exec: []string{"/bin/true"}, Interval: defaultHealthInterval, Timeout: defaultHealthTimeout, Retries: defaultHealthRetries}},
		{"tcp with settings", svc(map[string]any{"health.tcp": "127.0.0.1:80", "health.interval": "1s", "health.timeout": "500ms", "health.retries": int64(5)}),
			&HealthSpec{TCP: "127.0.0.1:80", Interval: time.Second, Timeout: 500 * time.Millisecond, Retries: 5}},
		{"ensure stopped", svc(map[string]any{"health.tcp": "127.0.0.1:80", "ensure": "stopped"}), nil},
		{"systemd", svc(map[string]any{"health.tcp": "127.0.0.1:80", "provider": "systemd"}), nil},
		{"bad attributes", svc(map[string]any{"health.tcp": "127.0.0.1:80", "health.interval": "soon"}), nil},
		{"not a service", &catalogs.Resource{ID: "file:/x", Type: "file", Name: "/x", Attrs: map[string]any{"health.tcp": "127.0.0.1:80"}}, nil},
	}
	for _, tt := range tests {
		got := SupervisedHealth(tt.res)
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("SupervisedHealth(%s) (-want +got):\n%s", tt.name, diff)
		}
	}
}
