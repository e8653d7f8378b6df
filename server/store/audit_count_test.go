package store

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// TestAuditFollowerSummary: the follower's counts, kept row by row, equal
// AuditSummary's full recount after each of a series of changes (states
// and evidence changing, a control removed, a stale control, a node
// deactivated and brought back, a purge).
func TestAuditFollowerSummary(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		s := openAt(t, testLoc(t), Options{})
		rng := rand.New(rand.NewPCG(7, 8))
		states := []string{"pass", "pass", "fail", "error", "no-data"}
		f := &AuditFollower{Step: time.Minute, Keep: 1000 * time.Hour}
		checked := 0
		check := func(when string, asked []string) {
			t.Helper()
			if err := s.Follow(ctx, f, at(10000)); err != nil {
				t.Fatal(err)
			}
			want, err := s.AuditSummary(ctx, asked)
			if err != nil {
				t.Fatal(err)
			}
			got := f.Summary(asked)
			if diff := cmp.Diff(want, got, cmpopts.EquateEmpty(), cmpopts.SortSlices(func(a, b AuditCount) bool { return a.Key+" "+a.State < b.Key+" "+b.State }), cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })); diff != "" {
				t.Fatalf("%s: (-AuditSummary +follower):\n%s", when, diff)
			}
			if len(want.Nodes) > 0 {
				checked++
			}
		}
		check("before any result", []string{"c0"})
		for n := range 6 {
			if err := s.Checkin(ctx, fmt.Sprintf("n%d", n), at(0), "", at(0)); err != nil {
				t.Fatal(err)
			}
		}
		for step := range 30 {
			sets := map[string][]AuditRecord{}
			controls := 4
			if step > 20 {
				controls = 3 // c3 removed from the site
			}
			for n := range 6 {
				if rng.IntN(3) == 0 {
					continue
				}
				var recs []AuditRecord
				for c := range controls {
					recs = append(recs, rec(fmt.Sprintf("c%d", c), states[rng.IntN(len(states))], fmt.Sprintf(`[{"message":"m%d"}]`, rng.IntN(2))))
				}
				sets[fmt.Sprintf("n%d", n)] = recs
			}
			if _, err := s.SaveAudit(ctx, fmt.Sprintf("v%d", step), at(step*90), sets); err != nil {
				t.Fatal(err)
			}
			asked := []string{"c0", "c1", "c2", "c3"}
			if step%3 == 0 {
				asked = asked[:3] // c3's rows stale
			}
			check(fmt.Sprintf("after save %d", step), asked)
			switch step {
			case 8:
				if _, err := s.Deactivate(ctx, "n1", at(step*90)); err != nil {
					t.Fatal(err)
				}
				check("after a deactivation", asked)
			case 12:
				if _, err := s.Activate(ctx, "n1"); err != nil {
					t.Fatal(err)
				}
				check("after n1 came back", asked)
			case 17:
				if _, err := s.Purge(ctx, "n2"); err != nil {
					t.Fatal(err)
				}
				check("after a purge", asked)
			}
		}
		if checked < 20 {
			t.Fatalf("only %d checks had results: the test proves little", checked)
		}
	})
}
