package server

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/herdcm/herd/api/herdv1"
	"github.com/herdcm/herd/catalogs"
)

var sixNodes = []string{"n-0", "n-1", "n-2", "n-3", "n-4", "n-5"}

const canaryHalfRest = `
[[rollout.stage]]
name = "canary"
nodes = ["n-0"]

[[rollout.stage]]
name = "half"
percent = 50
`

// TestRolloutStages: a new version goes canary → 50 % → the rest, each
// stage released only when the one before is healthy; a noop report of
// the new catalog counts for nothing.
func TestRolloutStages(t *testing.T) {
	t.Parallel()
	h := newRolloutHarness(t, rolloutSite(canaryHalfRest, "hello"), sixNodes...)
	before := h.etags()
	h.commit(rolloutSite(canaryHalfRest, "good morning"))

	// Which nodes "half" takes is the stable bucket of their names.
	var half, rest []string
	for _, n := range sixNodes[1:] {
		if catalogs.Bucket(n) < 5000 {
			half = append(half, n)
		} else {
			rest = append(rest, n)
		}
	}
	if got := h.moved(before); !cmp.Equal(got, []string{"n-0"}) {
		t.Fatalf("released with the canary = %v, want [n-0]", got)
	}
	r, nodes := h.get()
	if r.State != rolloutRunning || nodes["n-0"].State != nodeReleased || nodes["n-0"].Stage != "canary" {
		t.Fatalf("rollout %s, n-0 %s in %s; want running, released in canary", r.State, nodes["n-0"].State, nodes["n-0"].Stage)
	}

	// A noop run of the new catalog is no proof of health.
	h.report("n-0", h.nodes["n-0"].etag, true, nil)
	if got := h.moved(h.etags()); len(got) != 0 {
		t.Fatalf("after a noop report, released %v; want nothing", got)
	}
	h.report("n-0", h.nodes["n-0"].etag, false, nil)
	if got := h.moved(before); !cmp.Equal(got, append([]string{"n-0"}, half...)) {
		t.Fatalf("released after the canary = %v, want n-0 and %v", got, half)
	}
	for _, n := range half {
		h.report(n, h.nodes[n].etag, false, nil)
	}
	if got := h.moved(before); !cmp.Equal(got, sixNodes) {
		t.Fatalf("released after half = %v, want every node (rest: %v)", got, rest)
	}
	for _, n := range rest {
		h.report(n, h.nodes[n].etag, false, nil)
	}
	r, _ = h.get()
	want := map[string]string{"canary": stageDone, "half": stageDone, "rest": stageDone}
	if len(rest) == 0 {
		delete(want, "rest")
	}
	if r.State != rolloutDone || !cmp.Equal(stageStates(r), want) {
		t.Errorf("rollout %s, stages %v; want done, %v", r.State, stageStates(r), want)
	}
	if r.Counts[nodeHealthy] != 6 {
		t.Errorf("healthy nodes = %d, want 6 (counts %v)", r.Counts[nodeHealthy], r.Counts)
	}
}

// TestRolloutHaltsAtMaxFailed: a canary that fails (a failed resource or
// an unhealthy service) halts the rollout, the reason names the node and
// how it failed, and the rest stays on the old catalog; resume overrides.
func TestRolloutHaltsAtMaxFailed(t *testing.T) {
	t.Parallel()
	stages := `
[[rollout.stage]]
name = "canary"
nodes = ["n-0", "n-1", "n-2"]
max_failed = 1
`
	h := newRolloutHarness(t, rolloutSite(stages, "hello"), sixNodes...)
	before := h.etags()
	h.commit(rolloutSite(stages, "broken"))
	h.moved(before)
	h.report("n-0", h.nodes["n-0"].etag, false, []string{"file:/etc/motd"})
	h.report("n-1", h.nodes["n-1"].etag, false, nil, &herdv1.ServiceHealth{Name: "web", Health: "unhealthy", Detail: "connection refused"})
	h.report("n-2", h.nodes["n-2"].etag, false, nil)
	r, nodes := h.get()
	if r.State != rolloutHalted {
		t.Fatalf("rollout = %s (%s), want halted", r.State, r.Reason)
	}
	for _, want := range []string{"canary", "2 of 3", "n-0 (file:/etc/motd: permission denied)", "n-1 (service web: unhealthy: connection refused)"} {
		if !strings.Contains(r.Reason, want) {
			t.Errorf("reason %q does not say %q", r.Reason, want)
		}
	}
	if nodes["n-0"].State != nodeFailed || len(nodes["n-0"].Failures) != 1 {
		t.Errorf("n-0 = %s %v, want failed with its failure", nodes["n-0"].State, nodes["n-0"].Failures)
	}
	for _, n := range sixNodes[3:] {
		if resp := h.checkin(n); resp.Status != herdv1.CheckinResponse_UNCHANGED || h.nodes[n].etag != before[n] {
			t.Errorf("%s after the halt: %v, etag changed %v; want the old catalog", n, resp.Status, h.nodes[n].etag != before[n])
		}
	}
	// The operator overrides: the next stage goes.
	if _, err := h.admin.RolloutAction(context.Background(), &herdv1.RolloutActionRequest{Action: "resume"}); err != nil {
		t.Fatal(err)
	}
	if got := h.moved(h.etags()); !cmp.Equal(got, sixNodes[3:]) {
		t.Errorf("released after resume = %v, want %v", got, sixNodes[3:])
	}
}

