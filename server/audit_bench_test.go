package server

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herdcm/herd/catalogs"
	"github.com/herdcm/herd/facts"
	"github.com/herdcm/herd/policies"
	"github.com/herdcm/herd/testkit"
)

// benchAuditFiles is the example site's audit controls and 44 more over
// the synthetic site's resources (as policies' benchmark controls, in the
// indexed style docs/site.md advises): 50 in all.
func benchAuditFiles(tb testing.TB) map[string]string {
	tb.Helper()
	out := map[string]string{}
	paths, err := filepath.Glob("../examples/site/policies/audit/*.rego")
	if err != nil || len(paths) == 0 {
		tb.Fatalf("the example controls: %v (%d files)", err, len(paths))
	}
	var srcs []catalogs.SourceFile
	for _, p := range paths {
		if strings.HasSuffix(p, "_test.rego") {
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			tb.Fatal(err)
		}
		out["policies/audit/"+filepath.Base(p)] = string(b)
		srcs = append(srcs, catalogs.SourceFile{Path: "policies/audit/" + filepath.Base(p), Data: b})
	}
	a, err := policies.PrepareAudit(context.Background(), srcs, policies.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	n := len(a.Controls())
	for i := range 50 - n {
		var rules string
		switch i % 4 {
		case 0:
			rules = fmt.Sprintf(`violations contains {"message": sprintf("%%s has mode %%s", [r.attrs.path, r.attrs.mode]), "resource": r.id} if {
	r := input.resources["file:/srv/r%d/f%d.conf"]
	not regex.match("^0?[0-6][0-4][0-4]$", object.get(r.attrs, "mode", "0644"))
}`, i%50, i%20)
		case 1:
			rules = fmt.Sprintf(`violations contains {"message": sprintf("package %%s is installed", [r.name]), "resource": r.id} if {
	some name in ["telnet-%d", "rsh-client-%d", "nis-%d"]
	r := input.resources[concat(":", ["package", name])]
}`, i, i, i)
		case 2:
			rules = fmt.Sprintf(`violations contains {"message": sprintf("%%s does not say workers", [r.attrs.path]), "resource": r.id} if {
	some r in input.by_type.file
	startswith(r.attrs.path, "/srv/r%d/")
	is_string(r.attrs.content)
	not contains(r.attrs.content, "workers")
}`, i%50)
		case 3:
			rules = fmt.Sprintf(`violations contains sprintf("the last run failed %%d", [input.report.summary.failed]) if {
	input.report.summary.failed > %d
}

violations contains {"message": sprintf("%%s drifted", [d.id]), "resource": d.id} if {
	some d in input.drift
	d.id == "file:/srv/r%d/f1.conf"
}`, i%3, i%50)
		}
		out[fmt.Sprintf("policies/audit/bench%d.rego", i)] = fmt.Sprintf("# METADATA\n# title: bench control %d\n# custom:\n#   id: bench-%02d\n#   severity: low\npackage herd.audit.bench%d\n\n%s\n", i, i, i, rules)
	}
	return out
}

// benchAuditServer is a server that knows nodes nodes of the synthetic
// site (200 resources each), each with its approved catalog, facts and a
// fresh report with one drifted file.
func benchAuditServer(b testing.TB, nodes int) (*Server, []string) {
	b.Helper()
	files := testkit.SyntheticFiles(testkit.SyntheticOptions{Roles: 50, RolesPerNode: 10, PerRole: 20})
	for k, v := range benchAuditFiles(b) {
		files[k] = v
	}
	site := testkit.WriteSite(b, files)
	ctx := context.Background()
	s, err := New(ctx, Options{Site: site, Dir: b.TempDir(), Listen: "127.0.0.1:0", HTTPListen: "off"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	if n := len(s.defaultSite().audit.Controls()); n != 50 {
		b.Fatalf("%d controls, want 50", n)
	}
	names := make([]string, nodes)
	now := time.Now()
	for i := range nodes {
		names[i] = fmt.Sprintf("node-%d", i)
		s.facts.put(names[i], cachedFacts{digest: fmt.Sprintf("sha256:%d", i), facts: facts.Facts(testkit.SyntheticFacts(i))})
		n := s.audits.node(names[i])
		n.loaded, n.received = true, now
		n.report = &policies.RunReport{RunID: "run-1", Summary: policies.RunSummary{Resources: 200, InSync: 199, Changed: 1},
			Events: []policies.RunEvent{{ID: "file:/srv/r1/f1.conf", Type: "file", Status: "changed"}}}
		n.drift = []policies.Drift{{ID: fmt.Sprintf("file:/srv/r%d/f1.conf", i%50), Attrs: []policies.DriftAttr{{Name: "mode", From: "0600", To: "0644"}}}}
	}
	// A new version approves every node (they are new) and queues them
	// all; the benchmark evaluates them itself.
	if err := os.WriteFile(filepath.Join(site, "templates", "app.conf.tmpl"), []byte(testkit.SyntheticTemplate(2)), 0o644); err != nil {
		b.Fatal(err)
	}
	if err := s.reload(ctx); err != nil {
		b.Fatal(err)
	}
	if got := len(s.compiles.catalogs); got != nodes {
		b.Fatalf("%d nodes approved, want %d", got, nodes)
	}
	// The first evaluation stores every result; the ones measured store
	// what changed (nothing, as after a site change that moved no
	// verdict).
	s.auditNodes(ctx, names)
	return s, names
}

// BenchmarkAuditFleet10k is a whole-fleet re-evaluation (a new site
// version): 50 controls over 10,000 nodes of 200 resources, the inputs
// built from what the server holds (approved catalogs read back and
// decoded), on GOMAXPROCS workers (target: at most 10 s on 2 cores).
// One op is the whole fleet.
func BenchmarkAuditFleet10k(b *testing.B) { benchAuditFleet(b, 10000) }

// BenchmarkAuditFleet1k is BenchmarkAuditFleet10k over 1,000 nodes, for
// a quicker profile.
func BenchmarkAuditFleet1k(b *testing.B) { benchAuditFleet(b, 1000) }

func benchAuditFleet(b *testing.B, nodes int) {
	s, names := benchAuditServer(b, nodes)
	ctx := context.Background()
	cpu0 := processCPU(b)
	for b.Loop() {
		s.auditNodes(ctx, names)
	}
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N)/float64(nodes)*1000, "ms/node")
	// The process's CPU time (every core's, the GC's included): what the
	// wall time would be on a quiet single core, a figure that other
	// work on a shared machine disturbs less than the wall time.
	b.ReportMetric((processCPU(b)-cpu0).Seconds()/float64(b.N)/float64(nodes)*1000, "cpu-ms/node")
}

// processCPU is the CPU time the process has used, user and system.
func processCPU(tb testing.TB) time.Duration {
	tb.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkAuditNodeChange is one node evaluated again after a change
// (a report, new facts): its input built, 50 controls, its results
// compared (target: at most 5 ms). Changed: the results differ each
// time, so the store write (a durable commit) is measured too; Same:
// they do not, as for most reports.
func BenchmarkAuditNodeChange(b *testing.B) {
	for _, changed := range []bool{true, false} {
		name := "Same"
		if changed {
			name = "Changed"
		}
		b.Run(name, func(b *testing.B) {
			s, names := benchAuditServer(b, 100)
			ctx := context.Background()
			i := 0
			for b.Loop() {
				node := names[i%len(names)]
				i++
				if changed {
					s.audits.mu.Lock()
					n := s.audits.nodes[node]
					n.drift = []policies.Drift{{ID: fmt.Sprintf("file:/srv/r%d/f1.conf", i%50), Attrs: []policies.DriftAttr{{Name: "mode", From: "0600", To: "0644"}}}}
					s.audits.mu.Unlock()
				}
				s.auditNodes(ctx, []string{node})
			}
		})
	}
}
