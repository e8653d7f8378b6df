package agent

import (
	"context"
	"strings"
	"testing"

	gocmp "github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/herdcm/herd/agent/resources"
	"github.com/herdcm/herd/agent/supervise"
	"github.com/herdcm/herd/api/herdv1"
	"github.com/herdcm/herd/catalogs"
)

// serviceRes is a provider-herd service resource; attrs are more
// attributes, as name, value pairs (health.* flattened, as compile makes
// them).
func serviceRes(name string, run []string, attrs ...any) catalogs.Resource {
	a := map[string]any{"name": name, "run": run}
	for i := 0; i+1 < len(attrs); i += 2 {
		a[attrs[i].(string)] = attrs[i+1]
	}
	return catalogs.Resource{ID: "service:" + name, Type: "service", Name: name, Attrs: a, Source: "roles/test.toml:3"}
}

// ownServices makes the daemon own its state's supervisor, as herd agent
// does, and stops every service it started when the test ends.
func ownServices(t *testing.T) func(*DaemonOptions) {
	return func(o *DaemonOptions) {
		o.Services = func(ctx context.Context, st *State) (resources.Services, func(), error) {
			s, err := OwnServices(ctx, st, o.Root, o.Log)
			if err != nil {
				return nil, nil, err
			}
			return s, func() {
				var cgroup string
				for _, svc := range s.Supervisor().List() {
					cgroup = svc.Cgroup
					if err := s.Stop(context.Background(), svc.Name); err != nil {
						t.Errorf("stopping %s: %v", svc.Name, err)
					}
				}
				s.Close()
				removeCgroupHome(t, cgroup)
			}, nil
		}
	}
}

func healthByName(services []*herdv1.ServiceHealth) map[string]*herdv1.ServiceHealth {
	out := map[string]*herdv1.ServiceHealth{}
	for _, s := range services {
		out[s.Name] = s
	}
	return out
}

// TestDaemonReportsServiceHealth: the report of the run that started the
// services carries each health-checked service's first verdict (waited
// for: the failing check decides only after the supervisor's settle time,
// after which a run that did not wait would say unknown), a crashed one
// unhealthy for not running, and none for a service without a check. A
// noop run (a rehearsal) reports the health as it is, and a service it
// would start as unknown.
func TestDaemonReportsServiceHealth(t *testing.T) {
	t.Parallel()
	fsrv := newFakeServer(t)
	sleep := []string{"/bin/sleep", "300"}
	good := serviceRes("good", sleep, "health.exec", []string{"/bin/true"}, "health.interval", "100ms", "health.timeout", "100ms", "health.retries", int64(3))
	// Three failures 700 ms apart: unhealthy about 2.1 s after its start,
	// well after Ensure's settle time of a second.
	bad := serviceRes("bad", sleep, "health.exec", []string{"/bin/sh", "-c", "echo broken check >&2; exit 1"},
		"health.interval", "700ms", "health.timeout", "300ms", "health.retries", int64(3))
	crash := serviceRes("crash", []string{"/bin/sh", "-c", "echo crashing >&2; exit 3"}, "health.tcp", "127.0.0.1:1")
	plain := serviceRes("plain", sleep)
	v1 := testCatalog("web-01", "v1", good, bad, crash, plain)
	etag := fsrv.publish(v1, nil, false)

	a := newTestAgent(t, fsrv, ownServices(t))
	a.start(t)
	first := a.awaitRun(t, "the first run", anyRun)
	if first.err != nil || first.r == nil {
		t.Fatalf("first run: %v", first.err)
	}
	if _, ok := first.r.Phases["health"]; !ok {
		t.Errorf("phases = %v, want a health phase", first.r.Phases)
	}
	a.settle(t)
	a.awaitSpoolEmpty(t)
	reports := fsrv.reportsOf(etag)
	if len(reports) == 0 {
		t.Fatal("no report at the server")
	}
	got := healthByName(reports[0].Services)
	if len(reports[0].Services) != 3 || got["plain"] != nil {
		t.Errorf("services in the report = %v, want good, bad and crash (plain has no check)", reports[0].Services)
	}
	if g := got["good"]; g.GetHealth() != "healthy" || g.GetDetail() != "" {
		t.Errorf("good = %v, want healthy", g)
	}
	if b := got["bad"]; b.GetHealth() != "unhealthy" || !strings.Contains(b.GetDetail(), "broken check") {
		t.Errorf("bad = %v, want unhealthy with the check's output", b)
	}
	if c := got["crash"]; c.GetHealth() != "unhealthy" || !strings.Contains(c.GetDetail(), "crashing") {
		t.Errorf("crash = %v, want unhealthy, with its output", c)
	}

	// A rehearsal: good's spec changes (a restart it would make), a new
	// service would start. Nothing is waited for, nothing started.
	good2 := serviceRes("good", sleep, "health.exec", []string{"/bin/true"}, "health.interval", "100ms", "health.timeout", "100ms", "health.retries", int64(3), "env", map[string]string{"A": "1"})
	fresh := serviceRes("fresh", sleep, "health.tcp", "127.0.0.1:1")
	reh := fsrv.rehearse(testCatalog("web-01", "v2", good2, bad, fresh), nil, false, nil)
	a.d.Trigger(TriggerManual)
	a.awaitRun(t, "a manual run", manualRun)
	a.settle(t)
	a.awaitSpoolEmpty(t)
	rr := fsrv.reportsOf(reh)
	if len(rr) != 1 || !rr[0].Noop {
		t.Fatalf("rehearsal reports = %v, want one noop report", rr)
	}
	got = healthByName(rr[0].Services)
	want := map[string]string{"good": "healthy", "bad": "unhealthy", "fresh": "unknown"}
	for name, h := range want {
		if got[name].GetHealth() != h {
			t.Errorf("rehearsal: %s = %v, want %s", name, got[name], h)
		}
	}
	if d := got["fresh"].GetDetail(); !strings.Contains(d, "would start") {
		t.Errorf("rehearsal: fresh detail = %q, want it says the run would start it", d)
	}
	if svc, ok := a.d.services.(*Services); !ok {
		t.Errorf("the daemon's services = %T", a.d.services)
	} else if _, known := svc.Supervisor().Status("fresh"); known {
		t.Errorf("the rehearsal started service fresh")
	}
}

