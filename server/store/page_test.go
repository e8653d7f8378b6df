package store

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

// TestReportsPage: pages in order, newest first, every report once; a
// byte budget ends a page early but never before its first report.
func TestReportsPage(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T) {
		t.Parallel()
		s := openTest(t)
		ctx := context.Background()
		big := strings.Repeat("x", 10<<10)
		for i := range 10 {
			r := Report{Node: "n", RunID: fmt.Sprintf("run-%d", i), Received: at(i),
				Events: []Event{{ID: "exec:x", Type: "exec", Status: "failed", Output: big}}}
			if _, err := s.SaveReport(ctx, "n", r); err != nil {
				t.Fatal(err)
			}
		}
		for _, tc := range []struct {
			name     string
			q        ReportQuery
			wantPage int // reports on each full page
		}{
			{"by count", ReportQuery{Limit: 3}, 3},
			{"by node", ReportQuery{Node: "n", Limit: 4}, 4},
			{"by bytes", ReportQuery{Limit: 10, MaxBytes: 25 << 10}, 3},
			{"budget below one report", ReportQuery{Limit: 10, MaxBytes: 1}, 1},
		} {
			t.Run(tc.name, func(t *testing.T) {
				var got []string
				q := tc.q
				for page := 0; ; page++ {
					rs, next, err := s.ReportsPage(ctx, q)
					if err != nil {
						t.Fatal(err)
					}
					if next != 0 && len(rs) != tc.wantPage {
						t.Errorf("page %d holds %d reports, want %d", page, len(rs), tc.wantPage)
					}
					for _, r := range rs {
						got = append(got, r.RunID)
					}
					if next == 0 {
						break
					}
					q.Before = next
				}
				var want []string
				for i := 9; i >= 0; i-- {
					want = append(want, fmt.Sprintf("run-%d", i))
				}
				if strings.Join(got, ",") != strings.Join(want, ",") {
					t.Errorf("pages gave %v, want %v", got, want)
				}
			})
		}
	})
}
