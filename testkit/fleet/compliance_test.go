package fleet_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herdcm/herd/agent"
	"github.com/herdcm/herd/api/herdv1"
	"github.com/herdcm/herd/testkit"
	"github.com/herdcm/herd/testkit/fleet"
)

// TestComplianceDrift: real agents against a real server. Both comply
// with a no-drift control until one's managed file is edited by hand: its
// audit run reports the drift, and the server's audit names the node and
// the file as the evidence while the other still passes. A real run puts
// the file back and the node complies again.
func TestComplianceDrift(t *testing.T) {
	t.Parallel()
	site := testkit.WriteSite(t, map[string]string{
		"nodes.toml": "[[node]]\nroles = [\"base\"]\n",
		"roles/base.toml": `
[[file]]
path = "/etc/motd"
content = "managed\n"
`,
		"policies/audit/drift.rego": `# METADATA
# title: no managed file drifted
# custom:
#   id: no-file-drift
#   severity: medium
package herd.audit.drift

violations contains {"message": sprintf("%s was changed by hand", [d.id]), "resource": d.id} if {
	some d in input.drift
	startswith(d.id, "file:")
}
`,
	})
	f := fleet.NewFleetWith(t, site, 2, fleet.Options{AuditInterval: 100 * time.Millisecond})
	f.AwaitConverged(await, nil)
	edited, other := f.Agents[0], f.Agents[1]
	awaitCompliance(t, f, map[string]string{edited.Name: "pass", other.Name: "pass"})

	if err := os.WriteFile(filepath.Join(edited.Root, "etc/motd"), []byte("edited by hand\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	resp := awaitCompliance(t, f, map[string]string{edited.Name: "fail", other.Name: "pass"})
	for _, r := range resp.Results {
		if r.Node == edited.Name && (len(r.Evidence) != 1 || r.Evidence[0].Resource != "file:/etc/motd" || !strings.Contains(r.Evidence[0].Message, "changed by hand")) {
			t.Errorf("the evidence against %s = %v, want file:/etc/motd changed by hand", r.Node, r.Evidence)
		}
	}
	if c := resp.Controls[0]; c.Pass != 1 || c.Fail != 1 || c.PercentCompliant != 50 {
		t.Errorf("no-file-drift = pass %d fail %d %.0f%%, want 1, 1, 50%%", c.Pass, c.Fail, c.PercentCompliant)
	}

	edited.Daemon.Trigger(agent.TriggerManual)
	awaitCompliance(t, f, map[string]string{edited.Name: "pass", other.Name: "pass"})
}

// awaitCompliance waits until the server's audit shows each node's state
// of its one control as want, and returns that answer.
func awaitCompliance(t *testing.T, f *fleet.Fleet, want map[string]string) *herdv1.AuditResponse {
	t.Helper()
	deadline := time.Now().Add(await)
	for {
		resp, err := f.Admin.Audit(context.Background(), &herdv1.AuditRequest{})
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for _, r := range resp.Results {
			got[r.Node] = r.State
		}
		same := len(got) == len(want)
		for n, s := range want {
			same = same && got[n] == s
		}
		if same {
			return resp
		}
		if time.Now().After(deadline) {
			t.Fatalf("audit states %v after %s, want %v", got, await, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
