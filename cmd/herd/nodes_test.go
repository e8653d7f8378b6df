package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/herdcm/herd/api/herdv1"
)

// TestPrintNodes: herd nodes shows the approved and the running version
// and the rollout state; a noop run says what would change and never
// "changed", and the running version stays the last real apply's; each
// node's environment is a column when the server serves environments.
func TestPrintNodes(t *testing.T) {
	t.Parallel()
	v1, v2 := "sha256:"+strings.Repeat("1", 64), strings.Repeat("2", 40)
	ago := time.Now().Add(-3 * time.Second).UnixMilli()
	tests := []struct {
		name      string
		node      *herdv1.NodeInfo
		envs      bool // the server serves environments
		want, not []string
	}{
		{
			name: "noop run",
			node: &herdv1.NodeInfo{Name: "web-01", CatalogEtag: "sha256:e", CatalogVersion: v2, AppliedVersion: v1, RolloutState: "rehearsed", RolloutId: 4,
				LastNoop: true, LastReportUnixMs: ago, LastSummary: &herdv1.Summary{Resources: 9, Changed: 6}},
			want: []string{"web-01", "222222222222", "sha256:111111111111", "rehearsed #4", "noop: would change 6, 0 failed"},
			not:  []string{"6 changed"},
		},
		{
			name: "real run",
			node: &herdv1.NodeInfo{Name: "web-02", CatalogEtag: "sha256:e", CatalogVersion: v1, AppliedVersion: v1, RolloutState: "healthy", RolloutId: 4,
				LastReportUnixMs: ago, LastSummary: &herdv1.Summary{Resources: 9, Changed: 2, Failed: 1}},
			want: []string{"web-02", "sha256:111111111111", "healthy #4", "2 changed, 1 failed"},
			not:  []string{"noop"},
		},
		{
			name: "drift",
			node: &herdv1.NodeInfo{Name: "web-03", AppliedVersion: v1, LastReportUnixMs: ago, LastSummary: &herdv1.Summary{Resources: 9, InSync: 9}, Drift: 3},
			want: []string{"DRIFT", "0 changed, 0 failed  3 "},
		},
		{
			name: "environments served",
			node: &herdv1.NodeInfo{Name: "web-04", Environment: "staging", CatalogEtag: "sha256:e", CatalogVersion: v1},
			envs: true,
			want: []string{"NODE    ENV      CHECK-IN", "web-04  staging  never"},
		},
		{
			name: "one site: no ENV column",
			node: &herdv1.NodeInfo{Name: "web-05", Environment: "production"},
			not:  []string{"ENV", "production"},
		},
		{
			name: "never ran, in no rollout",
			node: &herdv1.NodeInfo{Name: "db-01" + hostile, CompileError: "roles/db.toml:1:1: bad\nmore"},
			want: []string{`"db-01\x1b]0;owned`, "roles/db.toml:1:1: bad …"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var b bytes.Buffer
			if err := printNodes(&b, []*herdv1.NodeInfo{tt.node}, tt.envs); err != nil {
				t.Fatal(err)
			}
			out := b.String()
			if !strings.Contains(out, "APPROVED") || !strings.Contains(out, "RUNNING") || !strings.Contains(out, "ROLLOUT") {
				t.Errorf("herd nodes lacks its columns:\n%s", out)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("herd nodes lacks %q:\n%s", w, out)
				}
			}
			for _, w := range tt.not {
				if strings.Contains(out, w) {
					t.Errorf("herd nodes says %q:\n%s", w, out)
				}
			}
			assertNoControl(t, "herd nodes", out)
		})
	}
}

// assertNoControl fails when out holds a control byte other than a line
// break: a node's string reached the terminal raw.
func assertNoControl(t *testing.T, what, out string) {
	t.Helper()
	for i, c := range []byte(out) {
		if (c < 0x20 && c != '\n') || c == 0x7f {
			t.Errorf("%s printed control byte %#x at %d:\n%q", what, c, i, out)
			return
		}
	}
	if strings.Contains(out, "\u009b") {
		t.Errorf("%s printed a C1 control:\n%q", what, out)
	}
}

// TestPrintReportsMarksAudits: herd reports marks an audit run as such
// (not as an operator's noop run) and says how much drift a run found.
func TestPrintReportsMarksAudits(t *testing.T) {
	t.Parallel()
	at := time.Now().UnixMilli()
	tests := []struct {
		name      string
		r         *herdv1.Report
		want, not []string
	}{
		{"audit run", &herdv1.Report{RunId: "r1", Noop: true, Audit: true, Summary: &herdv1.Summary{Resources: 4, Changed: 1, Drift: 2},
			Events: []*herdv1.Event{{Id: "file:/etc/ssh/sshd_config", Status: "drift"}}},
			[]string{"audited web-01 in", ", 2 drift", "drift        file:/etc/ssh/sshd_config"}, []string{"(noop)", "converged"}},
		{"noop run", &herdv1.Report{RunId: "r2", Noop: true, Summary: &herdv1.Summary{Resources: 4, Changed: 1, Drift: 1}},
			[]string{"checked (noop) web-01 in", ", 1 drift"}, []string{"audited", "converged"}},
		{"real run without drift", &herdv1.Report{RunId: "r3", Summary: &herdv1.Summary{Resources: 4, Changed: 1}},
			[]string{"converged web-01 in", "run r3)"}, []string{"audited", "(noop)", "drift"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var b bytes.Buffer
			printReports(&b, []*herdv1.StoredReport{{Node: "web-01", ReceivedUnixMs: at, Report: tt.r}}, time.Local)
			out := b.String()
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("herd reports lacks %q:\n%s", w, out)
				}
			}
			for _, w := range tt.not {
				if strings.Contains(out, w) {
					t.Errorf("herd reports says %q:\n%s", w, out)
				}
			}
		})
	}
}