// TestRolloutAbort: abort gives every released node its previous catalog
// back at once, through Watch too.
func TestRolloutAbort(t *testing.T) {
	t.Parallel()
	h := newRolloutHarness(t, rolloutSite(canaryHalfRest, "hello"), sixNodes...)
	before := h.etags()
	watch, err := h.nodes["n-0"].c.Watch(context.Background(), &herdv1.WatchRequest{Etag: before["n-0"]})
	if err != nil {
		t.Fatal(err)
	}
	h.commit(rolloutSite(canaryHalfRest, "oops"))
	ev, err := watch.Recv()
	if err != nil || ev.Etag == before["n-0"] {
		t.Fatalf("Watch after the canary's release = %v, %v; want the new etag", ev, err)
	}
	h.moved(before)
	resp, err := h.admin.RolloutAction(context.Background(), &herdv1.RolloutActionRequest{Action: "abort"})
	if err != nil || resp.Rollout.State != rolloutAborted {
		t.Fatalf("abort = %v, %v; want aborted", resp, err)
	}
	ev, err = watch.Recv()
	if err != nil || ev.Etag != before["n-0"] {
		t.Fatalf("Watch after abort = %v, %v; want the previous etag %s", ev, err, before["n-0"])
	}
	if got := h.moved(h.etags()); !cmp.Equal(got, []string{"n-0"}) || h.nodes["n-0"].etag != before["n-0"] {
		t.Errorf("after abort moved %v (n-0 on %s); want n-0 back on %s", got, h.nodes["n-0"].etag, before["n-0"])
	}
	_, err = h.admin.RolloutAction(context.Background(), &herdv1.RolloutActionRequest{Action: "resume"})
	if status.Code(err) != codes.FailedPrecondition {
		t.Errorf("resume of an aborted rollout = %v, want FailedPrecondition", err)
	}
}

// TestRolloutManualApproval: a manual stage waits for approve; the
// actions refuse what makes no sense with a clear code.
func TestRolloutManualApproval(t *testing.T) {
	t.Parallel()
	stages := `
[[rollout.stage]]
name = "canary"
nodes = ["n-0"]
approve = "manual"
`
	h := newRolloutHarness(t, rolloutSite(stages, "hello"), "n-0", "n-1")
	before := h.etags()
	h.commit(rolloutSite(stages, "hi"))
	if got := h.moved(before); len(got) != 0 {
		t.Fatalf("released before approval: %v", got)
	}
	r, _ := h.get()
	if r.State != rolloutAwaiting || stageStates(r)["canary"] != stageAwaiting {
		t.Fatalf("rollout %s, stages %v; want awaiting-approval", r.State, stageStates(r))
	}
	ctx := context.Background()
	for _, tc := range []struct {
		action string
		want   codes.Code
	}{
		{"jump", codes.InvalidArgument},
		{"resume", codes.FailedPrecondition},
		{"pause", codes.OK},
		{"approve", codes.FailedPrecondition}, // paused: resume first
		{"resume", codes.OK},
		{"approve", codes.OK},
		{"approve", codes.FailedPrecondition}, // running now
	} {
		_, err := h.admin.RolloutAction(ctx, &herdv1.RolloutActionRequest{Action: tc.action})
		if status.Code(err) != tc.want {
			t.Errorf("RolloutAction(%s) = %v, want %v", tc.action, err, tc.want)
		}
	}
	if _, err := h.admin.RolloutAction(ctx, &herdv1.RolloutActionRequest{Id: 99, Action: "pause"}); status.Code(err) != codes.NotFound {
		t.Errorf("RolloutAction(99) = %v, want NotFound", err)
	}
	if got := h.moved(before); !cmp.Equal(got, []string{"n-0"}) {
		t.Errorf("released after approval = %v, want [n-0]", got)
	}
}

