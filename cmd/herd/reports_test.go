package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/herdcm/herd/api/herdv1"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

// goldenRun is one stored run with every kind of event, and a node's
// hostile strings in each field it sends. Two events name their source;
// the others are as an agent older than the source field sends them.
func goldenRun() *herdv1.StoredReport {
	received := time.Date(2026, 12, 3, 9, 30, 0, 0, time.UTC)
	return &herdv1.StoredReport{
		Node: "web-01", ReceivedUnixMs: received.UnixMilli(),
		Report: &herdv1.Report{
			RunId: "run-7", Version: "sha256:" + "ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12", CatalogDigest: "sha256:cafe",
			StartedUnixNs: received.Add(-2 * time.Second).UnixNano(), DurationNs: int64(1500 * time.Millisecond),
			Summary: &herdv1.Summary{Resources: 9, InSync: 5, Changed: 2, Failed: 1, Skipped: 1, Refreshed: 1},
			Services: []*herdv1.ServiceHealth{
				{Name: "web", Health: "healthy"},
				{Name: "worker", Health: "unhealthy", Detail: "GET /health: 503" + hostile},
			},
			Events: []*herdv1.Event{
				{Id: "file:/etc/motd", Type: "file", Source: "roles/base.toml:3", Status: "changed", DurationNs: int64(1200 * time.Microsecond), Changes: []*herdv1.Change{
					{Attr: "content", From: "sha256:1111", To: "sha256:2222", Action: "update",
						Diff: "--- /etc/motd\n+++ /etc/motd\n@@ -1,2 +1,2 @@\n-hello\n+hello web-01\n \tindented\n+\x1b[2Jowned\n"},
					{Attr: "mode", From: "0644", To: "0600", Action: "update"},
				}},
				{Id: "file:/etc/app/secret", Type: "file", Status: "changed", Changes: []*herdv1.Change{
					{Attr: "content", Sensitive: true, Action: "update"},
				}},
				{Id: "service:web", Type: "service", Status: "changed", Refresh: "restarted (notified by file:/etc/motd)"},
				{Id: "exec:migrate" + hostile, Type: "exec", Source: "roles/app.toml:14" + hostile, Status: "failed", Error: "exit status 2\nsecond line", Output: "migrating\n\x1b]0;title\x07done\n"},
				{Id: "service:worker", Type: "service", Status: "skipped", Cause: "exec:migrate failed"},
			},
		},
	}
}

// TestReportsTextView: the list shows each change and its diff, and one
// run in full shows every event with its status, message, diff and
// output, as in testdata/*.golden (go test -update rewrites them). No
// control character of the node's strings reaches the output.
func TestReportsTextView(t *testing.T) {
	t.Parallel()
	noop := goldenRun()
	noop.Report.RunId, noop.Report.Noop = "run-6", true
	noop.Report.Events = noop.Report.Events[:1]
	quiet := goldenRun()
	quiet.Report.RunId, quiet.Report.Events, quiet.Report.Services = "run-5", nil, nil
	partial := goldenRun()
	partial.Report.RunId, partial.Report.Partial, partial.Report.Services = "run-4", true, nil
	partial.Report.Events = partial.Report.Events[:1]
	tests := []struct {
		golden string
		print  func(w *bytes.Buffer)
	}{
		{"reports.golden", func(w *bytes.Buffer) {
			printReports(w, []*herdv1.StoredReport{goldenRun(), noop, quiet, partial}, time.UTC)
		}},
		{"run-partial.golden", func(w *bytes.Buffer) { printRun(w, partial, time.UTC) }},
		{"run.golden", func(w *bytes.Buffer) { printRun(w, goldenRun(), time.UTC) }},
		{"run-noop.golden", func(w *bytes.Buffer) { printRun(w, noop, time.UTC) }},
		{"run-quiet.golden", func(w *bytes.Buffer) { printRun(w, quiet, time.UTC) }},
	}
	for _, tt := range tests {
		t.Run(tt.golden, func(t *testing.T) {
			t.Parallel()
			var b bytes.Buffer
			tt.print(&b)
			assertNoControl(t, tt.golden, b.String())
			path := filepath.Join("testdata", tt.golden)
			if *update {
				if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to write it)", err)
			}
			if diff := cmp.Diff(string(want), b.String()); diff != "" {
				t.Errorf("%s (-want +got):\n%s", tt.golden, diff)
			}
		})
	}
}
