package fleet_test

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/herdcm/herd/api/herdv1"
	"github.com/herdcm/herd/catalogs"
	"github.com/herdcm/herd/testkit"
	"github.com/herdcm/herd/testkit/fleet"
)

// These tests are rollouts end to end with real parts: the server's
// rollout controller and gates, and real agents over mutual TLS on
// 127.0.0.1, each converging its own sandbox root. Every node's
// /etc/motd says the site version's greeting, so that what a node runs
// is read from its disk, not from what the server believes.

const await = 60 * time.Second

// rolloutSite is a site whose every node gets /etc/motd saying
// "NODE: GREETING", with herd.toml's settings and extra files.
func rolloutSite(t *testing.T, herdToml string, extra map[string]string) string {
	t.Helper()
	files := map[string]string{
		"herd.toml":  herdToml,
		"nodes.toml": "[[node]]\nroles = [\"base\"]\n",
		"roles/base.toml": `
[[file]]
path = "/etc/motd"
content = "{{ .node }}: {{ .params.greeting }}\n"
`,
		"data/common.toml": "greeting = \"v1\"\n",
	}
	for k, v := range extra {
		files[k] = v
	}
	return testkit.WriteSite(t, files)
}

// motd is what node's /etc/motd says.
func motd(t *testing.T, a *fleet.Agent) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(a.Root, "etc/motd"))
	if err != nil {
		t.Fatalf("%s: %v", a.Name, err)
	}
	return strings.TrimSpace(string(b))
}

// assertGreetings fails unless each agent's motd has the greeting want
// gives for it.
func assertGreetings(t *testing.T, f *fleet.Fleet, when string, want func(node string) string) {
	t.Helper()
	for _, a := range f.Agents {
		if got, w := motd(t, a), a.Name+": "+want(a.Name); got != w {
			t.Errorf("%s: %s's motd = %q, want %q", when, a.Name, got, w)
		}
	}
}

