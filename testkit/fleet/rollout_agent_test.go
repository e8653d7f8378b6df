package fleet_test

import (
	"context"
	"encoding/json"
	"maps"
	"testing"

	"github.com/herdcm/herd/api/herdv1"
	"github.com/herdcm/herd/catalogs"
	"github.com/herdcm/herd/testkit/fleet"
)

// TestRolloutRehearsal: a rehearsal stage runs the new catalog in noop on
// its nodes and shows what would change (node-2's motd), and changes
// nothing anywhere; the stage after it waits for approval.
func TestRolloutRehearsal(t *testing.T) {
	t.Parallel()
	site := rolloutSite(t, `
[[rollout.stage]]
name = "rehearsal"
nodes = ["node-2"]
noop = true

[[rollout.stage]]
name = "all"
approve = "manual"
`, nil)
	f := fleet.NewFleet(t, site, 3)
	before := f.AwaitConverged(await, nil)
	v1 := f.Version()

	f.WriteSite(map[string]string{"data/common.toml": "greeting = \"v2\"\n"})
	r := f.AwaitRollout(await, v1, "rehearsed and waiting for approval", func(r *herdv1.GetRolloutResponse) bool {
		s := fleet.Stage(r.Rollout, "rehearsal")
		return s != nil && s.State == "done" && stageState("all", "awaiting-approval")(r)
	})
	rn := fleet.Node(r, "node-2")
	if rn == nil || rn.State != "rehearsed" || rn.Rehearsal.GetChanged() != 1 || rn.Rehearsal.GetFailed() != 0 {
		t.Errorf("node-2 = %v, want rehearsed, predicting 1 change and no failure", rn)
	}
	for _, name := range []string{"node-1", "node-3"} {
		if rn := fleet.Node(r, name); rn == nil || rn.State == "rehearsed" {
			t.Errorf("%s = %v; only node-2 rehearses", name, rn)
		}
	}
	// The predicted change is the catalog's: the motd's content.
	d, err := f.Admin.RolloutDiff(context.Background(), &herdv1.RolloutDiffRequest{Id: r.Rollout.Id, Node: "node-2"})
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Changes) != 1 {
		t.Fatalf("RolloutDiff(node-2) = %v, want one node's change", d.Changes)
	}
	var ch catalogs.Change
	if err := json.Unmarshal(d.Changes[0].ChangeJson, &ch); err != nil {
		t.Fatal(err)
	}
	if len(ch.Changed) != 1 || ch.Changed[0].ID != "file:/etc/motd" {
		t.Errorf("node-2's change = %+v, want file:/etc/motd changed", ch)
	}
	if ap := f.Approved(); !maps.Equal(ap, before) {
		t.Errorf("a rehearsal changed the approved catalogs: %v, want %v", ap, before)
	}
	assertGreetings(t, f, "after the rehearsal", func(string) string { return "v1" })

	action(t, f, r.Rollout.Id, "approve")
	f.AwaitRollout(await, v1, "done", rolloutState("done"))
	f.AwaitConverged(await, before)
	assertGreetings(t, f, "after the approval", func(string) string { return "v2" })
}
