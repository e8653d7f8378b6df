package store

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestReportsRoundTrip(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		s := openTest(t)

		changed := Report{
			RunID: "run-1", Version: "abc123", CatalogDigest: "sha256:c1", Started: at(100), Duration: 1500 * time.Millisecond, Received: at(102),
			Summary: Summary{Resources: 5, InSync: 2, Changed: 1, Failed: 1, Skipped: 1, Refreshed: 1},
			Events: []Event{
				{ID: "file:/etc/motd", Type: "file", Status: "changed", ChangesJSON: []byte(`[{"attr":"content"}]`), Duration: time.Millisecond},
				{ID: "package:nginx", Type: "package", Status: StatusInSync},
				{ID: "service:nginx", Type: "service", Status: StatusInSync, Refresh: "refreshed"}, // kept: it did something
				{ID: "exec:migrate", Type: "exec", Status: "failed", Error: "exit status 1", Output: "migrating\nfailed\n"},
				{ID: "file:/after", Type: "file", Status: "skipped", Cause: "exec:migrate failed"},
				{ID: "user:web", Type: "user", Status: StatusInSync},
			},
		}
		quiet := Report{RunID: "run-2", Version: "abc123", CatalogDigest: "sha256:c1", Noop: true, Started: at(200), Duration: time.Second, Received: at(201),
			Summary: Summary{Resources: 2, InSync: 2},
			Events:  []Event{{ID: "file:/etc/motd", Type: "file", Status: StatusInSync}, {ID: "package:nginx", Type: "package", Status: StatusInSync}},
		}
		other := Report{RunID: "run-1", Started: at(150), Received: at(150)} // same run id, another node: not a duplicate

		for _, c := range []struct {
			node string
			r    Report
		}{{"web-01", changed}, {"web-01", quiet}, {"web-02", other}} {
			if dup, err := s.SaveReport(ctx, c.node, c.r); err != nil || dup {
				t.Fatalf("SaveReport(%s, %s) = %v, %v", c.node, c.r.RunID, dup, err)
			}
		}

		got, err := s.Reports(ctx, "web-01", 10)
		if err != nil {
			t.Fatal(err)
		}
		wantChanged := changed
		wantChanged.Node = "web-01"
		wantChanged.Events = []Event{changed.Events[0], changed.Events[2], changed.Events[3], changed.Events[4]}
		wantQuiet := quiet
		wantQuiet.Node, wantQuiet.Events = "web-01", nil
		if d := cmp.Diff([]Report{wantQuiet, wantChanged}, got); d != "" {
			t.Errorf("Reports(web-01) (-want +got):\n%s", d)
		}
		all, err := s.Reports(ctx, "", 0)
		if err != nil || len(all) != 3 || all[0].Node != "web-02" {
			t.Errorf("Reports(all) = %d reports, first of %q, %v; want 3, newest (web-02) first", len(all), all[0].Node, err)
		}
		if one, _ := s.Reports(ctx, "", 1); len(one) != 1 {
			t.Errorf("Reports limit 1 gave %d", len(one))
		}
		var events int
		if err := s.rdb.QueryRow(`SELECT SUM(events) FROM reports`).Scan(&events); err != nil || events != 4 {
			t.Errorf("events stored = %d, %v; want 4 (not in sync only)", events, err)
		}

		// The node follows its newest run; the noop run leaves applied alone.
		n, _, _ := s.Node(ctx, "web-01")
		if n.LastRunID != "run-2" || !n.LastNoop || n.AppliedEtag != "sha256:c1" || n.LastExitCode != 0 || n.LastSummary != quiet.Summary {
			t.Errorf("Node(web-01) after two runs = %+v", n)
		}
		// A late report of an older run does not replace the newest.
		if _, err := s.SaveReport(ctx, "web-01", Report{RunID: "run-0", Started: at(50), CatalogDigest: "sha256:c0"}); err != nil {
			t.Fatal(err)
		}
		if n, _, _ := s.Node(ctx, "web-01"); n.LastRunID != "run-2" || n.AppliedEtag != "sha256:c1" {
			t.Errorf("an older run replaced the newest: %+v", n)
		}
	})
}

