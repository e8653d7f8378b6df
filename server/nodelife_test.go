package server

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/herdcm/herd/api/herdv1"
)

// listed returns the nodes ListNodes lists, each with whether it is
// deactivated.
func (h *rolloutHarness) listed(inactive bool) map[string]bool {
	h.t.Helper()
	list := func(where string) map[string]bool {
		out := map[string]bool{}
		for token := ""; ; {
			resp, err := h.admin.ListNodes(context.Background(), &herdv1.ListNodesRequest{Inactive: inactive, PageToken: token, Where: where})
			if err != nil {
				h.t.Fatalf("ListNodes: %v", err)
			}
			for _, n := range resp.Nodes {
				out[n.Name] = n.DeactivatedUnixMs != 0
			}
			if token = resp.NextPageToken; token == "" {
				return out
			}
		}
	}
	out := list("")
	// A fleet query over facts (the path that reads the facts in memory)
	// lists no node ListNodes leaves out (and no node without facts), and
	// FleetFacts lists the same nodes.
	for name, deactivated := range list(`os.family == "debian"`) {
		if listed, ok := out[name]; !ok || listed != deactivated {
			h.t.Errorf("ListNodes(where facts) lists %s (deactivated %v); ListNodes = %v", name, deactivated, out)
		}
	}
	ff := map[string]bool{}
	for token := ""; ; {
		resp, err := h.admin.FleetFacts(context.Background(), &herdv1.FleetFactsRequest{Fact: "os.family", Inactive: inactive, PageToken: token})
		if err != nil {
			h.t.Fatalf("FleetFacts: %v", err)
		}
		for _, f := range resp.Facts {
			ff[f.Node] = out[f.Node]
		}
		if token = resp.NextPageToken; token == "" {
			break
		}
	}
	if !maps.Equal(ff, out) {
		h.t.Errorf("FleetFacts listed %v, ListNodes %v: want the same nodes", ff, out)
	}
	return out
}

// lifecycle asks the server for action on node.
func (h *rolloutHarness) lifecycle(node, action string) (*herdv1.NodeLifecycleResponse, error) {
	return h.admin.NodeLifecycle(context.Background(), &herdv1.NodeLifecycleRequest{Node: node, Action: action})
}

// TestDeactivateHidesAndCheckinBringsBack: a deactivated node leaves
// ListNodes (unless inactive) and the next rollout's plan; its next
// check-in makes it active again, as activate does.
func TestDeactivateHidesAndCheckinBringsBack(t *testing.T) {
	t.Parallel()
	h := newRolloutHarness(t, rolloutSite("", "hello"), "n-0", "n-1")
	resp, err := h.lifecycle("n-1", "deactivate")
	if err != nil {
		t.Fatalf("NodeLifecycle(n-1, deactivate): %v", err)
	}
	if resp.Node.GetName() != "n-1" || resp.Node.GetDeactivatedUnixMs() == 0 {
		t.Errorf("NodeLifecycle(deactivate) = %v, want n-1 with its deactivation time", resp.Node)
	}
	if got, want := h.listed(false), map[string]bool{"n-0": false}; !cmp.Equal(got, want) {
		t.Errorf("ListNodes = %v, want %v", got, want)
	}
	if got, want := h.listed(true), map[string]bool{"n-0": false, "n-1": true}; !cmp.Equal(got, want) {
		t.Errorf("ListNodes(inactive) = %v, want %v", got, want)
	}

	// The next rollout plans without it.
	h.commit(rolloutSite("", "good morning"))
	_, nodes := h.get()
	if got := sortedKeys(nodes); !cmp.Equal(got, []string{"n-0"}) {
		t.Errorf("the new rollout plans %v, want [n-0]", got)
	}

	// A check-in brings it back, and it gets the served version.
	before := h.nodes["n-1"].etag
	h.checkinFacts("n-1", "debian")
	if got, want := h.listed(false), map[string]bool{"n-0": false, "n-1": false}; !cmp.Equal(got, want) {
		t.Errorf("after n-1 checked in, ListNodes = %v, want %v", got, want)
	}
	if h.s.inactive.has("n-1") {
		t.Error("after n-1 checked in, the server still holds it deactivated")
	}
	if h.nodes["n-1"].etag == before {
		t.Error("after n-1 checked in with new facts, it still runs its old catalog")
	}

	// Deactivated and activated by an operator, across a restart.
	if _, err := h.lifecycle("n-0", "deactivate"); err != nil {
		t.Fatal(err)
	}
	h.restart()
	if got, want := h.listed(true), map[string]bool{"n-0": true, "n-1": false}; !cmp.Equal(got, want) {
		t.Errorf("after a restart, ListNodes(inactive) = %v, want %v", got, want)
	}
	if !h.s.inactive.has("n-0") {
		t.Error("after a restart, the server forgot n-0 is deactivated")
	}
	resp, err = h.lifecycle("n-0", "activate")
	if err != nil || resp.Node.GetDeactivatedUnixMs() != 0 {
		t.Fatalf("NodeLifecycle(n-0, activate) = %v, %v; want it active", resp, err)
	}
	if got, want := h.listed(false), map[string]bool{"n-0": false, "n-1": false}; !cmp.Equal(got, want) {
		t.Errorf("after activate, ListNodes = %v, want %v", got, want)
	}
}

