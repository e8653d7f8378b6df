package policies

import (
	"context"
	"fmt"
	"maps"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/herdcm/herd/catalogs"
)

// benchControls is the example site's controls and 44 more in the same
// style, 50 in all: a CIS benchmark's kind of items (a file's mode and
// owner, packages that must be absent, a setting in managed files, a
// fact and drift). With indexed, they read one resource by id
// (input.resources) and scan one type (input.by_type), as docs/site.md
// advises; otherwise each scans the whole catalog.
func benchControls(tb testing.TB, indexed bool) []catalogs.SourceFile {
	tb.Helper()
	out := exampleFiles(tb)
	for i := range 44 {
		var rules string
		switch i % 4 {
		case 0:
			find := fmt.Sprintf(`some r in input.catalog.resources
	r.type == "file"
	r.attrs.path == "/etc/app%d/conf-%d.conf"`, i%7, 6*i)
			if indexed {
				find = fmt.Sprintf(`r := input.resources["file:/etc/app%d/conf-%d.conf"]`, i%7, 6*i)
			}
			rules = fmt.Sprintf(`violations contains {"message": sprintf("%%s has mode %%s: want 0644 or stricter", [r.attrs.path, r.attrs.mode]), "resource": r.id} if {
	%s
	not regex.match("^0?[0-6][0-4][0-4]$", r.attrs.mode)
}

violations contains {"message": sprintf("%%s is owned by %%s: want root", [r.attrs.path, r.attrs.owner]), "resource": r.id} if {
	%s
	r.attrs.owner != "root"
}`, find, find)
		case 1:
			find := fmt.Sprintf(`some r in input.catalog.resources
	r.type == "package"
	r.name in {"telnet-%d", "rsh-client-%d", "nis-%d"}`, i, i, i)
			if indexed {
				find = fmt.Sprintf(`some name in ["telnet-%d", "rsh-client-%d", "nis-%d"]
	r := input.resources[concat(":", ["package", name])]`, i, i, i)
			}
			rules = fmt.Sprintf(`violations contains {"message": sprintf("package %%s is installed: remove it", [r.name]), "resource": r.id} if {
	%s
	object.get(r.attrs, "ensure", "installed") != "absent"
}`, find)
		case 2:
			find := `some r in input.catalog.resources
	r.type == "file"`
			if indexed {
				find = `some r in input.by_type.file`
			}
			rules = fmt.Sprintf(`violations contains {"message": sprintf("%%s does not set workers = 8", [r.attrs.path]), "resource": r.id} if {
	%s
	startswith(r.attrs.path, "/etc/app%d/")
	is_string(r.attrs.content)
	not contains(r.attrs.content, "workers = 8")
}`, find, i%7)
		case 3:
			rules = fmt.Sprintf(`violations contains sprintf("kernel %%s is older than 5.%d", [input.facts.kernel.release]) if {
	semver.is_valid(input.facts.kernel.version)
	semver.compare(input.facts.kernel.version, "5.%d.0") < 0
}

violations contains {"message": sprintf("%%s drifted", [d.id]), "resource": d.id} if {
	some d in input.drift
	d.id == "file:/etc/app%d/conf-%d.conf"
}`, i, i, i%7, 6*i)
		}
		src := fmt.Sprintf("# METADATA\n# title: bench control %d\n# custom:\n#   id: bench-%02d\n#   severity: low\npackage herd.audit.bench%d\n\n%s\n", i, i, i, rules)
		out = append(out, catalogs.SourceFile{Path: fmt.Sprintf("policies/audit/bench%d.rego", i), Data: []byte(src)})
	}
	return out
}

// benchAuditInput is a node of n resources (realisticInput's), with a
// last run that changed one resource and a file that drifted since.
func benchAuditInput(tb testing.TB, n int) AuditInput {
	tb.Helper()
	gin := realisticInput(tb, n)
	rep := &RunReport{RunID: "run-1", Version: gin.Catalog.Version, Summary: RunSummary{Resources: n, InSync: n - 1, Changed: 1}}
	for _, r := range gin.Catalog.Resources {
		status := "in-sync"
		if r.ID == "package:pkg-2" {
			status = "changed"
		}
		rep.Events = append(rep.Events, RunEvent{ID: r.ID, Type: r.Type, Status: status})
	}
	return AuditInput{Node: gin.Node, Facts: gin.Facts, Catalog: gin.Catalog, Report: rep,
		Drift: []Drift{{ID: gin.Catalog.Resources[0].ID, Attrs: []DriftAttr{{Name: "mode", From: "0600", To: "0644"}}}}}
}

