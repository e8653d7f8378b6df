package agent

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/herdcm/herd/agent/resources"
	"github.com/herdcm/herd/api/herdv1"
)

func TestReportProto(t *testing.T) {
	t.Parallel()
	start := time.Unix(1700000000, 5)
	r := &Report{
		RunID: "r1", Node: "web-01", Version: "v1", CatalogDigest: "sha256:ab", Noop: true,
		Started: start, Duration: 3 * time.Millisecond,
		Summary: Summary{Resources: 2, Changed: 1, Failed: 1, Refreshed: 1},
		Events: []Event{
			{ID: "file:/etc/motd", Type: "file", Status: Changed, Noop: true, Duration: time.Millisecond, Refresh: "would refresh",
				Changes: []resources.Change{
					{Attr: "content", From: "a", To: "b", Diff: "-a\n+b\n", Action: resources.Update},
					{Attr: "password", From: "secret", To: "hunter2", Action: resources.Create, Sensitive: true},
				}},
			{ID: "exec:x", Type: "exec", Status: Failed, Error: "exit 1", Cause: "c", Output: "out"},
		},
	}
	want := &herdv1.Report{
		RunId: "r1", Version: "v1", CatalogDigest: "sha256:ab", Noop: true,
		StartedUnixNs: start.UnixNano(), DurationNs: int64(3 * time.Millisecond),
		Summary: &herdv1.Summary{Resources: 2, Changed: 1, Failed: 1, Refreshed: 1},
		Events: []*herdv1.Event{
			{Id: "file:/etc/motd", Type: "file", Status: "changed", Noop: true, DurationNs: int64(time.Millisecond), Refresh: "would refresh",
				Changes: []*herdv1.Change{
					{Attr: "content", From: "a", To: "b", Diff: "-a\n+b\n", Action: "update"},
					{Attr: "password", Action: "create", Sensitive: true},
				}},
			{Id: "exec:x", Type: "exec", Status: "failed", Error: "exit 1", Cause: "c", Output: "out"},
		},
	}
	if diff := cmp.Diff(want, r.Proto(), protocmp.Transform()); diff != "" {
		t.Errorf("Proto() (-want +got):\n%s", diff)
	}
}

func TestSpoolOrderAndCap(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, err := OpenState(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var dropped int64
	for i := range maxSpooled + 3 {
		n, err := st.spoolReport(ctx, &herdv1.Report{RunId: fmt.Sprintf("run-%04d", i)})
		if err != nil {
			t.Fatal(err)
		}
		dropped += n
	}
	if dropped != 3 {
		t.Errorf("dropped %d, want the 3 oldest", dropped)
	}
	got, err := st.SpooledReports(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != maxSpooled || got[0].RunID != "run-0003" || got[len(got)-1].RunID != fmt.Sprintf("run-%04d", maxSpooled+2) {
		t.Errorf("spool holds %d reports, %s … %s", len(got), got[0].RunID, got[len(got)-1].RunID)
	}
	if _, err := st.spoolReport(ctx, &herdv1.Report{RunId: "run-0003"}); err == nil {
		t.Error("the same run id was spooled twice")
	}
}

func TestTrimRuns(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, err := OpenState(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	base := time.Unix(1700000000, 0)
	for i := range 12 {
		r := &Report{RunID: fmt.Sprintf("r%02d", i), Started: base.Add(time.Duration(i) * time.Minute)}
		if err := st.RecordRun(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.TrimRuns(ctx, 5); err != nil {
		t.Fatal(err)
	}
	runs, err := st.Runs(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range runs {
		ids = append(ids, r.ID)
	}
	if diff := cmp.Diff([]string{"r11", "r10", "r09", "r08", "r07"}, ids); diff != "" {
		t.Errorf("runs after TrimRuns(5) (-want +got):\n%s", diff)
	}
}
