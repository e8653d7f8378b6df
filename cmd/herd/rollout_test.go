package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/herdcm/herd/api/herdv1"
	"github.com/herdcm/herd/catalogs"
)

// TestPrintRollout: herd rollout status's text holds the version and the
// previous one, the state and reason, each stage with its counts, bake
// time left and manual approval, deny and warn messages, failed nodes
// with their failures, the rehearsal's prediction grouped, and compile
// errors; every string that came from a node, a gate or the site is
// escaped.
func TestPrintRollout(t *testing.T) {
	t.Parallel()
	now := time.UnixMilli(1_800_000_000_000)
	st := &herdv1.GetRolloutResponse{
		Rollout: &herdv1.Rollout{
			Id: 7, Version: "sha256:" + strings.Repeat("ab", 32), PreviousVersion: strings.Repeat("c", 40),
			State: "halted", Reason: "stage canary: 1 node failed (max 0): web-01" + hostile,
			CreatedUnixMs: now.UnixMilli() - 60_000, UpdatedUnixMs: now.UnixMilli(),
			Counts: map[string]int32{"failed": 1, "pending": 4, "denied": 1},
			Stages: []*herdv1.RolloutStage{
				{Name: "rehearsal", State: "done", Noop: true, Nodes: 1, Counts: map[string]int32{"rehearsed": 1}},
				{Name: "canary", State: "baking", Nodes: 2, Counts: map[string]int32{"healthy": 1, "failed": 1}, BakeNs: int64(10 * time.Minute), BakeUntilUnixMs: now.Add(90 * time.Second).UnixMilli(), MaxFailed: "0"},
				{Name: "rest", State: "pending", Manual: true, Nodes: 4, Counts: map[string]int32{"pending": 4}, MaxFailed: "10%"},
			},
		},
		Nodes: []*herdv1.RolloutNode{
			{Node: "web-01" + hostile, Stage: "canary", Decision: "allowed", State: "failed", Failures: []string{"exec:migrate: exit status 3", "service web: unhealthy: " + hostile}},
			{Node: "web-02", Stage: "rest", Decision: "denied", State: "pending", Deny: []*herdv1.PolicyMessage{{Message: "sshd must keep PermitRootLogin no", Resource: "file:/etc/ssh/sshd_config"}}},
			{Node: "web-03", Stage: "rest", Decision: "allowed", State: "pending", Warn: []*herdv1.PolicyMessage{{Message: "package nginx moves on 40% of the fleet"}}},
			{Node: "db-01", Stage: "rest", Decision: "compile-error", CompileError: "roles/db.toml:3:1: unknown attribute \"sise\"\nmore"},
			{Node: "canary-9", Stage: "rehearsal", Decision: "allowed", State: "rehearsed", Rehearsal: &herdv1.Summary{Resources: 12, Changed: 2}},
		},
	}
	rehearsed := map[string]catalogs.Change{"canary-9": {Changed: []catalogs.ResourceChange{{ID: "file:/etc/motd", Type: "file", Name: "/etc/motd",
		Attrs: []catalogs.AttrChange{{Name: "mode", From: "0644", To: "0600"}}}}}}
	var b bytes.Buffer
	if err := printRollout(&b, st, rehearsed, 3, now); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"rollout 7: sha256:abababababab ← cccccccccccc",
		"state    halted",
		`reason   "stage canary: 1 node failed (max 0): web-01\x1b]0;owned`,
		"failed 1, denied 1", "updated 0s ago",
		"rehearsal", "done (rehearsal)", "rehearsed 1",
		"baking", "healthy 1, failed 1", "10m0s (1m30s left)",
		"pending (manual)", "10%",
		"denied by the gates (1 node)", "web-02: sshd must keep PermitRootLogin no [file:/etc/ssh/sshd_config]",
		"failed (1 node)", `"web-01\x1b]0;owned`, "exec:migrate: exit status 3", `"service web: unhealthy: \x1b]0;owned`,
		"compile errors (1 node; they keep", `db-01: roles/db.toml:3:1: unknown attribute "sise" …`,
		"canary-9: would change 2 of 12 resources, 0 failed",
		"file:/etc/motd", "0600",
		"and 3 nodes more rehearsed: herd rollout diff 7 --node NODE",
		"warnings (1 node)", "web-03: package nginx moves on 40% of the fleet",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("herd rollout status lacks %q:\n%s", want, out)
		}
	}
	assertNoControl(t, "herd rollout status", out)
}

// FuzzRolloutChanges: the change JSON a server sends for herd rollout
// diff and status (a hostile or broken server included) never panics the
// CLI and never reaches the terminal with a control byte other than line
// breaks and tabs.
func FuzzRolloutChanges(f *testing.F) {
	f.Add("web-01", []byte(`{"changed":[{"id":"file:/etc/motd","type":"file","name":"/etc/motd","attrs":[{"name":"content","diff":"--- a\n+++ b\n@@ -1 +1 @@\n-a\n+b\n"}]}]}`))
	f.Add("web-01"+hostile, []byte(`{"added":[{"id":"package:nginx\u001b[2J","type":"package","name":"nginx","attrs":[{"name":"version","to":"1.26\r\u009b"}]}]}`))
	f.Add("db\x00", []byte(`{"removed":[{"id":"service:y","type":"service","name":"y","attrs":[{"name":"run","from":["a","b\tc"]}]}],"changed":[{"id":"x","attrs":[{"name":"n","from":{"k":1},"to":null}]}]}`))
	f.Add("", []byte(`not json`))
	f.Fuzz(func(t *testing.T, node string, changeJSON []byte) {
		var ch catalogs.Change
		if json.Unmarshal(changeJSON, &ch) != nil {
			return
		}
		var b bytes.Buffer
		if err := writeChanges(&b, map[string]catalogs.Change{node: ch, "web-02": ch}); err != nil {
			return
		}
		for i, c := range b.Bytes() {
			if (c < 0x20 && c != '\n' && c != '\t') || c == 0x7f {
				t.Fatalf("control byte %#x at %d in:\n%q", c, i, b.String())
			}
		}
		if bytes.Contains(b.Bytes(), []byte("\u009b")) || bytes.Contains(b.Bytes(), []byte("\u202e")) {
			t.Fatalf("a C1 control or bidi override in:\n%q", b.String())
		}
	})
}