func TestReportExitCode(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T) {
		t.Parallel()
		for _, c := range []struct {
			s    Summary
			want int
		}{
			{Summary{InSync: 3}, 0},
			{Summary{Changed: 1}, 2},
			{Summary{Refreshed: 1}, 2},
			{Summary{Failed: 1}, 4},
			{Summary{Skipped: 1}, 4},
			{Summary{Changed: 1, Failed: 1}, 6},
		} {
			if got := (Report{Summary: c.s}).ExitCode(); got != c.want {
				t.Errorf("ExitCode(%+v) = %d, want %d", c.s, got, c.want)
			}
		}
	})
}

func TestEventTextCapped(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		s := openTest(t)
		// Multi-byte characters across the cut: it must land between them.
		long := strings.Repeat("é", MaxEventText) + "the end"
		r := Report{RunID: "r", Events: []Event{{ID: "exec:x", Type: "exec", Status: "failed", Output: long, Error: long}}}
		if _, err := s.SaveReport(ctx, "n", r); err != nil {
			t.Fatal(err)
		}
		got, err := s.Reports(ctx, "n", 1)
		if err != nil || len(got) != 1 || len(got[0].Events) != 1 {
			t.Fatalf("Reports = %+v, %v", got, err)
		}
		for _, text := range []string{got[0].Events[0].Output, got[0].Events[0].Error} {
			if len(text) > MaxEventText+40 || !strings.HasSuffix(text, "the end") || !strings.HasPrefix(text, "[") {
				t.Errorf("capped text: %d bytes, starts %q, want at most ~%d ending with the tail", len(text), text[:20], MaxEventText)
			}
			if !strings.Contains(text, "bytes cut]\né") {
				t.Errorf("cut not at a character boundary or unmarked: %q", text[:40])
			}
		}
		if got := tail("short"); got != "short" {
			t.Errorf("tail(short) = %q", got)
		}
	})
}

// TestReportExactlyOnce: many goroutines retry the same runs at once;
// each run is stored once, and exactly one call per run is not a
// duplicate.
func TestReportExactlyOnce(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		s := openTest(t)
		const runs, retries = 10, 16
		var fresh [runs]atomic.Int32
		var wg sync.WaitGroup
		for run := range runs {
			for range retries {
				wg.Go(func() {
					r := Report{RunID: fmt.Sprintf("run-%d", run), Started: at(run),
						Summary: Summary{Resources: 1, Changed: 1},
						Events:  []Event{{ID: "file:/x", Type: "file", Status: "changed"}}}
					dup, err := s.SaveReport(ctx, "web-01", r)
					if err != nil {
						t.Error(err)
						return
					}
					if !dup {
						fresh[run].Add(1)
					}
				})
			}
		}
		wg.Wait()
		for run := range runs {
			if n := fresh[run].Load(); n != 1 {
				t.Errorf("run-%d: %d calls stored it, want exactly 1", run, n)
			}
		}
		var reports, events int
		if err := s.rdb.QueryRow(`SELECT COUNT(*), SUM(events) FROM reports`).Scan(&reports, &events); err != nil {
			t.Fatal(err)
		}
		if reports != runs || events != runs {
			t.Errorf("%d reports and %d events stored, want %d each", reports, events, runs)
		}
	})
}

func TestReportDuplicateAfterReopen(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		path := testLoc(t)
		s, err := Open(path, Options{Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		if dup, err := s.SaveReport(ctx, "web-01", Report{RunID: "r1"}); err != nil || dup {
			t.Fatalf("first SaveReport = %v, %v", dup, err)
		}
		must(t, s.Close())
		s = openAt(t, path, Options{})
		if dup, err := s.SaveReport(ctx, "web-01", Report{RunID: "r1"}); err != nil || !dup {
			t.Errorf("SaveReport after restart = %v, %v; want duplicate", dup, err)
		}
	})
}

func TestReportRejects(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T) {
		t.Parallel()
		s := openTest(t)
		for _, c := range []struct {
			node string
			r    Report
		}{{"", Report{RunID: "r"}}, {"n", Report{}}} {
			if _, err := s.SaveReport(context.Background(), c.node, c.r); err == nil {
				t.Errorf("SaveReport(%q, run %q) succeeded", c.node, c.r.RunID)
			}
		}
	})
}