// TestRolloutResumesAfterRestart: a server restarted mid-rollout (a new
// Server on the same state) picks the rollout up where it was.
func TestRolloutResumesAfterRestart(t *testing.T) {
	t.Parallel()
	h := newRolloutHarness(t, rolloutSite(canaryHalfRest, "hello"), sixNodes...)
	before := h.etags()
	next := rolloutSite(canaryHalfRest, "again")
	// n-5's catalog does not compile at the new version: its mode is no
	// mode.
	next["herd.toml"] = "hierarchy = [\"nodes/{node}\", \"common\"]\n" + canaryHalfRest
	next["roles/r.toml"] += "\n[[file]]\npath = \"/etc/x\"\ncontent = \"x\"\nmode = \"{{ .params.mode }}\"\n"
	next["data/common.toml"] += "mode = \"0644\"\n"
	next["data/nodes/n-5.toml"] = "mode = \"0999\"\n"
	h.commit(next)
	h.moved(before)
	if st, err := h.admin.SiteStatus(context.Background(), &herdv1.SiteStatusRequest{}); err != nil || st.GetCompileErrors()["n-5"] == "" {
		t.Fatalf("before restart: compile errors %v (%v), want n-5's", st.GetCompileErrors(), err)
	}
	r1, _ := h.get()
	h.restart()
	r2, nodes := h.get()
	if r2.Id != r1.Id || r2.State != rolloutRunning || stageStates(r2)["canary"] != stageReleasing || nodes["n-0"].State != nodeReleased {
		t.Fatalf("after restart: rollout %d %s, stages %v, n-0 %s; want %d running, canary releasing, n-0 released",
			r2.Id, r2.State, stageStates(r2), nodes["n-0"].State, r1.Id)
	}
	if got := h.moved(h.etags()); len(got) != 0 {
		t.Fatalf("after restart moved %v, want nothing", got)
	}
	// n-5's compile error survives the restart.
	st, err := h.admin.SiteStatus(context.Background(), &herdv1.SiteStatusRequest{})
	if err != nil || !strings.Contains(st.GetCompileErrors()["n-5"], "0999") {
		t.Errorf("after restart: compile errors %v (%v), want n-5's", st.GetCompileErrors(), err)
	}
	h.report("n-0", h.nodes["n-0"].etag, false, nil)
	r3, _ := h.get()
	if s := stageStates(r3); s["canary"] != stageDone || s["half"] != stageReleasing {
		t.Errorf("after the canary's report: stages %v, want canary done, half releasing", s)
	}
}

// TestRolloutRehearsal: a noop stage hands its nodes the candidate as a
// rehearsal (files included), marks them rehearsed on their noop report,
// and changes nothing they run.
func TestRolloutRehearsal(t *testing.T) {
	t.Parallel()
	stages := `
[[rollout.stage]]
name = "rehearsal"
nodes = ["n-0"]
noop = true

[[rollout.stage]]
name = "canary"
nodes = ["n-0"]
`
	h := newRolloutHarness(t, rolloutSite(stages, "hello"), "n-0", "n-1")
	before := h.etags()
	next := rolloutSite(stages, "rehearsed")
	next["roles/r.toml"] += "\n[[file]]\npath = \"/etc/banner\"\nsource = \"banner.txt\"\n"
	next["files/banner.txt"] = "welcome\n"
	h.commit(next)
	resp := h.checkin("n-0")
	if resp.Status != herdv1.CheckinResponse_UNCHANGED || resp.Rehearsal == nil || resp.Rehearsal.Etag == before["n-0"] {
		t.Fatalf("check-in during the rehearsal = %v with rehearsal %v; want UNCHANGED with a new candidate", resp.Status, resp.Rehearsal)
	}
	if h.checkin("n-1").Rehearsal != nil {
		t.Errorf("n-1 got a rehearsal it is not in")
	}
	cand := resp.Rehearsal.Etag
	if catalogs.Digest(resp.Rehearsal.Catalog) != cand {
		t.Errorf("the rehearsal's bytes are not its etag")
	}
	// The rehearsing node may fetch the candidate's files; no other may.
	rc, err := catalogs.Decode(resp.Rehearsal.Catalog)
	if err != nil || len(rc.Files) != 1 {
		t.Fatalf("the rehearsal catalog = %v, %v; want one file", rc, err)
	}
	for _, tc := range []struct {
		node string
		want codes.Code
	}{{"n-0", codes.OK}, {"n-1", codes.PermissionDenied}} {
		stream, err := h.nodes[tc.node].c.GetFile(context.Background(), &herdv1.GetFileRequest{Digest: rc.Files[0].Digest})
		if err == nil {
			_, err = stream.Recv()
		}
		if status.Code(err) != tc.want {
			t.Errorf("GetFile(%s) of the rehearsal's file = %v, want %v", tc.node, err, tc.want)
		}
	}
	h.report("n-0", cand, true, nil)
	r, nodes := h.get()
	if nodes["n-0"].Rehearsal == nil || nodes["n-0"].Rehearsal.Changed != 1 {
		t.Errorf("n-0 rehearsal = %v, want its summary", nodes["n-0"].Rehearsal)
	}
	if s := stageStates(r); s["rehearsal"] != stageDone || s["canary"] != stageReleasing {
		t.Errorf("stages %v, want rehearsal done, canary releasing", s)
	}
	if resp := h.checkin("n-0"); resp.Rehearsal != nil || h.nodes["n-0"].etag != cand {
		t.Errorf("after the rehearsal, n-0 runs %s (rehearsal %v); want the candidate released", h.nodes["n-0"].etag, resp.Rehearsal)
	}
}

