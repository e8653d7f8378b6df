package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/herdcm/herd/api/herdv1"
	"github.com/herdcm/herd/testkit"
	"github.com/herdcm/herd/testkit/fleet"
)

// TestRolloutCommands drives rollouts with the CLI against a real fleet: a
// denied change blocks its rollout and herd rollout status shows the
// gate's message (exit 1); a newer good version supersedes it, waits for
// approval after its canary, herd rollout approve finishes it; list,
// diff and nodes show what happened.
func TestRolloutCommands(t *testing.T) {
	t.Parallel()
	site := testkit.WriteSite(t, map[string]string{
		"herd.toml": `[policy]
on_deny = "block"

[[rollout.stage]]
name = "canary"
nodes = ["node-1"]

[[rollout.stage]]
name = "rest"
approve = "manual"
`,
		"nodes.toml":       "[[node]]\nroles = [\"base\"]\n",
		"roles/base.toml":  "[[file]]\npath = \"/etc/motd\"\ncontent = \"{{ .node }}: {{ .params.greeting }}\\n\"\n",
		"data/common.toml": "greeting = \"v1\"\n",
		"policies/gate.rego": `package herd.gate

deny contains msg if {
	some r in input.catalog.resources
	r.type == "file"
	contains(r.attrs.content, "forbidden")
	msg := sprintf("%s must not say forbidden", [r.id])
}
`,
	})
	f := fleet.NewFleet(t, site, 2)
	before := f.AwaitConverged(60*time.Second, nil)
	v1 := f.Version()
	conn := []string{"--server", f.Addr(), "--admin-dir", f.AdminDir("ops")}
	rollout := func(args ...string) (string, string, int) {
		t.Helper()
		return herd(t, "", append(append([]string{"rollout"}, args...), conn...)...)
	}

	f.WriteSite(map[string]string{"data/common.toml": "greeting = \"forbidden\"\n"})
	blocked := f.AwaitRollout(60*time.Second, v1, "blocked", func(r *herdv1.GetRolloutResponse) bool { return r.Rollout.State == "blocked" })
	out, stderr, code := rollout("status")
	if code != 1 || !strings.Contains(stderr, "is blocked") {
		t.Errorf("herd rollout status of a blocked rollout: exit %d, stderr %q; want 1 saying it is blocked", code, stderr)
	}
	for _, want := range []string{"state    blocked", "denied by the gates (2 nodes)", "node-1: file:/etc/motd must not say forbidden", "node-2: file:/etc/motd must not say forbidden"} {
		if !strings.Contains(out, want) {
			t.Errorf("herd rollout status lacks %q:\n%s", want, out)
		}
	}
	out, _, code = rollout("status", "--json")
	var js struct {
		Rollout struct {
			State string `json:"state"`
		} `json:"rollout"`
		Nodes []struct {
			Node string `json:"node"`
		} `json:"nodes"`
	}
	if err := json.Unmarshal([]byte(out), &js); err != nil || js.Rollout.State != "blocked" || len(js.Nodes) != 2 {
		t.Errorf("herd rollout status --json: exit %d, %v, %+v:\n%s", code, err, js, out)
	}
	if out, _, code := herd(t, "", append([]string{"nodes"}, conn...)...); code != 0 || strings.Count(out, "denied #") != 2 {
		t.Errorf("herd nodes during the blocked rollout: exit %d; want both nodes denied:\n%s", code, out)
	}
	if _, stderr, code := rollout("status", "seven"); code != 64 {
		t.Errorf("herd rollout status seven: exit %d (%s), want 64", code, stderr)
	}

	// A newer good version supersedes the blocked one.
	f.WriteSite(map[string]string{"data/common.toml": "greeting = \"v3\"\n"})
	r := f.AwaitRollout(60*time.Second, blocked.Rollout.Version, "waiting for approval of stage rest", func(r *herdv1.GetRolloutResponse) bool {
		s := fleet.Stage(r.Rollout, "rest")
		return r.Rollout.Version != v1 && s != nil && s.State == "awaiting-approval"
	})
	out, _, code = rollout("status")
	if code != 0 || !strings.Contains(out, "awaiting-approval (herd rollout approve") {
		t.Errorf("herd rollout status awaiting approval: exit %d:\n%s", code, out)
	}
	out, stderr, code = rollout("diff", "--node", "node-2")
	if code != 0 || !strings.Contains(out, "file:/etc/motd") || !strings.Contains(out, "1 node change") {
		t.Errorf("herd rollout diff --node node-2: exit %d, %s:\n%s", code, stderr, out)
	}
	out, _, code = rollout("diff", "--json")
	var d diffOutput
	if err := json.Unmarshal([]byte(out), &d); err != nil || code != 0 || len(d.Nodes) != 2 || d.To != r.Rollout.Version {
		t.Errorf("herd rollout diff --json: exit %d, %v, %+v", code, err, d)
	}
	out, stderr, code = rollout("approve")
	if code != 0 || !strings.Contains(out, "rollout ") {
		t.Fatalf("herd rollout approve: exit %d, %s:\n%s", code, stderr, out)
	}
	f.AwaitRollout(60*time.Second, v1, "done", func(r *herdv1.GetRolloutResponse) bool { return r.Rollout.State == "done" })
	f.AwaitConverged(60*time.Second, before)
	out, _, code = rollout("list")
	if code != 0 || !strings.Contains(out, "done") || !strings.Contains(out, "superseded") {
		t.Errorf("herd rollout list: exit %d; want the done rollout and the superseded one:\n%s", code, out)
	}
	if _, stderr, code := rollout("abort", "999999"); code == 0 {
		t.Errorf("herd rollout abort of no rollout: exit 0 (%s)", stderr)
	}
}