// awaitGreeting waits until the agent's motd says greeting.
func awaitGreeting(t *testing.T, a *fleet.Agent, greeting string) {
	t.Helper()
	want := a.Name + ": " + greeting
	deadline := time.Now().Add(await)
	for {
		b, _ := os.ReadFile(filepath.Join(a.Root, "etc/motd"))
		if strings.TrimSpace(string(b)) == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s's motd = %q, want %q", a.Name, b, want)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func stageState(name, state string) func(*herdv1.GetRolloutResponse) bool {
	return func(r *herdv1.GetRolloutResponse) bool {
		s := fleet.Stage(r.Rollout, name)
		return s != nil && s.State == state
	}
}

func rolloutState(state string) func(*herdv1.GetRolloutResponse) bool {
	return func(r *herdv1.GetRolloutResponse) bool { return r.Rollout.State == state }
}

func action(t *testing.T, f *fleet.Fleet, id int64, what string) *herdv1.Rollout {
	t.Helper()
	resp, err := f.Admin.RolloutAction(context.Background(), &herdv1.RolloutActionRequest{Id: id, Action: what})
	if err != nil {
		t.Fatalf("%s rollout %d: %v", what, id, err)
	}
	return resp.Rollout
}

// TestRolloutStages: a good change goes to the canary, then to the half
// of the fleet the percent stage picks (by the stable hash of the name),
// then to everyone, each stage only once the one before is healthy and,
// here, approved; until its stage starts a node runs the old catalog.
func TestRolloutStages(t *testing.T) {
	t.Parallel()
	site := rolloutSite(t, `
[[rollout.stage]]
name = "canary"
nodes = ["node-1"]

[[rollout.stage]]
name = "half"
percent = 50
approve = "manual"

[[rollout.stage]]
name = "everyone"
approve = "manual"
`, nil)
	const n = 6
	// Which nodes the percent stage takes, as the site format defines it:
	// the test depends on both later stages having nodes.
	stageOf := map[string]string{"node-1": "canary"}
	for i := 2; i <= n; i++ {
		name := fmt.Sprintf("node-%d", i)
		stageOf[name] = "everyone"
		if catalogs.Bucket(name) < 5000 {
			stageOf[name] = "half"
		}
	}
	if !slices.Contains(slices.Collect(maps.Values(stageOf)), "half") || !slices.Contains(slices.Collect(maps.Values(stageOf)), "everyone") {
		t.Fatalf("node names %v leave a stage empty; pick another fleet size", stageOf)
	}
	f := fleet.NewFleet(t, site, n)
	before := f.AwaitConverged(await, nil)
	v1 := f.Version()
	assertGreetings(t, f, "before the change", func(string) string { return "v1" })

	f.WriteSite(map[string]string{"data/common.toml": "greeting = \"v2\"\n"})
	r := f.AwaitRollout(await, v1, "waiting for approval of stage half", stageState("half", "awaiting-approval"))
	if s := fleet.Stage(r.Rollout, "canary"); s.State != "done" || s.Counts["healthy"] != 1 {
		t.Errorf("canary stage = %v, want done with 1 healthy node", s)
	}
	for _, rn := range r.Nodes {
		if rn.Stage != stageOf[rn.Node] {
			t.Errorf("%s is in stage %q, want %q (percent picks by catalogs.Bucket)", rn.Node, rn.Stage, stageOf[rn.Node])
		}
	}
	assertGreetings(t, f, "canary healthy, half awaiting approval", func(node string) string {
		if stageOf[node] == "canary" {
			return "v2"
		}
		return "v1"
	})
	if ap := f.Approved(); ap["node-2"] != before["node-2"] {
		t.Errorf("node-2 is approved %s before its stage started, want still %s", ap["node-2"], before["node-2"])
	}

	action(t, f, r.Rollout.Id, "approve")
	r = f.AwaitRollout(await, v1, "waiting for approval of stage everyone", stageState("everyone", "awaiting-approval"))
	if s := fleet.Stage(r.Rollout, "half"); s.State != "done" {
		t.Errorf("half stage = %v, want done", s)
	}
	assertGreetings(t, f, "half done, everyone awaiting approval", func(node string) string {
		if stageOf[node] == "everyone" {
			return "v1"
		}
		return "v2"
	})

	action(t, f, r.Rollout.Id, "approve")
	r = f.AwaitRollout(await, v1, "done", rolloutState("done"))
	for _, s := range r.Rollout.Stages {
		if s.State != "done" {
			t.Errorf("stage %s = %s after the rollout is done", s.Name, s.State)
		}
	}
	f.AwaitConverged(await, before)
	assertGreetings(t, f, "after the rollout", func(string) string { return "v2" })
}

// TestRolloutHaltsOnBrokenCanary: a change that fails on the canary halts
// the rollout by itself: an exec that exits 3, or a service left running
// but failing its health check (the canary's report says it is
// unhealthy). The halt names the node and how it failed, and the rest of
// the fleet stays on its old catalog, on disk too.
func TestRolloutHaltsOnBrokenCanary(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		services bool   // the agents supervise services
		resource string // what breaks the canary, added to roles/base.toml
		failure  []string
	}{
		{
			name: "failing exec",
			resource: `
[[exec]]
name = "migrate"
command = ["/bin/sh", "-c", "echo the migration failed >&2; exit 3"]
`,
			failure: []string{"exec:migrate"},
		},
		{
			name:     "unhealthy service",
			services: true,
			resource: `
[[service]]
name = "web"
run = ["/bin/sleep", "3600"]
health = { exec = ["/bin/sh", "-c", "echo port 8080 refused >&2; exit 1"], interval = "100ms", timeout = "1s", retries = 1 }
`,
			failure: []string{"web", "unhealthy"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			site := rolloutSite(t, `
[[rollout.stage]]
name = "canary"
nodes = ["node-1"]
max_failed = 0

[[rollout.stage]]
name = "rest"
`, nil)
			f := fleet.NewFleetWith(t, site, 3, fleet.Options{Services: tc.services})
			before := f.AwaitConverged(await, nil)
			v1 := f.Version()

			f.WriteSite(map[string]string{
				"data/common.toml": "greeting = \"v2\"\n",
				"roles/base.toml": `
[[file]]
path = "/etc/motd"
content = "{{ .node }}: {{ .params.greeting }}\n"
` + tc.resource,
			})
			r := f.AwaitRollout(await, v1, "halted", rolloutState("halted"))
			if !strings.Contains(r.Rollout.Reason, "node-1") {
				t.Errorf("the halt's reason %q does not name the failed canary node-1", r.Rollout.Reason)
			}
			canary := fleet.Node(r, "node-1")
			if canary == nil || canary.State != "failed" || !slices.ContainsFunc(canary.Failures, func(s string) bool {
				for _, w := range tc.failure {
					if !strings.Contains(s, w) {
						return false
					}
				}
				return true
			}) {
				t.Errorf("node-1 in the halted rollout = %v, want failed with %q among its failures", canary, tc.failure)
			}
			if s := fleet.Stage(r.Rollout, "rest"); s == nil || s.State == "done" || s.Counts["released"]+s.Counts["healthy"]+s.Counts["failed"] != 0 {
				t.Errorf("stage rest = %v, want nothing released", s)
			}
			ap := f.Approved()
			for _, a := range f.Agents[1:] {
				if ap[a.Name] != before[a.Name] {
					t.Errorf("%s is approved %s, want its old catalog %s", a.Name, ap[a.Name], before[a.Name])
				}
				if got := motd(t, a); got != a.Name+": v1" {
					t.Errorf("%s's motd = %q, want the old version's", a.Name, got)
				}
			}
		})
	}
}