// TestRolloutSupersede: a newer version mid-rollout supersedes it; the
// nodes it had released go to the newest version at once, the others
// wait for their stage again.
func TestRolloutSupersede(t *testing.T) {
	t.Parallel()
	h := newRolloutHarness(t, rolloutSite(canaryHalfRest, "v1"), sixNodes...)
	before := h.etags()
	h.commit(rolloutSite(canaryHalfRest, "v2"))
	h.moved(before)
	v2 := h.nodes["n-0"].etag
	r1, _ := h.get()
	h.commit(rolloutSite(canaryHalfRest, "v3"))
	r2, nodes := h.get()
	if r2.Id == r1.Id || r2.State != rolloutRunning {
		t.Fatalf("after a newer version: rollout %d %s, want a new one running", r2.Id, r2.State)
	}
	old, err := h.admin.GetRollout(context.Background(), &herdv1.GetRolloutRequest{Id: r1.Id})
	if err != nil || old.Rollout.State != rolloutSuperseded || old.Rollout.SupersededBy != r2.Id {
		t.Errorf("the older rollout = %v, %v; want superseded by %d", old.GetRollout(), err, r2.Id)
	}
	// The list is newest first, paged.
	ctx := context.Background()
	page, err := h.admin.ListRollouts(ctx, &herdv1.ListRolloutsRequest{PageSize: 1})
	if err != nil || len(page.Rollouts) != 1 || page.Rollouts[0].Id != r2.Id || page.NextPageToken == "" {
		t.Fatalf("ListRollouts(1) = %v, %v; want rollout %d and a next page", page, err, r2.Id)
	}
	rest, err := h.admin.ListRollouts(ctx, &herdv1.ListRolloutsRequest{PageToken: page.NextPageToken})
	if err != nil || len(rest.Rollouts) != 2 || rest.Rollouts[0].Id != r1.Id || rest.Rollouts[0].State != rolloutSuperseded || rest.NextPageToken != "" {
		t.Errorf("ListRollouts(next) = %v, %v; want the superseded %d and the first load's, no more", rest, err, r1.Id)
	}
	if _, err := h.admin.ListRollouts(ctx, &herdv1.ListRolloutsRequest{PageToken: "x"}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("ListRollouts(bad token) = %v, want InvalidArgument", err)
	}
	if nodes["n-0"].PreviousEtag != v2 {
		t.Errorf("n-0's previous = %s, want its v2 catalog %s", nodes["n-0"].PreviousEtag, v2)
	}
	if got := h.moved(h.etags()); !cmp.Equal(got, []string{"n-0"}) || h.nodes["n-0"].etag == v2 {
		t.Errorf("after the newer version moved %v, want n-0 onto v3", got)
	}
	for _, n := range sixNodes[1:] {
		if h.nodes[n].etag != before[n] {
			t.Errorf("%s left its v1 catalog", n)
		}
	}
}

