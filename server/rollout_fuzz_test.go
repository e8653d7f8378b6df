package server

import (
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/herdcm/herd/api/herdv1"
	"github.com/herdcm/herd/server/store"
)

// FuzzRolloutEvents drives a rollout's state machine with what nodes and
// operators send it (reports are a network entry point: their digests,
// noop flags, events and service health come from nodes; actions from
// admins): whatever arrives, it never panics, answers a bad action with
// one of its errors, keeps every state one it knows, releases no node of
// a stage that has not started, and halts only with a reason.
func FuzzRolloutEvents(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 0, 2, 0, 3}, "resume", "failed", "unhealthy", "boom")
	f.Add([]byte{4, 1, 9, 0, 0, 0}, "abort", "changed", "healthy", "")
	f.Add([]byte{2, 2, 2, 2}, "approve", "in-sync", "unknown", "\x00")
	f.Add([]byte{0, 0, 1, 0x80, 0, 0xa1, 1, 0x81}, "resume", "failed", "unhealthy", "drift")
	f.Fuzz(func(t *testing.T, script []byte, action, evStatus, health, detail string) {
		s := &Server{log: slog.New(slog.DiscardHandler)}
		s.compiles.init()
		c := newController(s, &environment{name: DefaultEnvironment})
		defer c.stop()
		nodes := []string{"n-0", "n-1", "n-2", "n-3"}
		r := &liveRollout{rec: store.Rollout{ID: 1, Version: "v2", State: rolloutRunning, Stages: []store.RolloutStage{
			{Name: "rehearsal", Noop: true, State: stagePending},
			{Name: "canary", MaxFailed: 0, State: stagePending},
			{Name: "rest", MaxFailed: 50, MaxFailedPercent: true, Manual: true, State: stagePending},
		}}, nodes: map[string]*liveNode{}}
		for i, name := range nodes {
			stage := 2
			if i == 0 {
				stage = 1
			}
			nc := &nodeCatalog{etag: "sha256:new-" + name, version: "v2", files: map[string]bool{}}
			r.nodes[name] = &liveNode{RolloutNode: store.RolloutNode{Node: name, Stage: stage, Rehearse: -1 + i%2,
				Decision: decisionAllowed, State: nodePending, PreviousEtag: "sha256:old-" + name, Etag: nc.etag}, cand: nc}
		}
		r.index()
		c.cur = r
		c.advance(r)
		for i := 0; i+1 < len(script); i += 2 {
			op, arg := script[i], script[i+1]
			name := nodes[int(arg)%len(nodes)]
			n := r.nodes[name]
			switch op % 4 {
			case 0, 1: // a report
				rep := store.Report{Node: name, RunID: fmt.Sprint(i), CatalogDigest: n.Etag, Noop: op%4 == 1, Received: time.Now(),
					Summary: store.Summary{Resources: 1}}
				if arg&0x10 != 0 {
					rep.CatalogDigest = "sha256:other"
				}
				if arg&0x20 != 0 {
					rep.Events = []store.Event{{ID: "file:/x", Status: evStatus, Error: detail}}
					if evStatus == "failed" {
						rep.Summary.Failed = 1
					}
				}
				var sv []*herdv1.ServiceHealth
				if arg&0x40 != 0 {
					sv = []*herdv1.ServiceHealth{{Name: "web", Health: health, Detail: detail}}
				}
				if arg&0x80 != 0 {
					// An audit run (noop by rule): nothing of the
					// rollout may move for it.
					rep.Noop, rep.Audit = true, true
					before := n.RolloutNode
					c.report(name, rep, sv)
					if n.State != before.State || (n.Rehearsal == nil) != (before.Rehearsal == nil) {
						t.Fatalf("an audit run moved %s: %s → %s, rehearsal %v → %v", name, before.State, n.State, before.Rehearsal, n.Rehearsal)
					}
					break
				}
				c.report(name, rep, sv)
			case 2:
				_, err := c.action(int64(arg%3), action)
				if err != nil && !errors.Is(err, errBadAction) && !errors.Is(err, errRolloutState) && !errors.Is(err, errNoRollout) {
					t.Fatalf("action %q: an error of no known kind: %v", action, err)
				}
			case 3:
				c.bakeEnded(1, int(arg)%3)
			}
			switch r.rec.State {
			case rolloutRunning, rolloutPaused, rolloutAwaiting, rolloutDone, rolloutAborted:
			case rolloutHalted:
				if r.rec.Reason == "" {
					t.Fatal("halted without a reason")
				}
			default:
				t.Fatalf("rollout state %q", r.rec.State)
			}
			for _, n := range r.nodes {
				st := r.rec.Stages[n.Stage].State
				if (st == stagePending || st == stageAwaiting) && n.State != nodePending {
					t.Fatalf("%s is %s in stage %s, which is %s", n.Node, n.State, r.rec.Stages[n.Stage].Name, st)
				}
				if n.State == nodeFailed && len(n.Failures) == 0 {
					t.Fatalf("%s failed without saying why", n.Node)
				}
			}
		}
	})
}
