package catalogs_test

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"

	"golang.org/x/sync/errgroup"

	"github.com/herdcm/herd/catalogs"
	"github.com/herdcm/herd/facts"
	"github.com/herdcm/herd/testkit"
)

// BenchmarkCompileNode200 compiles one node of about 200 resources from a
// site parsed once: the per-node cost the server pays on every recompile.
func BenchmarkCompileNode200(b *testing.B) {
	dir := testkit.SyntheticSite(b, testkit.SyntheticOptions{Roles: 50, RolesPerNode: 10, PerRole: 20})
	s, err := catalogs.Load(context.Background(), dir, catalogs.LoadOptions{Version: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	f := facts.Facts(testkit.SyntheticFacts(1))
	cat, err := s.Compile("node-1", f)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Compile("node-1", f); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(cat.Resources)), "resources")
}

// BenchmarkEncodeDigest200 encodes and digests that node's catalog.
func BenchmarkEncodeDigest200(b *testing.B) {
	dir := testkit.SyntheticSite(b, testkit.SyntheticOptions{Roles: 50, RolesPerNode: 10, PerRole: 20})
	s, err := catalogs.Load(context.Background(), dir, catalogs.LoadOptions{Version: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	cat, err := s.Compile("node-1", facts.Facts(testkit.SyntheticFacts(1)))
	if err != nil {
		b.Fatal(err)
	}
	enc, _ := cat.Encode()
	b.SetBytes(int64(len(enc)))
	b.ReportAllocs()
	for b.Loop() {
		enc, err := cat.Encode()
		if err != nil {
			b.Fatal(err)
		}
		_ = catalogs.Digest(enc)
	}
}

// BenchmarkLoadSite parses the 50-role synthetic site: the once-per-version
// cost.
func BenchmarkLoadSite(b *testing.B) {
	dir := testkit.SyntheticSite(b, testkit.SyntheticOptions{Roles: 50, RolesPerNode: 10, PerRole: 20})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := catalogs.Load(context.Background(), dir, catalogs.LoadOptions{Version: "bench"}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCompileFleet10k compiles, encodes and digests 10,000 nodes with
// varied facts from one site version, on every core: what a site change
// costs the server. One op is the whole fleet.
func BenchmarkCompileFleet10k(b *testing.B) {
	const nodes = 10000
	dir := testkit.SyntheticSite(b, testkit.SyntheticOptions{Roles: 50, RolesPerNode: 10, PerRole: 20})
	s, err := catalogs.Load(context.Background(), dir, catalogs.LoadOptions{Version: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	fs := make([]facts.Facts, nodes)
	for i := range fs {
		fs[i] = facts.Facts(testkit.SyntheticFacts(i))
	}
	var resources atomic.Int64
	b.ReportAllocs()
	for b.Loop() {
		resources.Store(0)
		var next atomic.Int64
		var g errgroup.Group
		for range runtime.GOMAXPROCS(0) {
			g.Go(func() error {
				for {
					i := int(next.Add(1)) - 1
					if i >= nodes {
						return nil
					}
					cat, err := s.Compile(fmt.Sprintf("node-%d", i), fs[i])
					if err != nil {
						return err
					}
					enc, err := cat.Encode()
					if err != nil {
						return err
					}
					_ = catalogs.Digest(enc)
					resources.Add(int64(len(cat.Resources)))
				}
			})
		}
		if err := g.Wait(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(resources.Load())/nodes, "resources/node")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/nodes, "ns/node")
}
