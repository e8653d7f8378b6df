package store

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// countAt is the trend point at end counted the slow way, from what
// AuditResults says at that time.
func countAt(t *testing.T, s *Store, end time.Time) AuditTrendPoint {
	t.Helper()
	rs, err := s.AuditResults(context.Background(), AuditQuery{At: end})
	if err != nil {
		t.Fatal(err)
	}
	p := AuditTrendPoint{End: end}
	nodes := map[string][2]int{} // judged, failing
	for _, r := range rs {
		nc := nodes[r.Node]
		switch r.State {
		case "pass":
			p.Pass++
			nc[0]++
		case "fail":
			p.Fail++
			nc[0]++
			nc[1]++
		case "error":
			p.Error++
			nc[0]++
			nc[1]++
		case "no-data":
			p.NoData++
		}
		nodes[r.Node] = nc
	}
	for _, nc := range nodes {
		switch {
		case nc[1] > 0:
			p.NonCompliant++
		case nc[0] > 0:
			p.Compliant++
		default:
			p.NodesNoData++
		}
	}
	return p
}

// TestAuditTrend replays a random history (states changing, controls
// removed, a node deactivated) and checks every point of the trend
// against AuditResults at the point's end: the trend says what herd audit
// --at would have said.
func TestAuditTrend(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		s := openAt(t, testLoc(t), Options{})
		rng := rand.New(rand.NewPCG(1, 2))
		states := []string{"pass", "pass", "pass", "fail", "error", "no-data"}
		for step := range 40 {
			sets := map[string][]AuditRecord{}
			for n := range 6 {
				if rng.IntN(3) == 0 {
					continue // not re-judged this time
				}
				var recs []AuditRecord
				controls := 4
				if step > 25 {
					controls = 3 // the site dropped a control
				}
				for c := range controls {
					recs = append(recs, rec(fmt.Sprintf("c%d", c), states[rng.IntN(len(states))], fmt.Sprint(rng.IntN(2))))
				}
				sets[fmt.Sprintf("n%d", n)] = recs
			}
			if _, err := s.SaveAudit(ctx, "v", at(step*100), sets); err != nil {
				t.Fatal(err)
			}
		}
		for _, n := range []string{"n0", "n1", "n2", "n3", "n4", "n5"} {
			if err := s.Checkin(ctx, n, at(0), "", at(0)); err != nil {
				t.Fatal(err)
			}
		}
		if ok, err := s.Deactivate(ctx, "n5", at(4000)); err != nil || !ok {
			t.Fatalf("Deactivate = %v, %v", ok, err)
		}
		for _, tc := range []struct {
			since time.Time
			step  time.Duration
			n     int
		}{
			{at(-500), 100 * time.Second, 50}, // from before the first result
			{at(1050), 250 * time.Second, 8},  // from the middle, buckets ending between saves
			{at(3900), time.Second, 3},        // past the end: the last state repeats
		} {
			got, err := s.AuditTrend(ctx, tc.since, tc.step, tc.n)
			if err != nil {
				t.Fatalf("AuditTrend(%v, %v, %d) = %v", tc.since, tc.step, tc.n, err)
			}
			if len(got) != tc.n {
				t.Fatalf("AuditTrend(%v, %v, %d) = %d points", tc.since, tc.step, tc.n, len(got))
			}
			for i, p := range got {
				want := countAt(t, s, tc.since.Add(time.Duration(i+1)*tc.step))
				if diff := cmp.Diff(want, p, cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })); diff != "" {
					t.Errorf("AuditTrend(%v, %v) point %d (-AuditResults +trend):\n%s", tc.since, tc.step, i, diff)
				}
			}
		}
		if _, err := s.AuditTrend(ctx, at(0), 0, 5); err == nil {
			t.Error("AuditTrend with a zero step: no error")
		}
	})
}

// TestAuditMark: the mark moves when results are recorded, a node is
// deactivated or purged, and stays put otherwise.
func TestAuditMark(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		s := openAt(t, testLoc(t), Options{})
		mark := func() AuditMark {
			t.Helper()
			m, err := s.AuditMark(ctx)
			if err != nil {
				t.Fatal(err)
			}
			return m
		}
		m0 := mark()
		for _, n := range []string{"a", "b"} {
			if err := s.Checkin(ctx, n, at(0), "", at(0)); err != nil {
				t.Fatal(err)
			}
		}
		if m := mark(); m != m0 {
			t.Errorf("a check-in moved the mark: %+v → %+v", m0, m)
		}
		if _, err := s.SaveAudit(ctx, "v", at(1), map[string][]AuditRecord{"a": {rec("c", "pass", "")}, "b": {rec("c", "fail", "x")}}); err != nil {
			t.Fatal(err)
		}
		m1 := mark()
		if m1 == m0 {
			t.Error("saving results left the mark")
		}
		if _, err := s.SaveAudit(ctx, "v", at(2), map[string][]AuditRecord{"a": {rec("c", "pass", "")}}); err != nil {
			t.Fatal(err)
		}
		if m := mark(); m != m1 {
			t.Errorf("saving the same results moved the mark: %+v → %+v", m1, m)
		}
		if _, err := s.Deactivate(ctx, "a", at(3)); err != nil {
			t.Fatal(err)
		}
		m2 := mark()
		if m2 == m1 {
			t.Error("deactivating a node left the mark")
		}
		if _, err := s.Purge(ctx, "b"); err != nil {
			t.Fatal(err)
		}
		if m := mark(); m == m2 {
			t.Error("purging a node left the mark")
		}
	})
}

