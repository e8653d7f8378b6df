package store

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestCheckin(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		path := testLoc(t)
		// A long window: check-ins stay in memory until Flush.
		s := openAt(t, path, Options{CheckinDelay: time.Hour})

		for _, c := range []struct {
			at      time.Time
			version string
		}{{at(10), "1.0"}, {at(30), "1.1"}, {at(20), "0.9"}} { // the last is older: it loses
			if err := s.Checkin(ctx, "web-01", c.at, c.version, c.at.Add(30*time.Minute)); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Checkin(ctx, "web-02", at(5), "1.0", at(5).Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		want := Node{Name: "web-01", FirstSeen: at(30), LastCheckin: at(30), AgentVersion: "1.1", NextCheckin: at(30).Add(30 * time.Minute)}

		// Not yet written, already seen.
		if n, ok, err := s.Node(ctx, "web-01"); err != nil || !ok {
			t.Fatalf("Node before flush = %v, %v", ok, err)
		} else if d := cmp.Diff(want, n); d != "" {
			t.Errorf("Node before flush (-want +got):\n%s", d)
		}
		if ns, err := s.Nodes(ctx); err != nil || len(ns) != 2 || ns[0].Name != "web-01" || ns[1].Name != "web-02" {
			t.Errorf("Nodes before flush = %+v, %v", ns, err)
		}
		if st := s.Stats(); st.Checkins != 0 {
			t.Errorf("check-ins written before flush: %d", st.Checkins)
		}

		if err := s.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		// Coalesced: one row write per node, the newest.
		if st := s.Stats(); st.Checkins != 2 {
			t.Errorf("check-ins written = %d, want 2 (one per node)", st.Checkins)
		}
		other := openAt(t, path, Options{})
		if n, ok, err := other.Node(ctx, "web-01"); err != nil || !ok {
			t.Fatalf("Node from a new store = %v, %v", ok, err)
		} else if d := cmp.Diff(want, n); d != "" {
			t.Errorf("Node from a new store (-want +got):\n%s", d)
		}

		// An older check-in flushed later does not move the clock back.
		if err := s.Checkin(ctx, "web-01", at(25), "0.8", at(26)); err != nil {
			t.Fatal(err)
		}
		if err := s.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if n, _, _ := other.Node(ctx, "web-01"); n.AgentVersion != "1.1" {
			t.Errorf("an older check-in replaced a newer one: %+v", n)
		}
	})
}

func TestCheckinFlushedWithoutWrites(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		s := openAt(t, testLoc(t), Options{CheckinDelay: time.Millisecond})
		if err := s.Checkin(ctx, "web-01", at(1), "1.0", at(2)); err != nil {
			t.Fatal(err)
		}
		// The writer flushes an idle window on its own; wait for it (bounded
		// by the test's deadline, not by a guess).
		for s.Stats().Checkins == 0 {
			time.Sleep(time.Millisecond)
		}
		var last int64
		if err := s.rdb.QueryRow(`SELECT last_checkin FROM nodes WHERE name = 'web-01'`).Scan(&last); err != nil || last != ns(at(1)) {
			t.Errorf("last_checkin in the file = %d, %v", last, err)
		}
	})
}

func TestNode(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		s := openTest(t)
		if _, ok, err := s.Node(ctx, "nobody"); err != nil || ok {
			t.Errorf("Node(nobody) = %v, %v; want not found", ok, err)
		}
		if ns, err := s.Nodes(ctx); err != nil || len(ns) != 0 {
			t.Errorf("Nodes on an empty store = %v, %v", ns, err)
		}
		must(t, s.Checkin(ctx, "web-01", at(1), "1.0", at(1800)))
		must(t, s.SaveFacts(ctx, "web-01", "sha256:f", []byte(`{}`), at(1)))
		must(t, s.SaveCatalog(ctx, "web-01", "sha256:c1", "v1", []byte(`{"a":1}`), []byte("sig1")))
		must(t, s.SaveCatalog(ctx, "web-01", "sha256:c2", "v2", []byte(`{"a":2}`), []byte("sig2")))
		must(t, s.SetCompileError(ctx, "web-01", "v3", "roles/web.toml:3:1: boom"))
		_, err := s.SaveReport(ctx, "web-01", Report{RunID: "r1", CatalogDigest: "sha256:c2", Started: at(100), Received: at(101),
			Summary: Summary{Resources: 3, InSync: 2, Changed: 1}})
		must(t, err)
		must(t, s.Flush(ctx))

		n, ok, err := s.Node(ctx, "web-01")
		if err != nil || !ok {
			t.Fatalf("Node = %v, %v", ok, err)
		}
		want := Node{
			Name: "web-01", FirstSeen: n.FirstSeen, LastCheckin: at(1), AgentVersion: "1.0", NextCheckin: at(1800),
			CatalogEtag: "sha256:c2", CatalogVersion: "v2", CatalogSaved: n.CatalogSaved, PreviousEtag: "sha256:c1",
			CompileError: "roles/web.toml:3:1: boom", CompileVersion: "v3",
			FactsDigest: "sha256:f", FactsUpdated: at(1),
			AppliedEtag: "sha256:c2", LastRunID: "r1", LastReport: at(101), LastStarted: at(100), LastExitCode: 2,
			LastSummary: Summary{Resources: 3, InSync: 2, Changed: 1},
		}
		if d := cmp.Diff(want, n); d != "" {
			t.Errorf("Node (-want +got):\n%s", d)
		}
		if n.FirstSeen.IsZero() || n.CatalogSaved.IsZero() {
			t.Errorf("FirstSeen %v, CatalogSaved %v: want set", n.FirstSeen, n.CatalogSaved)
		}
		ns, err := s.Nodes(ctx)
		if err != nil || len(ns) != 1 {
			t.Fatalf("Nodes = %v, %v", ns, err)
		}
		if d := cmp.Diff(n, ns[0]); d != "" {
			t.Errorf("Nodes()[0] differs from Node (-Node +Nodes):\n%s", d)
		}
	})
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
