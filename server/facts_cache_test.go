package server

import (
	"context"
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	"github.com/herdcm/herd/api/herdv1"
	"github.com/herdcm/herd/catalogs"
	"github.com/herdcm/herd/facts"
)

// putFacts puts decoded facts into the cache as a node would send them.
func (f *factsCache) putFacts(tb testing.TB, node, digest string, fs facts.Facts) {
	tb.Helper()
	if fs == nil {
		fs = facts.Facts{}
	}
	b, err := json.Marshal(fs)
	if err != nil {
		tb.Fatal(err)
	}
	f.put(node, digest, b)
}

// TestFactsCacheKeepsJSON: the cache keeps a node's facts as the JSON it
// sent, and everything that reads them still sees the newest: a change of
// facts recompiles, the old digest alone is no longer known, a reader
// may change what it got without changing the cache, and a restarted
// server compiles from the facts it stored.
func TestFactsCacheKeepsJSON(t *testing.T) {
	t.Parallel()
	site, dir := t.TempDir(), t.TempDir()
	writeFiles(t, site, map[string]string{
		"nodes.toml":   "[[node]]\nroles = [\"r\"]\n",
		"roles/r.toml": "[[file]]\npath = \"/etc/family\"\ncontent = \"{{ .facts.os.family }}\\n\"\n",
	})
	start := func() *Server {
		t.Helper()
		s, err := New(context.Background(), Options{
			Site: site, Dir: dir, Listen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0", Debounce: 50 * time.Millisecond,
			Log: slog.New(slog.NewTextHandler(testLog{t}, nil)),
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		return s
	}
	family := func(t *testing.T, resp *herdv1.CheckinResponse) string {
		t.Helper()
		cat, err := catalogs.Decode(resp.Catalog)
		if err != nil {
			t.Fatalf("catalog of a %v answer: %v", resp.Status, err)
		}
		r, ok := cat.Resource("file:/etc/family")
		if !ok {
			t.Fatal("the catalog has no /etc/family")
		}
		return r.String("content")
	}
	ctx := context.Background()
	s := start()
	cert := enroll(t, s, "a-01")
	c := herdv1.NewNodeClient(dial(t, s, &cert))

	debian := map[string]any{"os": map[string]any{"family": "debian"}}
	redhat := map[string]any{"os": map[string]any{"family": "redhat"}}
	_, debianDigest := factsJSON(t, debian)
	redhatJSON, redhatDigest := factsJSON(t, redhat)

	first := checkin(t, c, debian, "")
	if first.Status != herdv1.CheckinResponse_NEW_CATALOG || family(t, first) != "debian\n" {
		t.Fatalf("first check-in = %v, want NEW_CATALOG with family debian", first.Status)
	}
	if r, err := c.Checkin(ctx, &herdv1.CheckinRequest{FactsDigest: debianDigest, CatalogEtag: first.Etag}); err != nil || r.Status != herdv1.CheckinResponse_UNCHANGED {
		t.Fatalf("check-in by digest = %v, %v; want UNCHANGED", r.GetStatus(), err)
	}
	second := checkin(t, c, redhat, first.Etag)
	if second.Status != herdv1.CheckinResponse_NEW_CATALOG || family(t, second) != "redhat\n" {
		t.Fatalf("check-in with changed facts = %v, want NEW_CATALOG with family redhat", second.Status)
	}
	if r, err := c.Checkin(ctx, &herdv1.CheckinRequest{FactsDigest: debianDigest, CatalogEtag: second.Etag}); err != nil || r.Status != herdv1.CheckinResponse_NEED_FACTS {
		t.Fatalf("check-in by the old digest = %v, %v; want NEED_FACTS", r.GetStatus(), err)
	}

	// Kept as sent; each reader gets its own decoded copy.
	s.facts.mu.RLock()
	kept := s.facts.m["a-01"]
	s.facts.mu.RUnlock()
	if string(kept.json) != string(redhatJSON) || kept.digest != redhatDigest {
		t.Errorf("cache holds %s (%s), want the JSON sent %s (%s)", kept.json, kept.digest, redhatJSON, redhatDigest)
	}
	cf, ok := s.facts.get("a-01")
	if !ok || cf.digest != redhatDigest {
		t.Fatalf("get = %v, %v; want the redhat facts", cf, ok)
	}
	cf.facts["os"].(map[string]any)["family"] = "changed by a reader"
	if again, _ := s.facts.get("a-01"); again.facts["os"].(map[string]any)["family"] != "redhat" {
		t.Errorf("a reader's change reached the cache: %v", again.facts)
	}

	// A restarted server compiles from the stored facts.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = start()
	t.Cleanup(func() { s.Close() })
	c = herdv1.NewNodeClient(dial(t, s, &cert))
	r, err := c.Checkin(ctx, &herdv1.CheckinRequest{FactsDigest: redhatDigest})
	if err != nil || r.Status != herdv1.CheckinResponse_NEW_CATALOG || family(t, r) != "redhat\n" {
		t.Fatalf("check-in by digest after a restart = %v, %v; want NEW_CATALOG with family redhat", r.GetStatus(), err)
	}
}
