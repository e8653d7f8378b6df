package server

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/herdcm/herd/api/herdv1"
	"github.com/herdcm/herd/facts"
	"github.com/herdcm/herd/server/ca"
	"github.com/herdcm/herd/testkit"
)

// benchAgents is how many enrolled nodes, each with its own certificate
// and connection, the benchmarks spread their calls over.
const benchAgents = 32

// benchParallelism is goroutines per GOMAXPROCS: a server answers many
// agents at once (and the store batches only what waits together), but
// the in-flight bound (256) must not refuse calls.
const benchParallelism = 32

// benchNode is one enrolled node with its connection and current etag.
type benchNode struct {
	c      herdv1.NodeClient
	digest string
	etag   string
}

// benchFleet starts a real server and enrolls benchAgents nodes over real
// mutual TLS, each checked in once with its facts.
func benchFleet(b *testing.B) []benchNode {
	b.Helper()
	s := startServerTB(b)
	nodes := make([]benchNode, benchAgents)
	for i := range nodes {
		cert := enrollTB(b, s, fmt.Sprintf("n-%02d", i))
		c := herdv1.NewNodeClient(dialTB(b, s, &cert))
		fj, d := factsJSONTB(b, map[string]any{"os": map[string]any{"family": "debian"}, "i": i})
		resp, err := c.Checkin(context.Background(), &herdv1.CheckinRequest{FactsDigest: d, FactsJson: fj})
		if err != nil || resp.Status != herdv1.CheckinResponse_NEW_CATALOG {
			b.Fatalf("first check-in = %v, %v; want NEW_CATALOG", resp.GetStatus(), err)
		}
		nodes[i] = benchNode{c: c, digest: d, etag: resp.Etag}
	}
	return nodes
}