// TestNodeLifecycleRefuses: unknown nodes, actions and names, and
// callers that are not admins.
func TestNodeLifecycleRefuses(t *testing.T) {
	t.Parallel()
	h := newRolloutHarness(t, rolloutSite("", "hello"), "n-0")
	for _, tt := range []struct {
		node, action string
		want         codes.Code
	}{
		{"nobody", "deactivate", codes.NotFound},
		{"nobody", "activate", codes.NotFound},
		{"nobody", "purge", codes.NotFound},
		{"n-0", "delete", codes.InvalidArgument},
		{"", "purge", codes.InvalidArgument},
		{"../n-0", "purge", codes.InvalidArgument},
	} {
		_, err := h.lifecycle(tt.node, tt.action)
		if status.Code(err) != tt.want {
			t.Errorf("NodeLifecycle(%q, %q) = %v, want %v", tt.node, tt.action, err, tt.want)
		}
	}
	nc := herdv1.NewAdminClient(dial(t, h.s, &h.nodes["n-0"].cert))
	_, err := nc.NodeLifecycle(context.Background(), &herdv1.NodeLifecycleRequest{Node: "n-0", Action: "purge"})
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("NodeLifecycle with a node's certificate = %v, want PermissionDenied", err)
	}
	if got, want := h.listed(false), map[string]bool{"n-0": false}; !cmp.Equal(got, want) {
		t.Errorf("after refused calls, ListNodes = %v, want %v", got, want)
	}
}

// TestPurgeDeletesAndRevokes: a purge deletes the node's facts, reports
// and row, ends its streams, and revokes its certificate: its next call
// is refused.
func TestPurgeDeletesAndRevokes(t *testing.T) {
	t.Parallel()
	h := newRolloutHarness(t, rolloutSite("", "hello"), "n-0", "n-1")
	ctx := context.Background()
	ws, err := h.nodes["n-1"].c.Watch(ctx, &herdv1.WatchRequest{Etag: h.nodes["n-1"].etag})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.lifecycle("n-1", "purge"); err != nil {
		t.Fatalf("NodeLifecycle(n-1, purge): %v", err)
	}
	if got, want := h.listed(true), map[string]bool{"n-0": false}; !cmp.Equal(got, want) {
		t.Errorf("after purge, ListNodes(inactive) = %v, want %v", got, want)
	}
	if _, err := h.admin.GetFacts(ctx, &herdv1.GetFactsRequest{Node: "n-1"}); status.Code(err) != codes.NotFound {
		t.Errorf("GetFacts(n-1) after purge = %v, want NotFound", err)
	}
	if _, err := h.admin.GetCatalog(ctx, &herdv1.GetCatalogRequest{Node: "n-1"}); status.Code(err) != codes.NotFound {
		t.Errorf("GetCatalog(n-1) after purge = %v, want NotFound", err)
	}
	// A purged node is no node: its reports are gone, and asking for
	// them says so rather than listing nothing (herd reports NAME).
	reps, err := h.admin.ListReports(ctx, &herdv1.ListReportsRequest{Node: "n-1"})
	if status.Code(err) != codes.NotFound || len(reps.GetReports()) != 0 {
		t.Errorf("ListReports(n-1) after purge = %d reports, %v; want none, NotFound", len(reps.GetReports()), err)
	}
	// A node that is known but has not reported lists nothing, no error.
	if reps, err := h.admin.ListReports(ctx, &herdv1.ListReportsRequest{Node: "n-0"}); err != nil {
		t.Errorf("ListReports(n-0) = %d reports, %v; want no error", len(reps.GetReports()), err)
	}
	if _, ok := h.s.facts.get("n-1"); ok {
		t.Error("the server still holds n-1's facts in memory: the next rollout would plan it")
	}
	if _, err := ws.Recv(); status.Code(err) != codes.Unauthenticated {
		t.Errorf("n-1's Watch stream after purge ended with %v, want Unauthenticated", err)
	}
	b, d := factsJSON(t, map[string]any{"os": map[string]any{"family": "debian"}})
	_, err = h.nodes["n-1"].c.Checkin(ctx, &herdv1.CheckinRequest{FactsJson: b, FactsDigest: d})
	if status.Code(err) != codes.Unauthenticated {
		t.Errorf("n-1's check-in after purge = %v, want Unauthenticated (revoked)", err)
	}
	if got := h.listed(true); got["n-1"] {
		t.Error("a refused check-in brought the purged node back")
	}
	if _, err := h.lifecycle("n-1", "purge"); status.Code(err) != codes.NotFound {
		t.Errorf("purging n-1 again = %v, want NotFound", err)
	}
	// n-0 is untouched.
	if resp := h.checkin("n-0"); resp.Status != herdv1.CheckinResponse_UNCHANGED {
		t.Errorf("n-0's check-in after n-1's purge = %v, want UNCHANGED", resp.Status)
	}
}