// TestNodesShowRollout: the node list says where each node is in the
// newest rollout, what version it applied last, and that its last run
// was a noop (whose changes are only "would change").
func TestNodesShowRollout(t *testing.T) {
	t.Parallel()
	h := newRolloutHarness(t, rolloutSite(canaryHalfRest, "hello"), "n-0", "n-1")
	before := h.etags()
	h.commit(rolloutSite(canaryHalfRest, "hi"))
	h.moved(before)
	h.report("n-0", h.nodes["n-0"].etag, true, nil)
	resp, err := h.admin.ListNodes(context.Background(), &herdv1.ListNodesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	r, _ := h.get()
	got := map[string]*herdv1.NodeInfo{}
	for _, n := range resp.Nodes {
		got[n.Name] = n
	}
	n0, n1 := got["n-0"], got["n-1"]
	if n0.RolloutState != nodeReleased || n0.RolloutId != r.Id || !n0.LastNoop || n0.AppliedVersion != "version-of-"+before["n-0"] {
		t.Errorf("n-0 = state %q rollout %d noop %v applied %q; want released in %d, noop, applied the old version",
			n0.RolloutState, n0.RolloutId, n0.LastNoop, n0.AppliedVersion, r.Id)
	}
	if n1.RolloutState != nodePending || n1.LastNoop {
		t.Errorf("n-1 = state %q noop %v; want pending, not noop", n1.RolloutState, n1.LastNoop)
	}
	diff, err := h.admin.RolloutDiff(context.Background(), &herdv1.RolloutDiffRequest{})
	if err != nil || len(diff.Changes) != 2 || !strings.Contains(string(diff.Changes[0].ChangeJson), "/etc/motd") {
		t.Errorf("RolloutDiff = %v, %v; want both nodes' /etc/motd change", diff, err)
	}
	// The rollout keeps brief changes; the diff the operator reads has the
	// content's unified diff, made from the two catalogs.
	for _, c := range diff.GetChanges() {
		if j := string(c.ChangeJson); !strings.Contains(j, `"diff":`) || !strings.Contains(j, `-hello`) || !strings.Contains(j, `+hi`) {
			t.Errorf("RolloutDiff of %s = %s; want the content's unified diff", c.Node, j)
		}
	}
}

// forbidGate denies a node whose motd says "forbidden".
const forbidGate = `package herd.gate

deny contains {"message": sprintf("%s says forbidden", [r.id]), "resource": r.id} if {
	some r in input.catalog.resources
	contains(r.attrs.content, "forbidden")
}
`

// TestRolloutGate: a denied node blocks the whole version (on_deny =
// "block", the default) or only itself (on_deny = "node"); a policy that
// does not compile blocks the version, its reason naming the file and
// line.
func TestRolloutGate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		herdToml   string
		files      map[string]string
		wantState  string
		wantReason []string
		wantMoved  []string
	}{
		{
			name:       "block",
			files:      map[string]string{"data/nodes/n-1.toml": "greeting = \"forbidden\"\n"},
			wantState:  rolloutBlocked,
			wantReason: []string{"1 of 3 nodes denied", "n-1: file:/etc/motd says forbidden"},
		},
		{
			name:      "node",
			herdToml:  "[policy]\non_deny = \"node\"\n",
			files:     map[string]string{"data/nodes/n-1.toml": "greeting = \"forbidden\"\n"},
			wantState: rolloutRunning,
			wantMoved: []string{"n-0", "n-2"},
		},
		{
			name:       "broken policy",
			files:      map[string]string{"policies/bad.rego": "package herd.gate\n\ndeny contains x if {\n\tx := \n}\n"},
			wantState:  rolloutBlocked,
			wantReason: []string{"policies/bad.rego:"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			files := rolloutSite(tc.herdToml, "hello")
			files["policies/gate.rego"] = forbidGate
			h := newRolloutHarness(t, files, "n-0", "n-1", "n-2")
			before := h.etags()
			next := rolloutSite(tc.herdToml, "changed")
			for k, v := range tc.files {
				next[k] = v
			}
			h.commit(next)
			r, nodes := h.get()
			if r.State != tc.wantState {
				t.Fatalf("rollout = %s (%s), want %s", r.State, r.Reason, tc.wantState)
			}
			for _, want := range tc.wantReason {
				if !strings.Contains(r.Reason, want) {
					t.Errorf("reason %q does not say %q", r.Reason, want)
				}
			}
			if got := h.moved(before); !cmp.Equal(got, tc.wantMoved) {
				t.Errorf("moved %v, want %v", got, tc.wantMoved)
			}
			if tc.files["data/nodes/n-1.toml"] != "" {
				n1 := nodes["n-1"]
				if n1.Decision != decisionDenied || len(n1.Deny) != 1 || n1.Deny[0].Resource != "file:/etc/motd" {
					t.Errorf("n-1 = %s %v, want denied about file:/etc/motd", n1.Decision, n1.Deny)
				}
				// The node list of a rollout shows the denied one first.
				resp, err := h.admin.GetRollout(context.Background(), &herdv1.GetRolloutRequest{})
				if err != nil || len(resp.Nodes) != 1 || resp.Nodes[0].Node != "n-1" {
					t.Errorf("GetRollout's interesting nodes = %v, %v; want n-1 alone", resp.GetNodes(), err)
				}
			}
		})
	}
}

// TestRolloutBake: a stage with a bake waits, then asks its nodes for a
// run (Watch run) and is done on one more good report; a failure during
// the bake fails the node and halts.
func TestRolloutBake(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, bake string
		fail       bool
	}{
		{"ends", "100ms", false},
		{"fails", "1h", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			stages := "[[rollout.stage]]\nname = \"canary\"\nnodes = [\"n-0\"]\nbake = \"" + tc.bake + "\"\n"
			h := newRolloutHarness(t, rolloutSite(stages, "hello"), "n-0", "n-1")
			before := h.etags()
			h.commit(rolloutSite(stages, "baked"))
			h.moved(before)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			watch, err := h.nodes["n-0"].c.Watch(ctx, &herdv1.WatchRequest{Etag: h.nodes["n-0"].etag})
			if err != nil {
				t.Fatal(err)
			}
			h.report("n-0", h.nodes["n-0"].etag, false, nil)
			r, _ := h.get()
			if stageStates(r)["canary"] != stageBaking || r.Stages[0].BakeUntilUnixMs == 0 {
				t.Fatalf("after the canary's report: stages %v, want canary baking until a time", stageStates(r))
			}
			if tc.fail {
				h.report("n-0", h.nodes["n-0"].etag, false, []string{"file:/etc/motd"})
				if r, _ := h.get(); r.State != rolloutHalted || !strings.Contains(r.Reason, "n-0") {
					t.Errorf("a failure during the bake: rollout %s (%s), want halted naming n-0", r.State, r.Reason)
				}
				return
			}
			// The bake's end is a Watch run for the stage's nodes.
			ev, err := watch.Recv()
			if err != nil || !ev.Run || ev.Etag != h.nodes["n-0"].etag {
				t.Fatalf("Watch at the bake's end = %v, %v; want a run of the etag it holds", ev, err)
			}
			if got := h.moved(h.etags()); len(got) != 0 {
				t.Fatalf("released before the after-bake report: %v", got)
			}
			h.report("n-0", h.nodes["n-0"].etag, false, nil)
			if got := h.moved(h.etags()); !cmp.Equal(got, []string{"n-1"}) {
				t.Errorf("released after the bake = %v, want [n-1]", got)
			}
		})
	}
}

