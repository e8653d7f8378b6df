package server

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/herdcm/herd/api/herdv1"
)

// clusterNode is a node as an agent drives it, talking to one server of
// a cluster.
type clusterNode struct {
	name string
	cert tls.Certificate
	c    herdv1.NodeClient
	etag string
	runs int
}

// rolloutLeader waits for exactly one of ss to lead the rollouts.
func rolloutLeader(t *testing.T, ss []*Server) (leader *Server, followers []*Server) {
	t.Helper()
	deadline := time.Now().Add(5*leaderRetry + 10*time.Second)
	for {
		leader, followers = nil, nil
		n := 0
		for _, s := range ss {
			if s.rolloutLead.Leading() {
				leader = s
				n++
			} else {
				followers = append(followers, s)
			}
		}
		if n > 1 {
			t.Fatalf("%d servers lead the rollouts at once", n)
		}
		if n == 1 {
			return leader, followers
		}
		if time.Now().After(deadline) {
			t.Fatal("no server leads the rollouts")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestFollowersHandTheRolloutsToTheLeader: of two servers on one store,
// only the one holding the rollout lease plans a new version (one
// rollout, each node compiled once); a node that joins through the
// follower gets its catalog in its first check-in's answer; the
// follower's reports move the stages and its operators' actions are
// carried out by the leader; and when the leader stops mid-rollout the
// follower takes over and finishes it.
func TestFollowersHandTheRolloutsToTheLeader(t *testing.T) {
	t.Parallel()
	const stages = `
[[rollout.stage]]
name = "canary"
nodes = ["n-0"]
`
	ss, sites := startClusterOf(t, 2, rolloutSite(stages, "hello"))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	leader, followers := rolloutLeader(t, ss)
	follower := followers[0]
	siteOf := map[*Server]string{ss[0]: sites[0], ss[1]: sites[1]}

	// n-0 and n-1 talk to the follower, n-2 and n-3 to the leader.
	nodes := map[string]*clusterNode{}
	via := map[string]*Server{"n-0": follower, "n-1": follower, "n-2": leader, "n-3": leader}
	for _, name := range []string{"n-0", "n-1", "n-2", "n-3"} {
		cert := enroll(t, via[name], name)
		nodes[name] = &clusterNode{name: name, cert: cert, c: herdv1.NewNodeClient(dial(t, via[name], &cert))}
	}
	fb, fd := factsJSON(t, map[string]any{"os": map[string]any{"family": "debian"}})
	checkinNode := func(n *clusterNode, withFacts bool) *herdv1.CheckinResponse {
		t.Helper()
		req := &herdv1.CheckinRequest{FactsDigest: fd, CatalogEtag: n.etag}
		if withFacts {
			req.FactsJson = fb
		}
		resp, err := n.c.Checkin(ctx, req)
		if err != nil {
			t.Fatalf("check-in of %s: %v", n.name, err)
		}
		if resp.Status == herdv1.CheckinResponse_NEW_CATALOG {
			n.etag = resp.Etag
		}
		return resp
	}
	report := func(n *clusterNode) {
		t.Helper()
		n.runs++
		r := &herdv1.Report{RunId: fmt.Sprintf("%s-%d", n.name, n.runs), CatalogDigest: n.etag, StartedUnixNs: time.Now().UnixNano(),
			Summary: &herdv1.Summary{Resources: 1, InSync: 1}}
		if _, err := n.c.SendReport(ctx, &herdv1.SendReportRequest{Report: r}); err != nil {
			t.Fatalf("report of %s: %v", n.name, err)
		}
	}
	// awaitCatalog checks n in until it gets a catalog other than old.
	awaitCatalog := func(n *clusterNode, old string) {
		t.Helper()
		for {
			if checkinNode(n, false); n.etag != old {
				return
			}
			if ctx.Err() != nil {
				t.Fatalf("%s never got a catalog past %s", n.name, old)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	for _, name := range []string{"n-0", "n-1", "n-2", "n-3"} {
		n := nodes[name]
		if resp := checkinNode(n, true); resp.Status != herdv1.CheckinResponse_NEW_CATALOG {
			t.Fatalf("first check-in of %s through the %s = %v (%s); want its catalog in the answer",
				name, map[bool]string{true: "leader", false: "follower"}[via[name] == leader], resp.Status, resp.CompileError)
		}
		report(n)
	}

	cert := admin(t, follower)
	adm := herdv1.NewAdminClient(dial(t, follower, &cert))
	rollouts := func() []*herdv1.Rollout {
		t.Helper()
		resp, err := adm.ListRollouts(ctx, &herdv1.ListRolloutsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		return resp.Rollouts
	}
	newest := func() *herdv1.Rollout {
		t.Helper()
		r := rollouts()
		if len(r) == 0 {
			t.Fatal("no rollout")
		}
		return r[0]
	}
	awaitState := func(want string) *herdv1.Rollout {
		t.Helper()
		for {
			r := newest()
			if r.State == want {
				return r
			}
			if ctx.Err() != nil {
				t.Fatalf("rollout %d is %s, never %s", r.Id, r.State, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	commit := func(greeting string, order ...*Server) {
		t.Helper()
		for _, s := range order {
			writeFiles(t, siteOf[s], rolloutSite(stages, greeting))
			if err := s.reload(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	compiles := func() float64 {
		return testutil.ToFloat64(leader.metrics.compiles) + testutil.ToFloat64(follower.metrics.compiles)
	}

	// A new version: the follower loads it first and plans nothing; the
	// leader plans one rollout, compiling each node once.
	before := len(rollouts())
	c0 := compiles()
	commit("good morning", follower, leader)
	if got := len(rollouts()); got != before+1 {
		t.Fatalf("%d rollouts after one new version, want %d", got, before+1)
	}
	if got := compiles() - c0; got != 4 {
		t.Errorf("the servers compiled %v catalogs for a new version of 4 nodes, want 4", got)
	}
	r := newest()
	if r.State != rolloutRunning {
		t.Fatalf("rollout %d is %s, want running", r.Id, r.State)
	}

	// The canary, on the follower, gets its catalog; an operator's pause
	// through the follower is carried out by the leader.
	old := map[string]string{}
	for name, n := range nodes {
		old[name] = n.etag
	}
	awaitCatalog(nodes["n-0"], old["n-0"])
	if resp, err := adm.RolloutAction(ctx, &herdv1.RolloutActionRequest{Action: "pause"}); err != nil || resp.Rollout.State != rolloutPaused {
		t.Fatalf("pause through the follower = %v, %v; want the rollout paused", resp, err)
	}
	if _, err := adm.RolloutAction(ctx, &herdv1.RolloutActionRequest{Action: "approve", Id: r.Id + 100}); err == nil {
		t.Error("an action on an unknown rollout through the follower succeeded")
	}
	if resp, err := adm.RolloutAction(ctx, &herdv1.RolloutActionRequest{Action: "resume"}); err != nil || resp.Rollout.State != rolloutRunning {
		t.Fatalf("resume through the follower = %v, %v; want the rollout running", resp, err)
	}
	// The canary's report, taken by the follower, releases the rest.
	report(nodes["n-0"])
	for _, name := range []string{"n-1", "n-2", "n-3"} {
		awaitCatalog(nodes[name], old[name])
		report(nodes[name])
	}
	awaitState(rolloutDone)

	// Another version; the leader stops with the canary released and
	// not yet reported: the follower takes the rollouts over and
	// finishes this one.
	for name, n := range nodes {
		old[name] = n.etag
	}
	commit("good evening", follower, leader)
	mid := newest()
	awaitCatalog(nodes["n-0"], old["n-0"])
	if err := leader.Close(); err != nil {
		t.Fatal(err)
	}
	if l, _ := rolloutLeader(t, []*Server{follower}); l != follower {
		t.Fatal("the follower did not take over")
	}
	for _, name := range []string{"n-2", "n-3"} {
		// Their agents move to the follower, as the failover list does.
		nodes[name].c = herdv1.NewNodeClient(dial(t, follower, &nodes[name].cert))
	}
	report(nodes["n-0"])
	for _, name := range []string{"n-1", "n-2", "n-3"} {
		awaitCatalog(nodes[name], old[name])
		report(nodes[name])
	}
	if r := awaitState(rolloutDone); r.Id != mid.Id {
		t.Errorf("rollout %d finished, want %d (the one the old leader began)", r.Id, mid.Id)
	}
	// The new leader numbers its rollouts after the old one's.
	commit("good night", follower)
	if r := newest(); r.Id != mid.Id+1 {
		t.Errorf("the new leader's rollout is %d, want %d", r.Id, mid.Id+1)
	}
}

// FuzzRolloutPayloads: any "rollout-work", "rollout-state" or
// "rollout-answer" payload parses without panicking, and what
// linePayloads writes of the lines parses back to them.
func FuzzRolloutPayloads(f *testing.F) {
	f.Add(`{"k":"compile","n":"web-01","e":"staging","d":"sha256:ab"}` + "\n" + `{"k":"report","n":"db-01","r":{"d":"sha256:cd","s":{"Resources":3},"f":["file:/x: boom"],"t":"2026-12-03T00:00:00Z"}}`)
	f.Add(`{"k":"rehearse","n":"web-01","t":"sha256:ef"}` + "\n" + `{"k":"newest","e":"production","i":7}`)
	f.Add(`{"i":"abc","r":3,"e":"state","m":"not possible"}`)
	f.Add("not json\n{\"k\":\n\n{}")
	f.Fuzz(func(t *testing.T, payload string) {
		works := parseLines[rolloutWork](payload)
		parseLines[rolloutState](payload)
		parseLines[rolloutAnswer](payload)
		var lines []string
		for _, w := range works {
			b, err := json.Marshal(w)
			if err != nil {
				t.Fatal(err)
			}
			lines = append(lines, string(b))
		}
		n := 0
		for _, p := range linePayloads(lines, 512) {
			if len(p) > 512 && !strings.Contains(p, "\n") {
				// A single line past the bound goes alone.
			} else if len(p) > 512 {
				t.Fatalf("a payload of %d bytes holds several lines past 512", len(p))
			}
			n += len(parseLines[rolloutWork](p))
		}
		if n != len(works) {
			t.Fatalf("%d lines went out, %d came back", len(works), n)
		}
	})
}
