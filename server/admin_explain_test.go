package server

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/herdcm/herd/api/herdv1"
	"github.com/herdcm/herd/catalogs"
)

func explainOf(t *testing.T, h *rolloutHarness, node, resource string) *catalogs.Explanation {
	t.Helper()
	resp, err := h.admin.Explain(context.Background(), &herdv1.ExplainRequest{Node: node, Resource: resource})
	if err != nil {
		t.Fatalf("Explain(%s, %q): %v", node, resource, err)
	}
	ex := &catalogs.Explanation{}
	if err := json.Unmarshal(resp.ExplanationJson, ex); err != nil {
		t.Fatalf("Explain(%s): %v", node, err)
	}
	return ex
}

// TestExplainInRollout explains nodes through a real server while a new
// version rolls out: the canary runs it, a node of a later stage still
// runs the old one and waits for it; both explanations compile the
// served version with the node's stored facts.
func TestExplainInRollout(t *testing.T) {
	t.Parallel()
	h := newRolloutHarness(t, rolloutSite(canaryHalfRest, "hello"), sixNodes...)
	old := h.s.defaultSite().version
	h.commit(rolloutSite(canaryHalfRest, "good morning"))
	served := h.s.defaultSite().version
	if old == served {
		t.Fatalf("the commit did not change the site's version (%s)", old)
	}
	r, nodes := h.get()
	var waiting, waitStage string
	for _, n := range sixNodes[1:] {
		if nodes[n] != nil && nodes[n].State == nodePending {
			waiting, waitStage = n, nodes[n].Stage
			break
		}
	}
	if waiting == "" {
		t.Fatalf("no node waits in rollout %d: %v", r.Id, nodes)
	}
	stageNumber := map[string]int{"canary": 1, "half": 2, "rest": 3}

	tests := []struct {
		node string
		want catalogs.RolloutPosition
	}{
		{"n-0", catalogs.RolloutPosition{Approved: served, ID: r.Id, Version: served, State: rolloutRunning,
			Stage: "canary", StageIndex: 1, StageState: stageReleasing, NodeState: nodeReleased, Decision: decisionAllowed}},
		{waiting, catalogs.RolloutPosition{Approved: old, Pending: served, ID: r.Id, Version: served, State: rolloutRunning,
			Stage: waitStage, StageIndex: stageNumber[waitStage], StageState: stagePending, NodeState: nodePending, Decision: decisionAllowed}},
	}
	for _, tt := range tests {
		ex := explainOf(t, h, tt.node, "file:/etc/motd")
		if ex.Rollout == nil {
			t.Fatalf("Explain(%s) has no rollout", tt.node)
		}
		if diff := cmp.Diff(tt.want, *ex.Rollout); diff != "" {
			t.Errorf("Explain(%s).Rollout (-want +got):\n%s", tt.node, diff)
		}
		if ex.Version != served || ex.Node != tt.node {
			t.Errorf("Explain(%s) explains %s at %s, want the served version %s", tt.node, ex.Node, ex.Version, served)
		}
		content := ex.Resource.Attributes[0]
		if content.Name != "content" || content.Value != "good morning "+tt.node+" on debian\n" {
			t.Errorf("Explain(%s) content = %+v", tt.node, content)
		}
		var from []string
		for _, o := range content.From {
			from = append(from, o.Read+" "+o.Level+" "+o.At)
		}
		want := []string{"facts.os.family facts ", "node node ", "params.greeting common data/common.toml:1:1"}
		if diff := cmp.Diff(want, from); diff != "" {
			t.Errorf("Explain(%s) content from (-want +got):\n%s", tt.node, diff)
		}
	}

	// The canary's explained catalog is the one it is released.
	if cur, _ := h.s.compiles.get("n-0"); cur == nil {
		t.Error("n-0 has no catalog")
	} else if ex := explainOf(t, h, "n-0", ""); ex.Digest != cur.etag {
		t.Errorf("Explain(n-0).Digest = %s, want the canary's etag %s", ex.Digest, cur.etag)
	}

	for _, tt := range []struct {
		node, resource string
		code           codes.Code
		msg            string
	}{
		{"n-0", "file:/etc/mot", codes.NotFound, "near: file:/etc/motd"},
		{"n-0", "motd", codes.InvalidArgument, "type:name"},
		{"ghost", "", codes.NotFound, "no facts for node ghost"},
		{"../etc", "", codes.InvalidArgument, "node"},
	} {
		_, err := h.admin.Explain(context.Background(), &herdv1.ExplainRequest{Node: tt.node, Resource: tt.resource})
		if s, _ := status.FromError(err); s.Code() != tt.code || !strings.Contains(s.Message(), tt.msg) {
			t.Errorf("Explain(%s, %q) = %v, want %v with %q", tt.node, tt.resource, err, tt.code, tt.msg)
		}
	}

	// A node's certificate does not open the Admin service.
	nodeAdmin := herdv1.NewAdminClient(dial(t, h.s, &h.nodes["n-0"].cert))
	if _, err := nodeAdmin.Explain(context.Background(), &herdv1.ExplainRequest{Node: "n-1"}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("Explain with a node's certificate = %v, want PermissionDenied", err)
	}
}