// fakeHealth is a supervisor's answer about services, for healthOf and
// readHealth without processes.
type fakeHealth struct {
	resources.Services
	status map[string]supervise.Status
}

func (f fakeHealth) Status(_ context.Context, name string) (supervise.Status, error) {
	st, ok := f.status[name]
	if !ok {
		return st, supervise.ErrUnknown
	}
	return st, nil
}

func TestReadHealth(t *testing.T) {
	t.Parallel()
	svcs := fakeHealth{status: map[string]supervise.Status{
		"up":      {Name: "up", State: supervise.StateRunning, Health: supervise.HealthHealthy},
		"sick":    {Name: "sick", State: supervise.StateRunning, Health: supervise.HealthUnhealthy, HealthError: "http: 500"},
		"young":   {Name: "young", State: supervise.StateRunning, Health: supervise.HealthUnknown},
		"down":    {Name: "down", State: supervise.StateStopped, Health: supervise.HealthHealthy},
		"looping": {Name: "looping", State: supervise.StateCrashLoop, Restarts: 5},
	}}
	tests := []struct {
		name       string
		wouldStart bool
		want       ServiceHealth
	}{
		{"up", false, ServiceHealth{Name: "up", Health: supervise.HealthHealthy}},
		{"sick", false, ServiceHealth{Name: "sick", Health: supervise.HealthUnhealthy, Detail: "http: 500"}},
		{"young", false, ServiceHealth{Name: "young", Health: supervise.HealthUnknown, Detail: "no verdict from its health check yet"}},
		{"down", false, ServiceHealth{Name: "down", Health: supervise.HealthUnhealthy, Detail: "not running (stopped)"}},
		{"looping", false, ServiceHealth{Name: "looping", Health: supervise.HealthUnhealthy, Detail: "not running: service looping is in a crash loop (given up after 5 restarts)"}},
		{"gone", false, ServiceHealth{Name: "gone", Health: supervise.HealthUnhealthy, Detail: "not running: the supervisor does not know it"}},
		{"gone", true, ServiceHealth{Name: "gone", Health: supervise.HealthUnknown, Detail: "not running yet: the run would start it (noop)"}},
		{"down", true, ServiceHealth{Name: "down", Health: supervise.HealthUnknown, Detail: "not running yet: the run would start it (noop)"}},
		{"sick", true, ServiceHealth{Name: "sick", Health: supervise.HealthUnhealthy, Detail: "http: 500"}},
	}
	for _, tt := range tests {
		got := readHealth(context.Background(), svcs, tt.name, tt.wouldStart)
		if diff := gocmp.Diff(tt.want, got); diff != "" {
			t.Errorf("readHealth(%s, wouldStart %v) (-want +got):\n%s", tt.name, tt.wouldStart, diff)
		}
	}
	// The records a noop run reads without a supervisor say nothing of
	// health.
	if got := readHealth(context.Background(), &recordView{}, "up", false); got.Health != supervise.HealthUnknown || got.Detail == "" {
		t.Errorf("readHealth from records = %+v, want unknown, saying why", got)
	}
}

// TestServicesHealthNoCheckAllocatesNothing: a run whose services have no
// health check pays nothing for the health report.
func TestServicesHealthNoCheckAllocatesNothing(t *testing.T) {
	cat := testCatalog("web-01", "v1", serviceRes("a", []string{"/bin/sleep", "1"}), serviceRes("b", []string{"/bin/sleep", "1"}),
		fileRes("/etc/motd", "x\n"))
	events := []Event{{ID: "file:/etc/motd", Status: InSync}, {ID: "service:a", Status: InSync}, {ID: "service:b", Status: InSync}}
	svcs := &fakeHealth{}
	var got []ServiceHealth
	allocs := testing.AllocsPerRun(100, func() { got = servicesHealth(context.Background(), svcs, cat, events, false) })
	if got != nil || allocs != 0 {
		t.Errorf("servicesHealth without checks = %v, %v allocations; want nil, none", got, allocs)
	}
}

// TestReportProtoServices: the health travels in the report.
func TestReportProtoServices(t *testing.T) {
	t.Parallel()
	r := &Report{RunID: "r1", Services: []ServiceHealth{
		{Name: "a", Health: supervise.HealthHealthy},
		{Name: "b", Health: supervise.HealthUnhealthy, Detail: "tcp: refused"},
	}}
	want := []*herdv1.ServiceHealth{{Name: "a", Health: "healthy"}, {Name: "b", Health: "unhealthy", Detail: "tcp: refused"}}
	if diff := gocmp.Diff(want, r.Proto().Services, protocmp.Transform()); diff != "" {
		t.Errorf("Proto().Services (-want +got):\n%s", diff)
	}
	if p := (&Report{RunID: "r2"}).Proto(); p.Services != nil {
		t.Errorf("Proto() of a report without services = %v, want nil", p.Services)
	}
}