func TestBenchControls(t *testing.T) {
	t.Parallel()
	in := benchAuditInput(t, 200)
	// The catalog's first file gets a loose mode: bench-00 reads it.
	in.Catalog.Resources[0].Attrs = maps.Clone(in.Catalog.Resources[0].Attrs)
	in.Catalog.Resources[0].Attrs["mode"] = "0666"
	var want []Result
	for _, indexed := range []bool{false, true} {
		a, err := PrepareAudit(context.Background(), benchControls(t, indexed), Options{})
		if err != nil {
			t.Fatal(err)
		}
		if n := len(a.Controls()); n != 50 {
			t.Fatalf("%d controls, want 50", n)
		}
		rs, err := a.Evaluate(context.Background(), in)
		if err != nil {
			t.Fatal(err)
		}
		states := map[State]int{}
		for _, r := range rs {
			states[r.State]++
			if r.State == StateError {
				t.Errorf("%s: %s", r.Control, r.Error)
			}
		}
		if states[StateFail] == 0 || states[StatePass] == 0 {
			t.Errorf("indexed=%v: states %v: want passes and failures", indexed, states)
		}
		// Both styles judge alike.
		if want == nil {
			want = rs
		} else if diff := cmp.Diff(want, rs); diff != "" {
			t.Errorf("indexed controls judge otherwise than scanning ones (-scan +indexed):\n%s", diff)
		}
	}
	if want[0].Control != "bench-00" || want[0].State != StateFail {
		t.Errorf("bench-00 = %+v, want it failing on the loose mode", want[0])
	}
}

// BenchmarkAuditEvaluate is one node's audit: 50 controls over a node of
// 200 resources with its last run and drift (target: at most 2 ms of CPU
// per node, so that 10,000 nodes take at most 10 s on 2 cores). indexed:
// the controls read resources by id and type; scan: each scans the
// catalog. warm: the audit has seen the node's resources on other nodes
// (a role's nodes share most); cold: every resource is new.
func BenchmarkAuditEvaluate(b *testing.B) {
	in := benchAuditInput(b, 200)
	for _, style := range []string{"indexed", "scan"} {
		a, err := PrepareAudit(context.Background(), benchControls(b, style == "indexed"), Options{})
		if err != nil {
			b.Fatal(err)
		}
		for _, variant := range []string{"warm", "cold"} {
			b.Run(style+"/"+variant, func(b *testing.B) {
				b.ReportAllocs()
				ctx := context.Background()
				for b.Loop() {
					if variant == "cold" {
						a.cache = newResourceCache()
					}
					if _, err := a.Evaluate(ctx, in); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
		// bytes: the catalog as the server holds it, its canonical
		// encoding (AuditInput.CatalogJSON), of nodes of one role (other
		// names, the same resources), the span cache warm.
		b.Run(style+"/bytes", func(b *testing.B) {
			b.ReportAllocs()
			ctx := context.Background()
			nodes := make([]AuditInput, 16)
			for i := range nodes {
				c := *in.Catalog
				c.Node = fmt.Sprintf("web-%03d", i)
				enc, err := c.Encode()
				if err != nil {
					b.Fatal(err)
				}
				nodes[i] = in
				nodes[i].Node, nodes[i].Catalog, nodes[i].CatalogJSON = c.Node, nil, enc
			}
			i := 0
			for b.Loop() {
				if _, err := a.Evaluate(ctx, nodes[i%len(nodes)]); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
		// parallel: nodes audited on every core at once, as the server
		// would re-audit a fleet; ns/op is then per node of the fleet
		// (10,000 nodes in 10 s is 1 ms/op on 2 cores).
		b.Run(style+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := a.Evaluate(context.Background(), in); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