// TestReportDrift: a node's drift follows its newest report that checked
// its own state (an audit run or a real run), never a plain noop run or a
// late older report; an audit run is kept and marked, and is never the
// node's last run.
func TestReportDrift(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		s := openTest(t)
		steps := []struct {
			name      string
			r         Report
			wantDrift int
			wantLast  string // the node's LastRunID after it
		}{
			{"a real run with an audited resource drifted",
				Report{RunID: "apply-1", Started: at(10), Summary: Summary{Resources: 3, InSync: 2, Drift: 1}}, 1, "apply-1"},
			{"an audit run: what would change is drift",
				Report{RunID: "audit-1", Noop: true, Audit: true, Started: at(20), Summary: Summary{Resources: 3, InSync: 1, Changed: 2, Drift: 2}}, 2, "apply-1"},
			{"a plain noop run answers nothing",
				Report{RunID: "noop-1", Noop: true, Started: at(30), Summary: Summary{Resources: 3, Changed: 3, Drift: 3}}, 2, "noop-1"},
			{"an older audit run arriving late changes nothing",
				Report{RunID: "audit-0", Noop: true, Audit: true, Started: at(15), Summary: Summary{Resources: 3, InSync: 3}}, 2, "noop-1"},
			{"a real run puts it right",
				Report{RunID: "apply-2", Started: at(40), Summary: Summary{Resources: 3, InSync: 2, Changed: 1}}, 0, "apply-2"},
		}
		for _, st := range steps {
			st.r.Received = st.r.Started
			if _, err := s.SaveReport(ctx, "web-01", st.r); err != nil {
				t.Fatalf("%s: %v", st.name, err)
			}
			n, ok, err := s.Node(ctx, "web-01")
			if err != nil || !ok {
				t.Fatalf("%s: Node = %v, %v", st.name, ok, err)
			}
			if n.Drift != st.wantDrift || n.LastRunID != st.wantLast {
				t.Errorf("%s: node drift %d, last run %q; want %d, %q", st.name, n.Drift, n.LastRunID, st.wantDrift, st.wantLast)
			}
		}
		got, err := s.Reports(ctx, "web-01", 10)
		if err != nil {
			t.Fatal(err)
		}
		audits := map[string]int{}
		for _, r := range got {
			if r.Audit {
				audits[r.RunID] = r.Summary.Drift
			}
		}
		if d := cmp.Diff(map[string]int{"audit-1": 2, "audit-0": 0}, audits); d != "" {
			t.Errorf("audit reports and their drift (-want +got):\n%s", d)
		}
	})
}

// TestReportPartial: a partial run (--tags, --only) is kept and listed as
// partial, but is neither the node's last run, its applied catalog nor its
// drift, and compliance reads the last whole run.
func TestReportPartial(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		s := openTest(t)
		whole := Report{RunID: "apply-1", CatalogDigest: "sha256:a", Started: at(10), Received: at(10), Summary: Summary{Resources: 3, InSync: 2, Drift: 1}}
		partial := Report{RunID: "part-1", CatalogDigest: "sha256:b", Partial: true, Started: at(20), Received: at(20),
			Summary: Summary{Resources: 1, Changed: 1}, Events: []Event{{ID: "file:/x", Type: "file", Status: "changed"}}}
		for _, r := range []Report{whole, partial} {
			if _, err := s.SaveReport(ctx, "web-01", r); err != nil {
				t.Fatalf("SaveReport %s: %v", r.RunID, err)
			}
		}
		n, ok, err := s.Node(ctx, "web-01")
		if err != nil || !ok {
			t.Fatalf("Node = %v, %v", ok, err)
		}
		if n.LastRunID != "apply-1" || n.AppliedEtag != "sha256:a" || n.Drift != 1 {
			t.Errorf("after a partial run: last run %q, applied %q, drift %d; want apply-1, sha256:a, 1", n.LastRunID, n.AppliedEtag, n.Drift)
		}
		got, err := s.Reports(ctx, "web-01", 10)
		if err != nil {
			t.Fatal(err)
		}
		partials := map[string]bool{}
		for _, r := range got {
			partials[r.RunID] = r.Partial
		}
		if d := cmp.Diff(map[string]bool{"apply-1": false, "part-1": true}, partials); d != "" {
			t.Errorf("reports and whether each is partial (-want +got):\n%s", d)
		}
		last, check, err := s.AuditReports(ctx, "web-01")
		if err != nil {
			t.Fatal(err)
		}
		if last == nil || check == nil || last.RunID != "apply-1" || check.RunID != "apply-1" {
			t.Errorf("AuditReports = %v, %v; want the whole run apply-1 for both", last, check)
		}
	})
}