// TestRolloutGoesOnWithoutALeavingNode: a canary that will never report
// again (deactivated or purged mid-stage) does not hold its stage for
// ever: the rollout goes on to the rest and completes.
func TestRolloutGoesOnWithoutALeavingNode(t *testing.T) {
	t.Parallel()
	const stages = `
[[rollout.stage]]
name = "canary"
nodes = ["n-0", "n-1"]
`
	for _, action := range []string{"deactivate", "purge"} {
		t.Run(action, func(t *testing.T) {
			t.Parallel()
			h := newRolloutHarness(t, rolloutSite(stages, "hello"), "n-0", "n-1", "n-2", "n-3")
			h.commit(rolloutSite(stages, "good morning"))
			for _, n := range []string{"n-0", "n-1"} {
				if resp := h.checkin(n); resp.Status != herdv1.CheckinResponse_NEW_CATALOG {
					t.Fatalf("canary %s's check-in = %v, want NEW_CATALOG", n, resp.Status)
				}
			}
			h.report("n-0", h.nodes["n-0"].etag, false, nil)
			r, _ := h.get()
			if got := stageStates(r)["canary"]; got != stageReleasing {
				t.Fatalf("with n-1 not reported, canary is %s, want %s", got, stageReleasing)
			}
			if _, err := h.lifecycle("n-1", action); err != nil {
				t.Fatalf("NodeLifecycle(n-1, %s): %v", action, err)
			}
			r, nodes := h.get()
			if got := stageStates(r); got["canary"] != stageDone || got["rest"] != stageReleasing {
				t.Fatalf("after n-1 left, stages = %v, want canary done and rest releasing", got)
			}
			if n, ok := nodes["n-1"]; action == "deactivate" && n.GetState() != nodeInactive || action == "purge" && ok {
				t.Errorf("after %s, n-1 in the rollout = %v", action, n)
			}
			for _, n := range []string{"n-2", "n-3"} {
				if resp := h.checkin(n); resp.Status != herdv1.CheckinResponse_NEW_CATALOG {
					t.Fatalf("%s's check-in = %v, want NEW_CATALOG", n, resp.Status)
				}
				h.report(n, h.nodes[n].etag, false, nil)
			}
			if r, _ := h.get(); r.State != rolloutDone {
				t.Errorf("rollout = %s (%s), want done", r.State, r.Reason)
			}
		})
	}
}