// gate denies any file whose content says "forbidden".
const gate = `package herd.gate

deny contains msg if {
	some r in input.catalog.resources
	r.type == "file"
	contains(r.attrs.content, "forbidden")
	msg := sprintf("%s must not say forbidden", [r.id])
}
`

// TestRolloutDenied: with on_deny = "block", a change the gate denies
// reaches no node, the rollout is blocked, and every node's deny message
// is in GetRollout's answer.
func TestRolloutDenied(t *testing.T) {
	t.Parallel()
	site := rolloutSite(t, "[policy]\non_deny = \"block\"\n", map[string]string{"policies/gate.rego": gate})
	f := fleet.NewFleet(t, site, 2)
	before := f.AwaitConverged(await, nil)
	v1 := f.Version()

	f.WriteSite(map[string]string{"data/common.toml": "greeting = \"forbidden\"\n"})
	r := f.AwaitRollout(await, v1, "blocked", rolloutState("blocked"))
	for _, a := range f.Agents {
		rn := fleet.Node(r, a.Name)
		if rn == nil || rn.Decision != "denied" || !slices.ContainsFunc(rn.Deny, func(m *herdv1.PolicyMessage) bool {
			return strings.Contains(m.Message, "file:/etc/motd must not say forbidden")
		}) {
			t.Errorf("%s in the blocked rollout = %v, want denied with the gate's message", a.Name, rn)
		}
	}
	if ap := f.Approved(); !maps.Equal(ap, before) {
		t.Errorf("approved catalogs changed under a blocked rollout: %v, want %v", ap, before)
	}
	for _, s := range r.Rollout.Stages {
		if n := s.Counts["released"] + s.Counts["healthy"] + s.Counts["failed"]; n != 0 {
			t.Errorf("stage %s of a blocked rollout released %d nodes", s.Name, n)
		}
	}
	assertGreetings(t, f, "after a denied change", func(string) string { return "v1" })
}

