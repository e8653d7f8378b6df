package store

import (
	"context"
	"fmt"
	"testing"
	"time"
)

func TestPrune(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		s := openTest(t)

		// 2,500 reports (more than one prune chunk), every tenth with an event.
		for i := range 2500 {
			r := Report{RunID: fmt.Sprint(i), Started: at(i), Received: at(i)}
			if i%10 == 0 {
				r.Events = []Event{{ID: "file:/x", Type: "file", Status: "changed"}}
			}
			if i%20 == 0 {
				// Stored before migration 14: its event is a row of the
				// events table.
				saveLegacyReport(t, s, fmt.Sprintf("web-%d", i%3), r)
			} else if _, err := s.SaveReport(ctx, fmt.Sprintf("web-%d", i%3), r); err != nil {
				t.Fatal(err)
			}
		}
		// Facts: a, b, c for web-0 over time; web-1 has only old facts.
		must(t, s.SaveFacts(ctx, "web-0", "sha256:a", []byte(`{"a":1}`), at(1)))
		must(t, s.SaveFacts(ctx, "web-0", "sha256:b", []byte(`{"b":1}`), at(2)))
		must(t, s.SaveFacts(ctx, "web-0", "sha256:c", []byte(`{"c":1}`), at(3000)))
		must(t, s.SaveFacts(ctx, "web-1", "sha256:d", []byte(`{"d":1}`), at(5)))
		// Catalogs: c1 then c2 then c3 for web-0: c1 is neither current nor
		// previous, and its history row is old.
		for _, etag := range []string{"sha256:c1", "sha256:c2", "sha256:c3"} {
			must(t, s.SaveCatalog(ctx, "web-0", etag, "v", []byte(etag), nil))
		}

		p, err := s.Prune(ctx, at(2000))
		if err != nil {
			t.Fatal(err)
		}
		want := Pruned{Reports: 2000, Events: 200, FactsChanges: 2, FactsBlobs: 2}
		// The catalogs were saved now, after the cut: their history stays.
		if p != want {
			t.Errorf("Prune = %+v, want %+v", p, want)
		}
		var reports, events, rows int
		if err := s.rdb.QueryRow(`SELECT (SELECT COUNT(*) FROM reports), (SELECT SUM(events) FROM reports), (SELECT COUNT(*) FROM events)`).Scan(&reports, &events, &rows); err != nil {
			t.Fatal(err)
		}
		if reports != 500 || events != 50 || rows != 25 {
			t.Errorf("after Prune: %d reports, %d events, %d of them rows of events; want 500, 50 and 25", reports, events, rows)
		}
		if rs, _ := s.Reports(ctx, "", 1000); len(rs) != 500 || !rs[len(rs)-1].Received.Equal(at(2000)) {
			t.Errorf("oldest report left received %v, want %v", rs[len(rs)-1].Received, at(2000))
		}
		if h, _ := s.FactsHistory(ctx, "web-1", 0); len(h) != 1 {
			t.Errorf("web-1's only facts change was pruned: %v", h)
		}
		if _, j, _, ok, _ := s.Facts(ctx, "web-1"); !ok || string(j) != `{"d":1}` {
			t.Errorf("web-1's current facts were pruned: %s", j)
		}
		if _, ok, _ := s.FactsByDigest(ctx, "sha256:a"); ok {
			t.Error("facts nobody refers to were kept")
		}

		// With every history row old, c1 (neither current nor previous) goes.
		p, err = s.Prune(ctx, time.Now().Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if p.Catalogs != 1 || p.CatalogChanges != 2 {
			t.Errorf("second Prune = %+v, want 1 catalog and 2 history rows", p)
		}
		for etag, keep := range map[string]bool{"sha256:c1": false, "sha256:c2": true, "sha256:c3": true} {
			if _, ok, _ := s.CatalogByEtag(ctx, etag); ok != keep {
				t.Errorf("after Prune, %s kept = %v, want %v", etag, ok, keep)
			}
		}
	})
}