// TestRolloutFactsChange: new facts mid-rollout recompile the node's
// candidate, which ships only when its stage does (at once for a node
// already released); after the rollout new facts are approved at once.
func TestRolloutFactsChange(t *testing.T) {
	t.Parallel()
	stages := "[[rollout.stage]]\nname = \"canary\"\nnodes = [\"n-0\"]\n"
	h := newRolloutHarness(t, rolloutSite(stages, "hello"), "n-0", "n-1")
	before := h.etags()
	h.commit(rolloutSite(stages, "facts"))
	h.moved(before)
	_, nodes := h.get()
	cand1 := nodes["n-1"].Etag

	// n-1 waits in "rest": its new facts make a new candidate, not a new
	// catalog.
	if resp := h.checkinFacts("n-1", "ubuntu"); resp.Status != herdv1.CheckinResponse_UNCHANGED {
		t.Errorf("n-1's check-in with new facts = %v, want UNCHANGED (its stage has not started)", resp.Status)
	}
	_, nodes = h.get()
	if nodes["n-1"].Etag == cand1 || nodes["n-1"].State != nodePending {
		t.Errorf("n-1 after new facts: candidate %s (was %s), %s; want a new candidate, pending", nodes["n-1"].Etag, cand1, nodes["n-1"].State)
	}
	// n-0 was released: its new catalog ships now.
	old0 := h.nodes["n-0"].etag
	if resp := h.checkinFacts("n-0", "ubuntu"); resp.Status != herdv1.CheckinResponse_NEW_CATALOG || resp.Etag == old0 {
		t.Errorf("released n-0's check-in with new facts = %v, want a NEW_CATALOG", resp.Status)
	}
	h.report("n-0", h.nodes["n-0"].etag, false, nil)
	if got := h.moved(h.etags()); !cmp.Equal(got, []string{"n-1"}) {
		t.Fatalf("released after the canary = %v, want [n-1]", got)
	}
	_, nodes = h.get()
	if h.nodes["n-1"].etag != nodes["n-1"].Etag {
		t.Errorf("n-1 runs %s, want its newest candidate %s", h.nodes["n-1"].etag, nodes["n-1"].Etag)
	}
	h.report("n-1", h.nodes["n-1"].etag, false, nil)
	if r, _ := h.get(); r.State != rolloutDone {
		t.Fatalf("rollout = %s, want done", r.State)
	}
	// Outside a rollout, new facts are gated and approved at once.
	if resp := h.checkinFacts("n-1", "debian"); resp.Status != herdv1.CheckinResponse_NEW_CATALOG {
		t.Errorf("check-in with new facts after the rollout = %v, want NEW_CATALOG", resp.Status)
	}
}

// TestRehearsalFailureHalts: a rehearsal whose noop run fails counts
// toward the stage's max_failed, and nothing is released.
func TestRehearsalFailureHalts(t *testing.T) {
	t.Parallel()
	stages := "[[rollout.stage]]\nname = \"rehearsal\"\nnodes = [\"n-0\"]\nnoop = true\n"
	h := newRolloutHarness(t, rolloutSite(stages, "hello"), "n-0", "n-1")
	before := h.etags()
	h.commit(rolloutSite(stages, "would fail"))
	resp := h.checkin("n-0")
	if resp.Rehearsal == nil {
		t.Fatal("n-0 got no rehearsal")
	}
	h.report("n-0", resp.Rehearsal.Etag, true, []string{"file:/etc/motd"})
	r, nodes := h.get()
	if r.State != rolloutHalted || !strings.Contains(r.Reason, "rehearsal") || !strings.Contains(r.Reason, "n-0 (file:/etc/motd") {
		t.Errorf("rollout = %s (%s), want halted naming the rehearsal and n-0's failure", r.State, r.Reason)
	}
	if nodes["n-0"].State != "rehearsed" || len(nodes["n-0"].Failures) != 1 {
		t.Errorf("n-0 = %s %v, want rehearsed with its failure", nodes["n-0"].State, nodes["n-0"].Failures)
	}
	if got := h.moved(before); len(got) != 0 {
		t.Errorf("released %v after a failed rehearsal, want nothing", got)
	}
}

// TestRolloutIdleStages: a stage with nothing to release neither waits
// for approval nor bakes: the first version's rollout (every node new)
// is done at once whatever its stages say, and a stage that selects no
// node is passed over.
func TestRolloutIdleStages(t *testing.T) {
	t.Parallel()
	stages := `
[[rollout.stage]]
name = "nobody"
nodes = ["no-such-node-*"]
approve = "manual"
bake = "1h"

[[rollout.stage]]
name = "canary"
nodes = ["n-0"]
approve = "manual"
bake = "1h"
`
	h := newRolloutHarness(t, rolloutSite(stages, "hello"), "n-0", "n-1")
	if r, _ := h.get(); r.State != rolloutDone {
		t.Fatalf("the first version's rollout is %s (stages %v), want done: every node got it at once", r.State, stageStates(r))
	}
	before := h.etags()
	h.commit(rolloutSite(stages, "hi"))
	r, _ := h.get()
	if got := stageStates(r); got["nobody"] != stageDone || got["canary"] != stageAwaiting {
		t.Fatalf("stages %v; want nobody done at once, canary awaiting approval", got)
	}
	if got := h.moved(before); len(got) != 0 {
		t.Fatalf("released before the canary's approval: %v", got)
	}
}