// TestSaveReportsMatchesOneByOne: a batch leaves the node as the same
// reports saved one by one in the order they started do, whatever their
// mix of noop, audit and partial runs: its newest apply is its applied
// catalog even when a newer noop run came first. A run sent again is a
// duplicate, in a later batch or in the same one; a report the store
// refuses fails alone.
func TestSaveReportsMatchesOneByOne(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T) {
		t.Parallel()
		s := openTest(t)
		ctx := context.Background()
		rng := rand.New(rand.NewPCG(1, 2))
		for round := range 40 {
			batched, single := fmt.Sprintf("b-%d", round), fmt.Sprintf("s-%d", round)
			var reports []Report
			for i := range 1 + rng.IntN(12) {
				r := Report{
					RunID: fmt.Sprintf("run-%d", i), Version: fmt.Sprintf("v%d", i), CatalogDigest: fmt.Sprintf("sha256:%d", i),
					Noop: rng.IntN(3) == 0, Audit: rng.IntN(5) == 0, Partial: rng.IntN(6) == 0,
					Started: at(rng.IntN(20)), Received: at(100 + i),
					Summary: Summary{Resources: 5, InSync: rng.IntN(5), Failed: rng.IntN(2), Drift: rng.IntN(4)},
				}
				if r.Audit {
					r.Noop = true
				}
				if r.Summary.Failed > 0 {
					r.Events = []Event{{ID: "file:/x", Type: "file", Status: "failed", Error: "boom"}}
				}
				reports = append(reports, r)
			}
			dups, errs := s.SaveReports(ctx, batched, reports)
			for i := range reports {
				if errs[i] != nil || dups[i] {
					t.Fatalf("round %d report %d: %v, duplicate %v", round, i, errs[i], dups[i])
				}
			}
			sorted := slices.Clone(reports)
			slices.SortStableFunc(sorted, func(a, b Report) int { return a.Started.Compare(b.Started) })
			for _, r := range sorted {
				if _, err := s.SaveReport(ctx, single, r); err != nil {
					t.Fatal(err)
				}
			}
			b, _, err := s.Node(ctx, batched)
			if err != nil {
				t.Fatal(err)
			}
			o, _, err := s.Node(ctx, single)
			if err != nil {
				t.Fatal(err)
			}
			b.Name, o.Name = "", ""
			// First seen by the first report written: the batch's first,
			// the earliest started one by one.
			b.FirstSeen, o.FirstSeen = time.Time{}, time.Time{}
			if d := cmp.Diff(o, b); d != "" {
				t.Fatalf("round %d: the node after a batch differs from one by one in start order (-one +batch):\n%s\nreports: %+v", round, d, reports)
			}
			// Sent again, with a new run twice: duplicates but the new
			// one's first.
			again := append(slices.Clone(reports[:1+rng.IntN(len(reports))]), Report{RunID: "new", Started: at(50)}, Report{RunID: "new", Started: at(50)})
			dups, errs = s.SaveReports(ctx, batched, again)
			for i := range again {
				if want := i != len(again)-2; errs[i] != nil || dups[i] != want {
					t.Errorf("round %d, sent again, report %d (%s): %v, duplicate %v, want %v", round, i, again[i].RunID, errs[i], dups[i], want)
				}
			}
			if got, err := s.Reports(ctx, batched, 100); err != nil || len(got) != len(reports)+1 {
				t.Errorf("round %d: %d reports stored (%v), want %d", round, len(got), err, len(reports)+1)
			}
		}
		// Refused before the write: alone.
		_, errs := s.SaveReports(ctx, "z", []Report{{RunID: "ok", Started: at(1)}, {RunID: ""}})
		if errs[0] != nil || errs[1] == nil {
			t.Errorf("a batch with a report without a run id: %v; want only that one refused", errs)
		}
	})
}