// TestRehearsalGoesOnWithoutALeavingNode: a rehearsal stage does not
// wait for the noop run of a node deactivated before it rehearsed; the
// next stage releases the rest, and the node, back, rejoins it.
func TestRehearsalGoesOnWithoutALeavingNode(t *testing.T) {
	t.Parallel()
	const stages = `
[[rollout.stage]]
name = "rehearsal"
nodes = ["n-0", "n-1"]
noop = true

[[rollout.stage]]
name = "canary"
nodes = ["n-0", "n-1"]
`
	h := newRolloutHarness(t, rolloutSite(stages, "hello"), "n-0", "n-1", "n-2")
	h.commit(rolloutSite(stages, "rehearsed"))
	resp := h.checkin("n-0")
	if resp.Rehearsal == nil {
		t.Fatal("n-0 got no rehearsal")
	}
	h.report("n-0", resp.Rehearsal.Etag, true, nil)
	if r, _ := h.get(); stageStates(r)["rehearsal"] != stageRehearsing {
		t.Fatalf("with n-1 not rehearsed, stages = %v, want rehearsal rehearsing", stageStates(r))
	}
	if _, err := h.lifecycle("n-1", "deactivate"); err != nil {
		t.Fatal(err)
	}
	if h.s.rehearse.get("n-1") != nil {
		t.Error("the deactivated n-1 still has a rehearsal waiting")
	}
	r, nodes := h.get()
	if s := stageStates(r); s["rehearsal"] != stageDone || s["canary"] != stageReleasing {
		t.Fatalf("after n-1 left, stages = %v, want rehearsal done and canary releasing", s)
	}
	if nodes["n-1"].State != nodeInactive {
		t.Errorf("n-1 in the rollout = %s, want %s", nodes["n-1"].State, nodeInactive)
	}
	// n-1 comes back while canary releases: it is released with it.
	if resp := h.checkin("n-1"); resp.Status != herdv1.CheckinResponse_NEW_CATALOG {
		t.Fatalf("n-1's check-in once back = %v, want NEW_CATALOG (released with canary)", resp.Status)
	}
	if _, nodes := h.get(); nodes["n-1"].State != nodeReleased {
		t.Errorf("n-1 once back = %s, want %s", nodes["n-1"].State, nodeReleased)
	}
}

// TestNodeTTLSweep: with the clock handed to sweep, nodes idle for
// node_ttl are deactivated and, node_purge_ttl later, purged and revoked.
func TestNodeTTLSweep(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, func(o *Options) { o.NodeTTL, o.NodePurgeTTL = time.Hour, 2*time.Hour },
		rolloutSite("", "hello"), "n-0", "n-1")
	ctx := context.Background()
	now := time.Now()
	// Silent for three hours, as during a server outage: not deactivated
	// before the server has served for node_ttl.
	if err := h.s.st.Checkin(ctx, "old", now.Add(-3*time.Hour), "v", now); err != nil {
		t.Fatal(err)
	}

	h.s.sweep(ctx, now.Add(30*time.Minute))
	if got, want := h.listed(true), map[string]bool{"n-0": false, "n-1": false, "old": false}; !cmp.Equal(got, want) {
		t.Fatalf("before the server served for node_ttl, ListNodes = %v, want %v", got, want)
	}
	if _, err := h.lifecycle("old", "purge"); err != nil {
		t.Fatal(err)
	}
	h.s.sweep(ctx, now.Add(90*time.Minute))
	if got, want := h.listed(true), map[string]bool{"n-0": true, "n-1": true}; !cmp.Equal(got, want) {
		t.Fatalf("past node_ttl, ListNodes(inactive) = %v, want %v", got, want)
	}
	// n-0 checks in (at the real now) and is back; n-1 stays away.
	h.checkin("n-0")
	if got, want := h.listed(false), map[string]bool{"n-0": false}; !cmp.Equal(got, want) {
		t.Fatalf("after n-0 checked in, ListNodes = %v, want %v", got, want)
	}
	// node_purge_ttl after n-1's deactivation, n-1 is purged; n-0, idle
	// again by the clock handed to sweep, is only deactivated (now).
	h.s.sweep(ctx, now.Add(90*time.Minute+2*time.Hour+time.Second))
	if got, want := h.listed(true), map[string]bool{"n-0": true}; !cmp.Equal(got, want) {
		t.Fatalf("past node_purge_ttl, ListNodes(inactive) = %v, want %v", got, want)
	}
	b, d := factsJSON(t, map[string]any{"os": map[string]any{"family": "debian"}})
	_, err := h.nodes["n-1"].c.Checkin(ctx, &herdv1.CheckinRequest{FactsJson: b, FactsDigest: d})
	if status.Code(err) != codes.Unauthenticated {
		t.Errorf("the purged n-1's check-in = %v, want Unauthenticated (revoked)", err)
	}
}