// TestAuditFollower follows a random history as it is written, a save at
// a time, through a deactivation and a purge, and checks after each step
// that the follower's points are AuditTrend's.
func TestAuditFollower(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		s := openAt(t, testLoc(t), Options{})
		rng := rand.New(rand.NewPCG(3, 4))
		states := []string{"pass", "pass", "fail", "error", "no-data"}
		f := &AuditFollower{Step: 50 * time.Second, Keep: 1000 * time.Hour}
		since := at(0).Truncate(f.Step).Add(-5 * f.Step)
		var now time.Time
		check := func(when string) {
			t.Helper()
			if err := s.Follow(ctx, f, now); err != nil {
				t.Fatal(err)
			}
			for _, span := range []struct {
				step time.Duration
				n    int
			}{{f.Step, 61}, {4 * f.Step, 15}} {
				want, err := s.AuditTrend(ctx, since, span.step, span.n)
				if err != nil {
					t.Fatal(err)
				}
				got := f.Points(since, span.step, span.n)
				if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })); diff != "" {
					t.Fatalf("%s, by %v: Points (-AuditTrend +follower):\n%s", when, span.step, diff)
				}
			}
		}
		now = at(0)
		check("before any result")
		for n := range 5 {
			if err := s.Checkin(ctx, fmt.Sprintf("n%d", n), at(0), "", at(0)); err != nil {
				t.Fatal(err)
			}
		}
		for step := range 30 {
			sets := map[string][]AuditRecord{}
			for n := range 5 {
				if rng.IntN(3) == 0 {
					continue
				}
				controls := 3
				if step > 20 {
					controls = 2
				}
				var recs []AuditRecord
				for c := range controls {
					recs = append(recs, rec(fmt.Sprintf("c%d", c), states[rng.IntN(len(states))], ""))
				}
				sets[fmt.Sprintf("n%d", n)] = recs
			}
			// The pass's rows are stamped with its start; now is later.
			if _, err := s.SaveAudit(ctx, "v", at(step*90+rng.IntN(40)), sets); err != nil {
				t.Fatal(err)
			}
			now = at(step*90 + 60)
			if step%4 == 0 {
				check(fmt.Sprintf("after save %d", step))
			}
			switch step {
			case 12:
				if _, err := s.Deactivate(ctx, "n1", at(step*90)); err != nil {
					t.Fatal(err)
				}
				check("after a deactivation")
			case 17:
				if _, err := s.Purge(ctx, "n1"); err != nil {
					t.Fatal(err)
				}
				check("after a purge")
			}
		}
		check("at the end")
	})
}

// TestAuditSummary: the summary's counts and failing results are those
// of AuditResults{} over the controls asked for, with a deactivated node
// and results of a control not asked for (stale) in the store.
func TestAuditSummary(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		s := openAt(t, testLoc(t), Options{})
		rng := rand.New(rand.NewPCG(5, 6))
		states := []string{"pass", "pass", "fail", "error", "no-data"}
		sets := map[string][]AuditRecord{}
		for n := range 8 {
			name := fmt.Sprintf("n%d", n)
			if err := s.Checkin(ctx, name, at(0), "", at(0)); err != nil {
				t.Fatal(err)
			}
			for c := range 4 {
				st := states[rng.IntN(len(states))]
				sets[name] = append(sets[name], rec(fmt.Sprintf("c%d", c), st, fmt.Sprintf(`[{"message":"%s %d"}]`, name, c)))
			}
		}
		if _, err := s.SaveAudit(ctx, "v", at(10), sets); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Deactivate(ctx, "n3", at(20)); err != nil {
			t.Fatal(err)
		}
		asked := []string{"c0", "c1", "c2"} // c3 is stale
		got, err := s.AuditSummary(ctx, asked)
		if err != nil {
			t.Fatal(err)
		}
		rs, err := s.AuditResults(ctx, AuditQuery{})
		if err != nil {
			t.Fatal(err)
		}
		nodes, controls := map[[2]string]int{}, map[[2]string]int{}
		var failing []string
		for _, r := range rs {
			if !slices.Contains(asked, r.Control) {
				continue
			}
			nodes[[2]string{r.Node, r.State}]++
			controls[[2]string{r.Control, r.State}]++
			if r.State == "fail" || r.State == "error" {
				failing = append(failing, r.Node+" "+r.Control+" "+string(r.Evidence))
			}
		}
		gotNodes, gotControls := map[[2]string]int{}, map[[2]string]int{}
		for _, c := range got.Nodes {
			gotNodes[[2]string{c.Key, c.State}] += c.N
		}
		for _, c := range got.Controls {
			gotControls[[2]string{c.Key, c.State}] += c.N
		}
		var gotFailing []string
		for _, r := range got.Failing {
			gotFailing = append(gotFailing, r.Node+" "+r.Control+" "+string(r.Evidence))
		}
		if diff := cmp.Diff(nodes, gotNodes); diff != "" {
			t.Errorf("by node (-AuditResults +AuditSummary):\n%s", diff)
		}
		if diff := cmp.Diff(controls, gotControls); diff != "" {
			t.Errorf("by control (-AuditResults +AuditSummary):\n%s", diff)
		}
		if diff := cmp.Diff(failing, gotFailing); diff != "" {
			t.Errorf("failing (-AuditResults +AuditSummary):\n%s", diff)
		}
		if len(nodes) == 0 || len(failing) == 0 {
			t.Fatal("the test's results are empty: it proves nothing")
		}
	})
}
