package store

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func rec(control, state, evidence string) AuditRecord {
	return AuditRecord{Control: control, State: state, Evidence: []byte(evidence)}
}

// states flattens results to "node control state evidence @version" lines.
func states(t *testing.T, s *Store, q AuditQuery) []string {
	t.Helper()
	rs, err := s.AuditResults(context.Background(), q)
	if err != nil {
		t.Fatalf("AuditResults(%+v): %v", q, err)
	}
	var out []string
	for _, r := range rs {
		out = append(out, r.Node+" "+r.Control+" "+r.State+" "+string(r.Evidence)+" @"+r.Version)
	}
	return out
}

func TestAuditHistory(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		s := openAt(t, testLoc(t), Options{})
		save := func(version string, when time.Time, sets map[string][]AuditRecord, want int) {
			t.Helper()
			n, err := s.SaveAudit(ctx, version, when, sets)
			if err != nil || n != want {
				t.Fatalf("SaveAudit(%s, %v) = %d, %v; want %d rows of history", version, when, n, err, want)
			}
		}
		save("v1", at(100), map[string][]AuditRecord{
			"web-1": {rec("ssh", "pass", ""), rec("shadow", "pass", "")},
			"web-2": {rec("ssh", "fail", `[{"message":"root login"}]`), rec("shadow", "pass", "")},
		}, 4)
		// The same results at a new version and time: nothing changed.
		save("v2", at(200), map[string][]AuditRecord{
			"web-1": {rec("ssh", "pass", ""), rec("shadow", "pass", "")},
		}, 0)
		// web-1 drifts at v2; web-2 is fixed, and the site drops shadow.
		save("v2", at(300), map[string][]AuditRecord{
			"web-1": {rec("ssh", "fail", `[{"message":"drift"}]`), rec("shadow", "pass", "")},
			"web-2": {rec("ssh", "pass", "")},
		}, 3)
		// The evidence alone changing is a change.
		save("v3", at(400), map[string][]AuditRecord{
			"web-1": {rec("ssh", "fail", `[{"message":"drift again"}]`), rec("shadow", "pass", "")},
		}, 1)

		now := []string{
			"web-1 shadow pass  @v1",
			`web-1 ssh fail [{"message":"drift again"}] @v3`,
			"web-2 ssh pass  @v2",
		}
		tests := []struct {
			name string
			q    AuditQuery
			want []string
		}{
			{"now", AuditQuery{}, now},
			{"after the newest", AuditQuery{At: at(1000)}, now},
			{"before any", AuditQuery{At: at(99)}, nil},
			{"at the first", AuditQuery{At: at(100)}, []string{
				"web-1 shadow pass  @v1", "web-1 ssh pass  @v1",
				"web-2 shadow pass  @v1", `web-2 ssh fail [{"message":"root login"}] @v1`,
			}},
			{"between", AuditQuery{At: at(350)}, []string{
				"web-1 shadow pass  @v1", `web-1 ssh fail [{"message":"drift"}] @v2`, "web-2 ssh pass  @v2",
			}},
			{"one node", AuditQuery{Node: "web-2", At: at(150)}, []string{
				"web-2 shadow pass  @v1", `web-2 ssh fail [{"message":"root login"}] @v1`,
			}},
			{"one control", AuditQuery{Control: "ssh"}, []string{
				`web-1 ssh fail [{"message":"drift again"}] @v3`, "web-2 ssh pass  @v2",
			}},
		}
		for _, tt := range tests {
			if d := cmp.Diff(tt.want, states(t, s, tt.q)); d != "" {
				t.Errorf("%s: AuditResults(%+v) (-want +got):\n%s", tt.name, tt.q, d)
			}
		}

		// A deactivated node is left out unless asked for.
		must(t, s.Checkin(ctx, "web-2", at(10), "1.0", at(20)))
		must(t, s.Flush(ctx))
		if ok, err := s.Deactivate(ctx, "web-2", at(500)); err != nil || !ok {
			t.Fatalf("Deactivate(web-2) = %v, %v", ok, err)
		}
		if d := cmp.Diff(now[:2], states(t, s, AuditQuery{})); d != "" {
			t.Errorf("AuditResults with web-2 deactivated (-want +got):\n%s", d)
		}
		if got := states(t, s, AuditQuery{Inactive: true}); len(got) != 3 {
			t.Errorf("AuditResults(Inactive) = %q, want web-2's too", got)
		}

		// Pruning before 350 keeps every answer from 350 on.
		before := map[int][]string{}
		for _, ts := range []int{350, 400, 1000} {
			before[ts] = states(t, s, AuditQuery{At: at(ts), Inactive: true})
		}
		p, err := s.Prune(ctx, at(350))
		if err != nil {
			t.Fatal(err)
		}
		// web-1 ssh@100 (superseded at 300), web-2 ssh@100, web-2
		// shadow@100 and its gone row at 300.
		if p.AuditResults != 4 {
			t.Errorf("Prune(350).AuditResults = %d, want 4", p.AuditResults)
		}
		for ts, want := range before {
			if d := cmp.Diff(want, states(t, s, AuditQuery{At: at(ts), Inactive: true})); d != "" {
				t.Errorf("after Prune, AuditResults(At %d) (-want +got):\n%s", ts, d)
			}
		}

		// Purging a node forgets its results.
		if _, err := s.Purge(ctx, "web-2"); err != nil {
			t.Fatal(err)
		}
		if got := states(t, s, AuditQuery{Node: "web-2", At: at(1000), Inactive: true}); len(got) != 0 {
			t.Errorf("after purging web-2, its results = %q", got)
		}
	})
}

func TestAuditControls(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		s := openAt(t, testLoc(t), Options{})
		must(t, s.PutAuditControls(ctx, map[string][]byte{"a": []byte(`{"title":"A"}`), "b": []byte(`{"title":"B"}`)}))
		must(t, s.PutAuditControls(ctx, map[string][]byte{"a": []byte(`{"title":"A2"}`)}))
		got, err := s.AuditControls(ctx)
		want := map[string][]byte{"a": []byte(`{"title":"A2"}`), "b": []byte(`{"title":"B"}`)}
		if d := cmp.Diff(want, got); err != nil || d != "" {
			t.Errorf("AuditControls() = %v (-want +got):\n%s", err, d)
		}
	})
}
