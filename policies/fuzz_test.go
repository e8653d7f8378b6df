package policies

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/herdcm/herd/catalogs"
	"github.com/herdcm/herd/facts"
)

// FuzzPrepare feeds arbitrary module source to Prepare: it must return an
// error or a gate, never panic, and a gate it returns must evaluate (or
// fail) without panicking either.
func FuzzPrepare(f *testing.F) {
	for _, seed := range []string{
		gatePolicy,
		loopPolicy,
		"package herd.gate\ndeny contains {\"msg\": \"x\", \"resource\": 1} if true",
		"package herd.gate\nwarn := [1, \"a\"]",
		"package herd.gate\ndeny contains x if {",
		"package herd.audit\nok if true",
		"package herd.gate\nimport rego.v1\ndeny[msg] { msg := \"v0\" }",
		"package herd.gate\ndeny contains input.node if input.facts.os.family == \"debian\"",
		"package herd.gate\ndeny contains sprintf(\"%v\", [input]) if true",
		"",
		"# only a comment",
		"package herd.gate\ndeny contains to_number(\"x\") if true",
	} {
		f.Add(seed)
	}
	in := testInput()
	f.Fuzz(func(t *testing.T, src string) {
		g, err := Prepare(context.Background(), []catalogs.SourceFile{{Path: "policies/fuzz.rego", Data: []byte(src)}}, Options{Timeout: 50 * time.Millisecond})
		if err != nil {
			if g != nil {
				t.Fatalf("Prepare returned a gate and an error: %v", err)
			}
			return
		}
		if g == nil {
			t.Fatal("Prepare returned neither a gate nor an error")
		}
		d, err := g.Evaluate(context.Background(), in)
		if err == nil {
			for _, m := range append(d.Deny, d.Warn...) {
				_ = m.String()
			}
		}
	})
}

// evaluateFuzzGate reads facts and attributes of every kind, besides the
// example site's gates.
const evaluateFuzzGate = `package herd.gate
deny contains sprintf("%v", [input.facts.os]) if input.facts.os.family == "bad"
warn contains sprintf("%s %v", [r.id, r.attrs]) if {
	some r in input.catalog.resources
	count(r.attrs) > 3
}
warn contains k if {
	some k, v in input.facts
	is_number(v)
	v > 1000
}
`

// FuzzEvaluate feeds arbitrary JSON facts and resource attributes into a
// fixed gate: Evaluate must decide or fail, never panic.
func FuzzEvaluate(f *testing.F) {
	f.Add(`{"os": {"family": "debian"}}`, `{"path": "/etc/motd", "mode": "0666"}`)
	f.Add(`{"os": {"family": "bad", "n": [1, 2.5, null, true]}}`, `{"path": "/etc/ssh/sshd_config", "content": "PermitRootLogin yes\n"}`)
	f.Add(`{"big": 1e308, "neg": -1e-308, "s": "\u0000"}`, `{"user": "root", "name": "x", "a": {"b": [{}]}, "n": 12345678901234567890}`)
	f.Add(`{}`, `{"mode": 7}`)
	f.Add(`{"os": null}`, `{"path": 3, "mode": ["0777"]}`)
	var pairs []string
	for _, name := range []string{"files", "services", "sshd", "rollout"} {
		pairs = append(pairs, "policies/"+name+".rego", readExample(f, name+".rego"))
	}
	g := mustPrepare(f, Options{Timeout: time.Second}, append(pairs, "policies/fuzz.rego", evaluateFuzzGate)...)
	f.Fuzz(func(t *testing.T, factsJSON, attrsJSON string) {
		var attrs map[string]any
		if json.Unmarshal([]byte(attrsJSON), &attrs) != nil {
			return
		}
		fs, err := facts.FromJSON([]byte(factsJSON))
		if err != nil {
			return
		}
		in := testInput()
		in.Facts = fs
		for _, typ := range []string{"file", "service", "package"} {
			in.Catalog.Resources = append(in.Catalog.Resources, catalogs.Resource{ID: typ + ":fuzz", Type: typ, Name: "fuzz", Attrs: attrs})
		}
		in.Change.Changed = append(in.Change.Changed, catalogs.ResourceChange{ID: "package:fuzz", Type: "package", Name: "fuzz",
			Attrs: []catalogs.AttrChange{{Name: "ensure", From: attrs["ensure"], To: attrs}}})
		_, _ = g.Evaluate(context.Background(), in)
	})
}

