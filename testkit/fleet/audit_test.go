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

// TestAuditRuns: with a short audit_interval a real agent, against a real
// server over real TLS, checks its host between applies and reports what
// differs as drift: an audited file it never creates, and a managed file
// edited by hand, which the audit leaves alone. ListNodes shows the
// node's drift; a real run puts the edit back and the drift goes down.
func TestAuditRuns(t *testing.T) {
	t.Parallel()
	site := testkit.WriteSite(t, map[string]string{
		"nodes.toml": "[[node]]\nroles = [\"base\"]\n",
		"roles/base.toml": `
[[file]]
path = "/etc/motd"
content = "managed\n"

[[file]]
path = "/etc/audited.conf"
content = "PermitRootLogin no\n"
audit = true
`,
	})
	f := fleet.NewFleetWith(t, site, 1, fleet.Options{AuditInterval: 100 * time.Millisecond})
	f.AwaitConverged(await, nil)
	a := f.Agents[0]
	if _, err := os.Stat(filepath.Join(a.Root, "etc/audited.conf")); !os.IsNotExist(err) {
		t.Fatalf("the audited file was created (stat: %v); audit = true must never change the host", err)
	}
	motd := filepath.Join(a.Root, "etc/motd")
	if err := os.WriteFile(motd, []byte("edited by hand\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// The audited file is missing since the first run; the hand edit is
	// found by the next audit run.
	awaitDrift(t, f, a.Name, 2)
	if b, _ := os.ReadFile(motd); string(b) != "edited by hand\n" {
		t.Errorf("an audit run changed the motd: %q", b)
	}
	rep := newestAudit(t, f, a.Name)
	if !rep.Noop || rep.Summary.GetDrift() != 2 {
		t.Errorf("the audit report = noop %v, summary %v; want noop with drift 2", rep.Noop, rep.Summary)
	}
	got := map[string]string{}
	for _, e := range rep.Events {
		var attrs []string
		for _, c := range e.Changes {
			attrs = append(attrs, c.Attr)
		}
		got[e.Id] = e.Status + " " + strings.Join(attrs, ",")
	}
	if got["file:/etc/motd"] != "changed content" || !strings.HasPrefix(got["file:/etc/audited.conf"], "drift ensure") {
		t.Errorf("the audit report's events = %v; want motd would change its content, audited.conf drift", got)
	}
	// The last run stays the last apply: an audit run is not one.
	if n := node(t, f, a.Name); n.LastNoop {
		t.Errorf("after audit runs the node's last run is noop: %v", n)
	}

	a.Daemon.Trigger(agent.TriggerManual)
	awaitDrift(t, f, a.Name, 1)
	fleet.AssertFile(t, a.Root, "etc/motd", "managed")
}

// awaitDrift waits until ListNodes shows node's drift as want.
func awaitDrift(t *testing.T, f *fleet.Fleet, name string, want int32) {
	t.Helper()
	deadline := time.Now().Add(await)
	for {
		n := node(t, f, name)
		if n.Drift == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s's drift is %d after %s, want %d", name, n.Drift, await, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func node(t *testing.T, f *fleet.Fleet, name string) *herdv1.NodeInfo {
	t.Helper()
	resp, err := f.Admin.ListNodes(context.Background(), &herdv1.ListNodesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range resp.Nodes {
		if n.Name == name {
			return n
		}
	}
	t.Fatalf("ListNodes has no %s", name)
	return nil
}

// newestAudit returns node's newest audit report.
func newestAudit(t *testing.T, f *fleet.Fleet, name string) *herdv1.Report {
	t.Helper()
	resp, err := f.Admin.ListReports(context.Background(), &herdv1.ListReportsRequest{Node: name, Limit: 50})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range resp.Reports {
		if r.Report.Audit {
			return r.Report
		}
	}
	t.Fatalf("no audit report of %s among its %d newest", name, len(resp.Reports))
	return nil
}