// TestNodeTTLSweepRuns: the sweep runs by itself on a real clock with a
// tiny node_ttl, and stops with the server.
func TestNodeTTLSweepRuns(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, func(o *Options) { o.NodeTTL = 200 * time.Millisecond }, rolloutSite("", "hello"), "n-0")
	deadline := time.Now().Add(10 * time.Second)
	for !h.s.inactive.has("n-0") {
		if time.Now().After(deadline) {
			t.Fatal("n-0 was not deactivated within 10s of a 200ms node_ttl")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got, want := h.listed(true), map[string]bool{"n-0": true}; !cmp.Equal(got, want) {
		t.Errorf("ListNodes(inactive) = %v, want %v", got, want)
	}
}

func TestCheckNodeTTLs(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		ttl, purge time.Duration
		ok         bool
	}{
		{0, 0, true},
		{time.Hour, 0, true},
		{time.Hour, time.Hour, true},
		{time.Hour, 2 * time.Hour, true},
		{0, time.Hour, false},
		{2 * time.Hour, time.Hour, false},
		{-time.Hour, 0, false},
		{time.Hour, -time.Hour, false},
	} {
		if err := CheckNodeTTLs(tt.ttl, tt.purge); (err == nil) != tt.ok {
			t.Errorf("CheckNodeTTLs(%s, %s) = %v, want ok %v", tt.ttl, tt.purge, err, tt.ok)
		}
	}
	_, err := New(context.Background(), Options{Site: t.TempDir(), Dir: t.TempDir(), NodePurgeTTL: time.Hour})
	if err == nil {
		t.Error("New with node_purge_ttl and no node_ttl = nil, want an error")
	}
}

// FuzzNodeLifecycle feeds NodeLifecycle, a network entry point, any node
// name and action: it answers OK, InvalidArgument or NotFound, never
// panics, and touches no node but the one named.
func FuzzNodeLifecycle(f *testing.F) {
	for _, seed := range [][2]string{{"n-0", "deactivate"}, {"n-0", "activate"}, {"n-0", "purge"}, {"n-1", "purge"},
		{"", "purge"}, {"../n-0", "deactivate"}, {"n-0\x00", "purge"}, {"N-0", "purge"}, {"n-0", "Purge"}} {
		f.Add(seed[0], seed[1])
	}
	site := f.TempDir()
	for name, body := range rolloutSite("", "hello") {
		p := filepath.Join(site, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			f.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			f.Fatal(err)
		}
	}
	s, err := New(context.Background(), Options{Site: site, Dir: f.TempDir(), HTTPListen: "off"})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close() })
	a := &adminService{s: s}
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, node, action string) {
		if !utf8.ValidString(node) || !utf8.ValidString(action) {
			return // protobuf refuses invalid UTF-8 in strings on the wire
		}
		for _, n := range []string{"n-0", "bystander"} {
			if err := s.st.Checkin(ctx, n, time.Now(), "v", time.Now()); err != nil {
				t.Fatal(err)
			}
		}
		_, err := a.NodeLifecycle(ctx, &herdv1.NodeLifecycleRequest{Node: node, Action: action})
		switch status.Code(err) {
		case codes.OK, codes.InvalidArgument, codes.NotFound:
		default:
			t.Fatalf("NodeLifecycle(%q, %q) = %v", node, action, err)
		}
		if err == nil && action != "deactivate" && action != "activate" && action != "purge" {
			t.Fatalf("NodeLifecycle(%q, %q) accepted an unknown action", node, action)
		}
		if node == "bystander" {
			return
		}
		if n, ok, err := s.st.Node(ctx, "bystander"); err != nil || !ok || !n.Deactivated.IsZero() {
			t.Fatalf("NodeLifecycle(%q, %q) touched another node: %+v, %v, %v", node, action, n, ok, err)
		}
	})
}