// runParallel spreads b.N calls of fn over the nodes and reports calls/s.
func runParallel(b *testing.B, nodes []benchNode, fn func(n benchNode, seq int64) error) {
	var next, seq atomic.Int64
	b.SetParallelism(benchParallelism)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		n := nodes[int(next.Add(1))%len(nodes)]
		for pb.Next() {
			if err := fn(n, seq.Add(1)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
}

// BenchmarkCheckinUnchanged: facts by digest, the current etag; the
// answer is UNCHANGED.
func BenchmarkCheckinUnchanged(b *testing.B) {
	nodes := benchFleet(b)
	ctx := context.Background()
	runParallel(b, nodes, func(n benchNode, _ int64) error {
		resp, err := n.c.Checkin(ctx, &herdv1.CheckinRequest{FactsDigest: n.digest, CatalogEtag: n.etag})
		if err != nil {
			return err
		}
		if resp.Status != herdv1.CheckinResponse_UNCHANGED {
			return fmt.Errorf("check-in = %v, want UNCHANGED", resp.Status)
		}
		return nil
	})
}

func benchReport(seq int64, events []*herdv1.Event) *herdv1.Report {
	r := &herdv1.Report{
		RunId: fmt.Sprintf("run-%016x", seq), Version: strings.Repeat("a", 40), CatalogDigest: "sha256:" + strings.Repeat("b", 64),
		StartedUnixNs: time.Now().UnixNano(), DurationNs: int64(time.Second),
		Summary: &herdv1.Summary{Resources: 200, InSync: 200},
	}
	if len(events) > 0 {
		r.Summary = &herdv1.Summary{Resources: 200, InSync: 200 - int32(len(events)), Changed: int32(len(events))}
		r.Events = events
	}
	return r
}

// reportCases are the reports the report benchmarks send: a no-change
// run (the summary only) and a run of 100 changed files.
func reportCases() []struct {
	name   string
	events []*herdv1.Event
} {
	changed := make([]*herdv1.Event, 100)
	for i := range changed {
		changed[i] = &herdv1.Event{Id: fmt.Sprintf("file:/etc/app/%d.conf", i), Type: "file", Status: "changed", DurationNs: int64(2 * time.Millisecond),
			Changes: []*herdv1.Change{{Attr: "content", From: "sha256:1111", To: "sha256:2222", Diff: "--- a\n+++ b\n@@ -1 +1 @@\n-workers = 2\n+workers = 4\n", Action: "update"}}}
	}
	return []struct {
		name   string
		events []*herdv1.Event
	}{{"NoChange", nil}, {"Events100", changed}}
}

// BenchmarkSendReport: reports answered once durable, a no-change run
// (the summary only) and a run of 100 changed files.
func BenchmarkSendReport(b *testing.B) {
	for _, bc := range reportCases() {
		b.Run(bc.name, func(b *testing.B) {
			nodes := benchFleet(b)
			ctx := context.Background()
			runParallel(b, nodes, func(n benchNode, seq int64) error {
				resp, err := n.c.SendReport(ctx, &herdv1.SendReportRequest{Report: benchReport(seq, bc.events)})
				if err != nil {
					return err
				}
				if resp.Duplicate {
					return fmt.Errorf("report %d stored as a duplicate", seq)
				}
				return nil
			})
		})
	}
}

// BenchmarkSendReports: batches of 32 reports (as an agent sends its
// spool) answered once durable; reports/s counts reports, not calls.
func BenchmarkSendReports(b *testing.B) {
	const batch = 32
	for _, bc := range reportCases() {
		b.Run(bc.name, func(b *testing.B) {
			nodes := benchFleet(b)
			ctx := context.Background()
			runParallel(b, nodes, func(n benchNode, seq int64) error {
				req := &herdv1.SendReportsRequest{Reports: make([]*herdv1.Report, batch)}
				for i := range req.Reports {
					req.Reports[i] = benchReport(seq*batch+int64(i), bc.events)
				}
				resp, err := n.c.SendReports(ctx, req)
				if err != nil {
					return err
				}
				if len(resp.AckedRunIds) != batch || len(resp.DuplicateRunIds) != 0 {
					return fmt.Errorf("batch %d: %d acknowledged, %d duplicates, refused %v", seq, len(resp.AckedRunIds), len(resp.DuplicateRunIds), resp.Refused)
				}
				return nil
			})
			b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "reports/s")
		})
	}
}

// The helpers below are startServer, enroll, dial and factsJSON of
// server_test.go for a testing.TB (those take a *testing.T).

func startServerTB(tb testing.TB) *Server {
	tb.Helper()
	site := tb.TempDir()
	for name, content := range testSite {
		p := filepath.Join(site, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	s, err := New(context.Background(), Options{Site: site, Dir: tb.TempDir(), Listen: "127.0.0.1:0", HTTPListen: "off"})
	if err != nil {
		tb.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

func enrollTB(tb testing.TB, s *Server, name string) tls.Certificate {
	tb.Helper()
	ctx := context.Background()
	secret, _, err := s.ca.NewToken(ctx, "", time.Hour, false)
	if err != nil {
		tb.Fatal(err)
	}
	keyPEM, csr, err := ca.NewKeyAndCSR(name)
	if err != nil {
		tb.Fatal(err)
	}
	resp, err := herdv1.NewEnrollClient(dialTB(tb, s, nil)).Enroll(ctx, &herdv1.EnrollRequest{Name: name, CsrDer: csr, JoinToken: secret})
	if err != nil || resp.Status != herdv1.EnrollResponse_ISSUED {
		tb.Fatalf("Enroll(%s) = %v, %v; want ISSUED", name, resp.GetStatus(), err)
	}
	cert, err := tls.X509KeyPair(ca.CertPEM(resp.CertificateDer), keyPEM)
	if err != nil {
		tb.Fatal(err)
	}
	return cert
}

func dialTB(tb testing.TB, s *Server, cert *tls.Certificate) *grpc.ClientConn {
	tb.Helper()
	conf := &tls.Config{RootCAs: s.ca.Pool(), ServerName: "localhost", MinVersion: tls.VersionTLS13}
	if cert != nil {
		conf.Certificates = []tls.Certificate{*cert}
	}
	conn, err := grpc.NewClient(s.Addr, grpc.WithTransportCredentials(credentials.NewTLS(conf)))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	return conn
}

func factsJSONTB(tb testing.TB, f map[string]any) ([]byte, string) {
	tb.Helper()
	b, err := json.Marshal(f)
	if err != nil {
		tb.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return b, "sha256:" + hex.EncodeToString(sum[:])
}

// BenchmarkRecompileFleet10k is a new site version reaching a server that
// knows 10,000 nodes (the synthetic 200-resource site of
// catalogs.BenchmarkCompileFleet10k): compile every node, diff it against
// its approved catalog, gate it, store the candidates and record the
// rollout. Gated runs the example site's policies; Ungated has none, so
// the difference is what gating adds. One op is the whole fleet; the
// compile-s, gate-s metrics split the plan's time.
func BenchmarkRecompileFleet10k(b *testing.B) {
	const nodes = 10000
	for _, gated := range []bool{false, true} {
		name := "Ungated"
		if gated {
			name = "Gated"
		}
		b.Run(name, func(b *testing.B) {
			files := testkit.SyntheticFiles(testkit.SyntheticOptions{Roles: 50, RolesPerNode: 10, PerRole: 20})
			if gated {
				rego, err := filepath.Glob("../examples/site/policies/*.rego")
				if err != nil || len(rego) == 0 {
					b.Fatalf("the example policies: %v (%d files)", err, len(rego))
				}
				for _, p := range rego {
					data, err := os.ReadFile(p)
					if err != nil {
						b.Fatal(err)
					}
					files["policies/"+filepath.Base(p)] = string(data)
				}
			}
			site := testkit.WriteSite(b, files)
			ctx := context.Background()
			s, err := New(ctx, Options{Site: site, Dir: b.TempDir(), Listen: "127.0.0.1:0", HTTPListen: "off"})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { s.Close() })
			for i := range nodes {
				f := facts.Facts(testkit.SyntheticFacts(i))
				s.facts.put(fmt.Sprintf("node-%d", i), cachedFacts{digest: fmt.Sprintf("sha256:%d", i), facts: f})
			}
			rev := 1
			next := func() {
				rev++
				if err := os.WriteFile(filepath.Join(site, "templates", "app.conf.tmpl"), []byte(testkit.SyntheticTemplate(rev)), 0o644); err != nil {
					b.Fatal(err)
				}
			}
			// The first version approves every node: they are new.
			next()
			if err := s.reload(ctx); err != nil {
				b.Fatal(err)
			}
			var compile, gate time.Duration
			for b.Loop() {
				b.StopTimer()
				next()
				b.StartTimer()
				if err := s.reload(ctx); err != nil {
					b.Fatal(err)
				}
				p := s.lastPlan.Load()
				if p == nil || p.nodes != nodes {
					b.Fatalf("the plan covered %v nodes, want %d", p, nodes)
				}
				compile += p.compile
				gate += p.gate
			}
			b.ReportMetric(compile.Seconds()/float64(b.N), "compile-s")
			b.ReportMetric(gate.Seconds()/float64(b.N), "gate-s")
		})
	}
}
