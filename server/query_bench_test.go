package server

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/herdcm/herd/api/herdv1"
	"github.com/herdcm/herd/facts"
	"github.com/herdcm/herd/testkit"
)

// BenchmarkListNodesWhere10k is an operator's fleet query over 10,000
// nodes through the real Admin service (gRPC over TLS on 127.0.0.1):
// every page of ListNodes with a where expression, following the tokens.
// One op is the whole query. Facts is the facts filter
// (1,607 matches), Status one over status fields only, Rollout one that
// reads where the newest rollout has each node.
func BenchmarkListNodesWhere10k(b *testing.B) {
	const nodes = 10000
	s := startServerTB(b)
	ctx := context.Background()
	for i := range nodes {
		name := fmt.Sprintf("node-%05d", i)
		if err := s.st.Checkin(ctx, name, time.Now(), "v", time.Now()); err != nil {
			b.Fatal(err)
		}
		// Through JSON, as a check-in brings them: numbers are float64.
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
	ac := herdv1.NewAdminClient(dialTB(b, s, &adm))
	for _, bc := range []struct{ name, where string }{
		{"Facts", `os.family == "debian" && memory.total_bytes < 4e9`},
		{"Status", `status == "unreported" && name endsWith "7"`},
		{"Rollout", `rollout_state == "" && processors.count > 6`},
	} {
		b.Run(bc.name, func(b *testing.B) {
			matched := 0
			for b.Loop() {
				matched = 0
				for token := ""; ; {
					resp, err := ac.ListNodes(ctx, &herdv1.ListNodesRequest{Where: bc.where, PageSize: 1000, PageToken: token})
					if err != nil {
						b.Fatal(err)
					}
					matched += len(resp.Nodes)
					if token = resp.NextPageToken; token == "" {
						break
					}
				}
			}
			if matched == 0 {
				b.Fatalf("where %q matched no node", bc.where)
			}
			b.ReportMetric(float64(matched), "matches")
		})
	}
}
