package store

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestReportCounts buckets runs by when they were received: audit runs
// and runs before since are left out, a run with a failure counts as
// failed, and a node's count is its own.
func TestReportCounts(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T) {
		t.Parallel()
		s := openTest(t)
		ctx := context.Background()
		since := at(0)
		save := func(node, run string, received time.Time, failed int, audit bool) {
			t.Helper()
			if _, err := s.SaveReport(ctx, node, Report{RunID: run, Received: received, Started: received, Audit: audit,
				Summary: Summary{Resources: 2, Failed: failed}}); err != nil {
				t.Fatal(err)
			}
		}
		save("a", "r0", since.Add(-time.Second), 0, false) // before the range
		save("a", "r1", since, 0, false)
		save("a", "r2", since.Add(59*time.Minute), 1, false)
		save("b", "r1", since.Add(30*time.Minute), 0, false)
		save("b", "audit", since.Add(31*time.Minute), 0, true)
		save("b", "r2", since.Add(2*time.Hour+time.Minute), 2, false)

		for _, tc := range []struct {
			node string
			want []ReportBucket
		}{
			{"", []ReportBucket{{since, 3, 1}, {since.Add(2 * time.Hour), 1, 1}}},
			{"a", []ReportBucket{{since, 2, 1}}},
			{"b", []ReportBucket{{since, 1, 0}, {since.Add(2 * time.Hour), 1, 1}}},
			{"nobody", nil},
		} {
			got, err := s.ReportCounts(ctx, tc.node, since, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got, cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })); diff != "" {
				t.Errorf("ReportCounts(%q) (-want +got):\n%s", tc.node, diff)
			}
		}
		if _, err := s.ReportCounts(ctx, "", since, 0); err == nil {
			t.Error("ReportCounts with step 0 = nil error, want one")
		}

		r, ok, err := s.ReportByRun(ctx, "b", "r2")
		if err != nil || !ok || r.RunID != "r2" || r.Node != "b" || r.Summary.Failed != 2 {
			t.Errorf("ReportByRun(b, r2) = %+v, %v, %v; want b's r2", r, ok, err)
		}
		if _, ok, err := s.ReportByRun(ctx, "a", "audit"); ok || err != nil {
			t.Errorf("ReportByRun(a, audit) = %v, %v; want not found (b's run)", ok, err)
		}
	})
}