func readExample(tb testing.TB, name string) string {
	tb.Helper()
	for _, f := range exampleFiles(tb) {
		if f.Path == "policies/"+name {
			return string(f.Data)
		}
	}
	tb.Fatalf("the example site has no policies/%s", name)
	return ""
}

func exampleFiles(tb testing.TB) []catalogs.SourceFile {
	tb.Helper()
	s, err := catalogs.Load(context.Background(), exampleSite, catalogs.LoadOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	return s.PolicyFiles()
}

// FuzzPrepareAudit feeds arbitrary control source to PrepareAudit: it
// must return an error or an audit, never panic, and an audit it returns
// must evaluate a node (each control passing, failing or in error)
// without panicking either.
func FuzzPrepareAudit(f *testing.F) {
	ok := "# METADATA\n# title: t\n# custom:\n#   id: c-1\n#   severity: low\npackage herd.audit.c\n\n"
	for _, seed := range []string{
		ok + worldWritable,
		ok + failedRun,
		ok + `violations contains {"message": "x", "resource": 1} if true`,
		ok + `violations contains 42 if true`,
		ok + `violations contains "x" if to_number(input.node) > 1`,
		ok + `violations contains "x" if input.reprot.events`,
		ok + `violation contains "x" if true`,
		ok + `violations := {"x"}`,
		ok + `violations contains "x" if {`,
		ok + `violations contains sprintf("%v", [input]) if true`,
		ok + "violations contains d.id if {\n\tsome d in input.drift\n\tr := input.resources[d.id]\n\tr.type == \"file\"\n}",
		"# METADATA\n# title: t\n# custom:\n#   id: [1, 2]\n#   severity: low\npackage herd.audit.c\n\nviolations contains \"x\" if true",
		"# METADATA\n# title: t\n# custom:\n#   severity: extreme\npackage herd.audit.c\n\nviolations contains \"x\" if true",
		"# METADATA\n# custom: 7\npackage herd.audit.c\n",
		"# METADATA\n# title: [unclosed\npackage herd.audit.c\n",
		"package herd.audit.c\n\nviolations contains \"x\" if true",
		"package herd.audit.lib\n\nx := 1",
		"package herd.audit\nok if true",
		"",
	} {
		f.Add(seed)
	}
	in := auditInput()
	f.Fuzz(func(t *testing.T, src string) {
		a, err := PrepareAudit(context.Background(), []catalogs.SourceFile{
			{Path: "policies/audit/fuzz.rego", Data: []byte(src)},
			// A second control, so that a broken fuzzed one is seen
			// not to spoil it.
			{Path: "policies/audit/other.rego", Data: []byte("# METADATA\n# title: o\n# custom:\n#   id: other\n#   severity: high\npackage herd.audit.other\n\n" + failedRun)},
		}, Options{Timeout: 50 * time.Millisecond})
		if err != nil {
			if a != nil {
				t.Fatalf("PrepareAudit returned an audit and an error: %v", err)
			}
			return
		}
		rs, err := a.Evaluate(context.Background(), in)
		if err != nil {
			t.Fatalf("Evaluate: %v", err)
		}
		if len(rs) != len(a.Controls()) {
			t.Fatalf("Evaluate gave %d results for %d controls", len(rs), len(a.Controls()))
		}
		for i, r := range rs {
			if r.Control != a.Controls()[i].ID {
				t.Errorf("result %d is for %q, want %q", i, r.Control, a.Controls()[i].ID)
			}
			switch r.State {
			case StatePass, StateFail, StateError:
			default:
				t.Errorf("result %+v: state %q", r, r.State)
			}
			if r.Control == "other" && r.State != StateFail {
				t.Errorf("the intact control = %+v, want it failing on the failed package", r)
			}
		}
	})
}
