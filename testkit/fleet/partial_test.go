package fleet_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/herdcm/herd/agent"
	"github.com/herdcm/herd/api/herdv1"
	"github.com/herdcm/herd/catalogs"
	"github.com/herdcm/herd/testkit"
	"github.com/herdcm/herd/testkit/fleet"
)

// TestPartialRun: herd agent --once --tags, against a real server over
// real TLS, converges the tagged resources only, and the server keeps the
// report marked partial without taking it for the node's last run or its
// drift.
func TestPartialRun(t *testing.T) {
	t.Parallel()
	site := testkit.WriteSite(t, map[string]string{
		"nodes.toml": "[[node]]\nroles = [\"base\"]\n",
		"roles/base.toml": `
[[file]]
path = "/etc/motd"
content = "managed\n"
tags = ["motd"]

[[file]]
path = "/etc/other.conf"
content = "other\n"
`,
	})
	f := fleet.NewFleet(t, site, 1)
	f.AwaitConverged(await, nil)
	a := f.Agents[0]
	before := node(t, f, a.Name)
	a.Stop()
	for _, p := range []string{"etc/motd", "etc/other.conf"} {
		if err := os.WriteFile(filepath.Join(a.Root, p), []byte("edited by hand\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	d, err := agent.NewDaemon(context.Background(), agent.DaemonOptions{
		Server: f.Addr(), Root: a.Root, Interval: time.Hour, Once: true,
		Select: catalogs.Selection{Tags: []string{"motd"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	r, err := d.RunOnce(context.Background())
	if err != nil {
		t.Fatalf("RunOnce: %v", err)
	}
	if !r.Partial || r.Summary.Resources != 1 || r.Summary.Changed != 1 {
		t.Errorf("the partial run's report: partial %v, summary %+v; want partial, 1 resource changed", r.Partial, r.Summary)
	}
	fleet.AssertFile(t, a.Root, "etc/motd", "managed")
	fleet.AssertFile(t, a.Root, "etc/other.conf", "edited by hand")

	resp, err := f.Admin.ListReports(context.Background(), &herdv1.ListReportsRequest{Node: a.Name, Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Reports) != 1 || !resp.Reports[0].Report.Partial || resp.Reports[0].Report.RunId != r.RunID {
		t.Fatalf("the server's newest report of %s = %v, want run %s marked partial", a.Name, resp.Reports, r.RunID)
	}
	after := node(t, f, a.Name)
	if after.LastReportUnixMs != before.LastReportUnixMs || after.AppliedEtag != before.AppliedEtag || after.LastSummary.GetResources() != 2 {
		t.Errorf("after a partial run the node's last run is of %d (applied %s, %d resources), want it unchanged: %d (%s, 2 resources)",
			after.LastReportUnixMs, after.AppliedEtag, after.LastSummary.GetResources(), before.LastReportUnixMs, before.AppliedEtag)
	}

	// A daemon converging part of its catalog on every run is refused.
	if _, err := agent.NewDaemon(context.Background(), agent.DaemonOptions{
		Server: f.Addr(), Root: a.Root, Select: catalogs.Selection{Only: []string{"file:/etc/motd"}},
	}); err == nil {
		t.Error("NewDaemon took a selection without Once")
	}
}