// TestRolloutAbort: aborting a rollout whose canary runs the new version
// puts it back on the previous one at once; nobody else ever got it.
func TestRolloutAbort(t *testing.T) {
	t.Parallel()
	site := rolloutSite(t, `
[[rollout.stage]]
name = "canary"
nodes = ["node-1"]

[[rollout.stage]]
name = "rest"
approve = "manual"
`, nil)
	f := fleet.NewFleet(t, site, 3)
	before := f.AwaitConverged(await, nil)
	v1 := f.Version()

	f.WriteSite(map[string]string{"data/common.toml": "greeting = \"v2\"\n"})
	r := f.AwaitRollout(await, v1, "waiting for approval of stage rest", stageState("rest", "awaiting-approval"))
	awaitGreeting(t, f.Agents[0], "v2")

	if got := action(t, f, r.Rollout.Id, "abort"); got.State != "aborted" {
		t.Errorf("abort answered state %q, want aborted", got.State)
	}
	for _, a := range f.Agents {
		awaitGreeting(t, a, "v1")
	}
	if ap := f.Approved(); !maps.Equal(ap, before) {
		t.Errorf("after abort the approved catalogs are %v, want the previous ones %v", ap, before)
	}
	f.AwaitConverged(await, nil)
	r, err := f.Rollout(r.Rollout.Id)
	if err != nil {
		t.Fatal(err)
	}
	if r.Rollout.State != "aborted" {
		t.Errorf("rollout %d = %s, want aborted", r.Rollout.Id, r.Rollout.State)
	}
}

// TestRolloutSurvivesRestart: a server stopped while a rollout waits
// for approval comes back with the same rollout at the same place; the
// approval then finishes it.
func TestRolloutSurvivesRestart(t *testing.T) {
	t.Parallel()
	site := rolloutSite(t, `
[[rollout.stage]]
name = "canary"
nodes = ["node-1"]

[[rollout.stage]]
name = "rest"
approve = "manual"
`, nil)
	f := fleet.NewFleetWith(t, site, 3, fleet.Options{Retry: 50 * time.Millisecond, ConnectWait: 200 * time.Millisecond})
	before := f.AwaitConverged(await, nil)
	v1 := f.Version()

	f.WriteSite(map[string]string{"data/common.toml": "greeting = \"v2\"\n"})
	r := f.AwaitRollout(await, v1, "waiting for approval of stage rest", stageState("rest", "awaiting-approval"))
	awaitGreeting(t, f.Agents[0], "v2")

	f.StopServer()
	f.StartServer()
	after, err := f.Rollout(0)
	if err != nil {
		t.Fatalf("the rollout after the restart: %v", err)
	}
	if after.Rollout.Id != r.Rollout.Id || after.Rollout.Version != r.Rollout.Version {
		t.Fatalf("after the restart the newest rollout is %d of %s, want %d of %s", after.Rollout.Id, after.Rollout.Version, r.Rollout.Id, r.Rollout.Version)
	}
	if s := fleet.Stage(after.Rollout, "canary"); s.State != "done" {
		t.Errorf("after the restart stage canary = %s, want done", s.State)
	}
	if s := fleet.Stage(after.Rollout, "rest"); s.State != "awaiting-approval" {
		t.Errorf("after the restart stage rest = %s, want awaiting-approval", s.State)
	}
	if ap := f.Approved(); ap["node-2"] != before["node-2"] || ap["node-1"] == before["node-1"] {
		t.Errorf("after the restart approved = %v; want node-1 on the new catalog and the rest on %v", ap, before)
	}
	assertGreetings(t, f, "after the restart", func(node string) string {
		if node == "node-1" {
			return "v2"
		}
		return "v1"
	})

	action(t, f, r.Rollout.Id, "approve")
	f.AwaitRollout(await, v1, "done", rolloutState("done"))
	f.AwaitConverged(await, before)
	assertGreetings(t, f, "after the approval", func(string) string { return "v2" })
}
