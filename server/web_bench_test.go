package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/herdcm/herd/facts"
	"github.com/herdcm/herd/testkit"
)

// BenchmarkAPIWhere10k is a script's fleet query through the JSON API
// over 10,000 nodes: real HTTPS on 127.0.0.1 with an admin certificate,
// every page (page_size=1000) followed by next_page_token and decoded.
// One op is the whole query. Nodes is /api/v1/nodes with the issue's
// facts filter; Facts is /api/v1/facts of one fact under it.
func BenchmarkAPIWhere10k(b *testing.B) {
	const nodes = 10000
	site := b.TempDir()
	for name, content := range testSite {
		writeFilesTB(b, site, name, content)
	}
	s, err := New(context.Background(), Options{Site: site, Dir: b.TempDir(), Listen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0"})
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	ctx := context.Background()
	for i := range nodes {
		name := fmt.Sprintf("node-%05d", i)
		if err := s.st.Checkin(ctx, name, time.Now(), "v", time.Now()); err != nil {
			b.Fatal(err)
		}
		raw, err := json.Marshal(testkit.SyntheticFacts(i))
		if err != nil {
			b.Fatal(err)
		}
		f, err := facts.FromJSON(raw)
		if err != nil {
			b.Fatal(err)
		}
		s.facts.put(name, cachedFacts{digest: name, facts: f})
	}
	adm := admin(b, s)
	c := webClient(b, s, &adm)
	where := url.QueryEscape(`os.family == "debian" && memory.total_bytes < 4e9`)
	for _, bc := range []struct{ name, path, list string }{
		{"Nodes", "/api/v1/nodes?page_size=1000&where=" + where, "nodes"},
		{"Facts", "/api/v1/facts?fact=memory.total_bytes&page_size=1000&where=" + where, "facts"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			matched := 0
			for b.Loop() {
				matched = 0
				for token := ""; ; {
					p := bc.path
					if token != "" {
						p += "&page_token=" + url.QueryEscape(token)
					}
					r := webDo(b, c, s, "GET", p, nil, nil)
					if r.code != http.StatusOK {
						b.Fatalf("GET %s = %d: %s", p, r.code, r.body)
					}
					var page map[string]json.RawMessage
					if err := json.Unmarshal([]byte(r.body), &page); err != nil {
						b.Fatal(err)
					}
					var list []json.RawMessage
					json.Unmarshal(page[bc.list], &list)
					matched += len(list)
					token = ""
					json.Unmarshal(page["next_page_token"], &token)
					if token == "" {
						break
					}
				}
			}
			if matched == 0 {
				b.Fatal("the query matched no node")
			}
			b.ReportMetric(float64(matched), "matches")
		})
	}
}

func writeFilesTB(tb testing.TB, dir, name, content string) {
	tb.Helper()
	p := filepath.Join(dir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		tb.Fatal(err)
	}
}