// TestRolloutPreviousAfterBlocked: a blocked version ran nowhere, so the
// rollout that supersedes it comes from the version before it.
func TestRolloutPreviousAfterBlocked(t *testing.T) {
	t.Parallel()
	site := func(greeting string) map[string]string {
		files := rolloutSite(canaryHalfRest, greeting)
		files["policies/gate.rego"] = forbidGate
		return files
	}
	h := newRolloutHarness(t, site("hello"), "n-0", "n-1")
	first, _ := h.get()
	h.commit(site("forbidden"))
	blocked, _ := h.get()
	if blocked.State != rolloutBlocked {
		t.Fatalf("the forbidden version's rollout is %s, want blocked", blocked.State)
	}
	h.commit(site("hi"))
	r, _ := h.get()
	if r.Id == blocked.Id || r.PreviousVersion != first.Version {
		t.Errorf("rollout %d comes from %q, want the version before the blocked one, %q", r.Id, r.PreviousVersion, first.Version)
	}
}

// TestRolloutJudgesTheChange: once this server's gate allowed a node's
// catalog, the next version's gate is given only the resources it adds or
// changes in input.judge, as long as the policies are the same; changed
// policies, or a restarted server, judge every resource again.
func TestRolloutJudgesTheChange(t *testing.T) {
	t.Parallel()
	const judged = "package herd.gate\n\nwarn contains r.id if some r in input.judge\n"
	site := func(greeting, policy string) map[string]string {
		files := rolloutSite("", greeting)
		files["roles/r.toml"] += "\n[[file]]\npath = \"/etc/fixed\"\ncontent = \"the same on every version\\n\"\n"
		files["policies/judged.rego"] = policy
		return files
	}
	h := newRolloutHarness(t, site("hello", judged), "n-0")
	warned := func(step string, want ...string) {
		t.Helper()
		r, nodes := h.get()
		if r.State != rolloutDone && r.State != rolloutRunning {
			t.Fatalf("%s: rollout %s (%s)", step, r.State, r.Reason)
		}
		var got []string
		for _, m := range nodes["n-0"].Warn {
			got = append(got, m.Message)
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s: input.judge held %v, want %v", step, got, want)
		}
	}
	h.commit(site("changed", judged))
	warned("a change of the motd", "file:/etc/motd")
	h.commit(site("changed again", judged+"# a new comment is a new policy\n"))
	warned("changed policies", "file:/etc/fixed", "file:/etc/motd")
	h.restart()
	h.commit(site("changed after a restart", judged+"# a new comment is a new policy\n"))
	warned("after a restart", "file:/etc/fixed", "file:/etc/motd")
	h.commit(site("and once more", judged+"# a new comment is a new policy\n"))
	warned("then a change", "file:/etc/motd")
}

// TestRolloutStageTimeout: a released node that never reports fails when
// its stage's timeout passes, with a reason saying so; max_failed then
// decides whether the rollout halts or the next stage starts.
func TestRolloutStageTimeout(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, maxFailed string
		wantState       string
		wantMoved       []string
	}{
		{"halts", "0", rolloutHalted, nil},
		// The canary stage is done; the last stage released n-2.
		{"tolerated", "1", rolloutRunning, []string{"n-2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			stages := "[[rollout.stage]]\nname = \"canary\"\nnodes = [\"n-0\", \"n-1\"]\ntimeout = \"300ms\"\nmax_failed = " + tc.maxFailed + "\n"
			h := newRolloutHarness(t, rolloutSite(stages, "hello"), "n-0", "n-1", "n-2")
			h.commit(rolloutSite(stages, "late"))
			if got := h.moved(h.etags()); !cmp.Equal(got, []string{"n-0", "n-1"}) {
				t.Fatalf("released %v, want the canaries", got)
			}
			// n-1 reports; n-0 never does.
			h.report("n-1", h.nodes["n-1"].etag, false, nil)
			before := h.etags()
			var r *herdv1.Rollout
			var nodes map[string]*herdv1.RolloutNode
			// The node's verdict and the rollout's are stored one after
			// the other: wait for both.
			for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
				r, nodes = h.get()
				settled := r.State == tc.wantState && (tc.wantState != rolloutRunning || stageStates(r)["canary"] == stageDone)
				if nodes["n-0"].State == nodeFailed && settled {
					break
				}
			}
			if r.State != tc.wantState {
				t.Fatalf("rollout %s (%s), want %s once the timeout passed", r.State, r.Reason, tc.wantState)
			}
			if tc.wantState == rolloutRunning && stageStates(r)["canary"] != stageDone {
				t.Errorf("stages %v, want the canary stage done", stageStates(r))
			}
			n0 := nodes["n-0"]
			if n0.State != nodeFailed || len(n0.Failures) != 1 || !strings.Contains(n0.Failures[0], "no report within the stage's timeout of 300ms") {
				t.Errorf("n-0 = %s %v, want failed for its silence", n0.State, n0.Failures)
			}
			if nodes["n-1"].State != nodeHealthy {
				t.Errorf("n-1 = %s, want healthy", nodes["n-1"].State)
			}
			if tc.wantState == rolloutHalted && !strings.Contains(r.Reason, "n-0 (no report within") {
				t.Errorf("reason %q does not name n-0 and why", r.Reason)
			}
			if got := h.moved(before); !cmp.Equal(got, tc.wantMoved) {
				t.Errorf("released after the timeout: %v, want %v", got, tc.wantMoved)
			}
		})
	}
}

