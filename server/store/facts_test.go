package store

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestFacts(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		s := openTest(t)

		if _, _, _, ok, err := s.Facts(ctx, "web-01"); err != nil || ok {
			t.Errorf("Facts of an unknown node = %v, %v; want not found", ok, err)
		}
		a, b := []byte(`{"os":{"family":"debian"}}`), []byte(`{"os":{"family":"redhat"}}`)
		steps := []struct {
			node, digest string
			json         []byte
			at           int
		}{
			{"web-01", "sha256:a", a, 1},
			{"web-01", "sha256:a", a, 2}, // same digest: no new blob, no history row
			{"web-02", "sha256:a", a, 3}, // another node, same facts: no new blob
			{"web-01", "sha256:b", b, 4},
			{"web-01", "sha256:a", a, 5}, // back again: a history row, no new blob
		}
		for _, st := range steps {
			if err := s.SaveFacts(ctx, st.node, st.digest, st.json, at(st.at)); err != nil {
				t.Fatalf("SaveFacts(%s, %s) = %v", st.node, st.digest, err)
			}
		}

		d, j, updated, ok, err := s.Facts(ctx, "web-01")
		if err != nil || !ok || d != "sha256:a" || string(j) != string(a) || !updated.Equal(at(5)) {
			t.Errorf("Facts(web-01) = %q, %s, %v, %v, %v", d, j, updated, ok, err)
		}
		if _, _, updated, _, _ := s.Facts(ctx, "web-02"); !updated.Equal(at(3)) {
			t.Errorf("Facts(web-02) updated = %v, want %v", updated, at(3))
		}

		var blobs int
		if err := s.rdb.QueryRow(`SELECT COUNT(*) FROM facts_blobs`).Scan(&blobs); err != nil || blobs != 2 {
			t.Errorf("facts_blobs has %d rows, %v; want 2 (one per digest)", blobs, err)
		}
		hist, err := s.FactsHistory(ctx, "web-01", 0)
		if err != nil {
			t.Fatal(err)
		}
		want := []FactsChange{{"sha256:a", at(5)}, {"sha256:b", at(4)}, {"sha256:a", at(1)}}
		if d := cmp.Diff(want, hist); d != "" {
			t.Errorf("FactsHistory(web-01) (-want +got):\n%s", d)
		}
		if hist, _ := s.FactsHistory(ctx, "web-02", 10); len(hist) != 1 {
			t.Errorf("FactsHistory(web-02) = %v, want one row (same digest twice is one change)", hist)
		}
		if hist, _ := s.FactsHistory(ctx, "web-01", 1); len(hist) != 1 {
			t.Errorf("FactsHistory limit 1 gave %d rows", len(hist))
		}

		digests, err := s.FactsDigests(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(map[string]string{"web-01": "sha256:a", "web-02": "sha256:a"}, digests); d != "" {
			t.Errorf("FactsDigests (-want +got):\n%s", d)
		}
		if j, ok, err := s.FactsByDigest(ctx, "sha256:b"); err != nil || !ok || string(j) != string(b) {
			t.Errorf("FactsByDigest(b) = %s, %v, %v", j, ok, err)
		}
	})
}

func TestFactsDedupSameDigestTwice(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		s := openTest(t)
		for i := range 2 {
			if err := s.SaveFacts(ctx, "web-01", "sha256:same", []byte(`{"x":1}`), at(i)); err != nil {
				t.Fatal(err)
			}
		}
		var blobs, hist int
		if err := s.rdb.QueryRow(`SELECT (SELECT COUNT(*) FROM facts_blobs), (SELECT COUNT(*) FROM facts_history)`).Scan(&blobs, &hist); err != nil {
			t.Fatal(err)
		}
		if blobs != 1 || hist != 1 {
			t.Errorf("after the same facts twice: %d blobs, %d history rows; want 1 and 1", blobs, hist)
		}
	})
}