// auditReport sends node's audit run of etag (the agent's noop check
// between applies): it would change one resource, and fails those named.
func (h *rolloutHarness) auditReport(node, etag string, failed ...string) {
	h.t.Helper()
	fn := h.nodes[node]
	fn.runs++
	r := &herdv1.Report{RunId: fmt.Sprintf("%s-audit-%d", node, fn.runs), CatalogDigest: etag, Version: "version-of-" + etag,
		Noop: true, Audit: true, StartedUnixNs: time.Now().UnixNano(), Summary: &herdv1.Summary{Resources: 1, Changed: 1, Drift: 1}}
	for _, id := range failed {
		r.Events = append(r.Events, &herdv1.Event{Id: id, Type: "file", Status: "failed", Error: "permission denied"})
		r.Summary = &herdv1.Summary{Resources: 1, Failed: 1}
	}
	if _, err := fn.c.SendReport(context.Background(), &herdv1.SendReportRequest{Report: r}); err != nil {
		h.t.Fatalf("SendReport(%s): %v", node, err)
	}
	if err := h.s.envs.defaultEnv().ctl.sync(context.Background()); err != nil {
		h.t.Fatal(err)
	}
}

// TestRolloutIgnoresAuditRuns: an audit run, even of the rollout's
// candidate, is never a rehearsal's answer, and neither a failure nor
// proof of health of a released node.
func TestRolloutIgnoresAuditRuns(t *testing.T) {
	t.Parallel()
	t.Run("rehearsal", func(t *testing.T) {
		t.Parallel()
		stages := "[[rollout.stage]]\nname = \"rehearsal\"\nnodes = [\"n-0\"]\nnoop = true\n\n[[rollout.stage]]\nname = \"canary\"\nnodes = [\"n-0\"]\n"
		h := newRolloutHarness(t, rolloutSite(stages, "hello"), "n-0", "n-1")
		h.commit(rolloutSite(stages, "rehearsed"))
		resp := h.checkin("n-0")
		if resp.Rehearsal == nil {
			t.Fatal("n-0 got no rehearsal")
		}
		cand := resp.Rehearsal.Etag
		h.auditReport("n-0", cand)
		h.auditReport("n-0", cand, "file:/etc/motd")
		r, nodes := h.get()
		if nodes["n-0"].Rehearsal != nil || stageStates(r)["rehearsal"] == stageDone || r.State == rolloutHalted {
			t.Fatalf("after audit runs: n-0 rehearsal %v, stages %v, rollout %s; want the rehearsal still waiting", nodes["n-0"].Rehearsal, stageStates(r), r.State)
		}
		h.report("n-0", cand, true, nil)
		if r, nodes := h.get(); nodes["n-0"].Rehearsal == nil || stageStates(r)["rehearsal"] != stageDone {
			t.Errorf("after the rehearsal's own report: n-0 rehearsal %v, stages %v; want it rehearsed", nodes["n-0"].Rehearsal, stageStates(r))
		}
	})
	t.Run("canary", func(t *testing.T) {
		t.Parallel()
		h := newRolloutHarness(t, rolloutSite(canaryHalfRest, "hello"), sixNodes...)
		before := h.etags()
		h.commit(rolloutSite(canaryHalfRest, "good morning"))
		if got := h.moved(before); !cmp.Equal(got, []string{"n-0"}) {
			t.Fatalf("released with the canary = %v, want [n-0]", got)
		}
		h.auditReport("n-0", h.nodes["n-0"].etag, "file:/etc/motd")
		r, nodes := h.get()
		if r.State == rolloutHalted || nodes["n-0"].State != nodeReleased {
			t.Errorf("after a failing audit run: rollout %s (%s), n-0 %s; want running, n-0 released", r.State, r.Reason, nodes["n-0"].State)
		}
		h.auditReport("n-0", h.nodes["n-0"].etag)
		if got := h.moved(h.etags()); len(got) != 0 {
			t.Fatalf("after an audit run, released %v; want nothing", got)
		}
		h.report("n-0", h.nodes["n-0"].etag, false, nil)
		if got := h.moved(before); len(got) < 2 {
			t.Errorf("after the canary's real run, released %v; want the next stage too", got)
		}
	})
}
