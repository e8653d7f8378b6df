package policies

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// control is the source of a control in package herd.audit.<pkg>, with
// the given custom METADATA lines and violations body.
func control(pkg, custom, rules string) string {
	return fmt.Sprintf(`# METADATA
# title: control %s
# description: what %s checks
# custom:
%s
package herd.audit.%s

%s
`, pkg, pkg, custom, pkg, rules)
}

const worldWritable = `violations contains {"message": sprintf("%s is world-writable", [r.attrs.path]), "resource": r.id} if {
	some r in input.catalog.resources
	r.type == "file"
	r.attrs.mode == "0666"
}`

const failedRun = `violations contains sprintf("%s failed in the last run: %s", [e.id, e.error]) if {
	some e in input.report.events
	e.status == "failed"
}`

func mustPrepareAudit(t testing.TB, opts Options, pairs ...string) *Audit {
	t.Helper()
	a, err := PrepareAudit(context.Background(), files(pairs...), opts)
	if err != nil {
		t.Fatalf("PrepareAudit: %v", err)
	}
	return a
}

func TestPrepareAuditControls(t *testing.T) {
	t.Parallel()
	a := mustPrepareAudit(t, Options{},
		"policies/audit/files.rego", control("files", "#   id: HERD-2\n#   severity: medium\n#   reference: CIS 7.1.1\n#   remediation: chmod it", worldWritable),
		"policies/audit/runs.rego", control("runs", "#   id: HERD-1\n#   severity: critical", failedRun),
		// A helper: no METADATA, no violations.
		"policies/audit/lib.rego", "package herd.audit.lib\n\nfiles contains r if {\n\tsome r in input.catalog.resources\n\tr.type == \"file\"\n}\n",
		"policies/audit/runs_test.rego", "package herd.audit.runs_test\n\ntest_x if true\n",
		// The gate is compiled apart: its input has no report.
		"policies/gate.rego", gatePolicy,
	)
	want := []Control{
		{ID: "HERD-1", Title: "control runs", Description: "what runs checks", Severity: SeverityCritical,
			Package: "herd.audit.runs", File: "policies/audit/runs.rego", Line: 7},
		{ID: "HERD-2", Title: "control files", Description: "what files checks", Severity: SeverityMedium,
			Reference: "CIS 7.1.1", Remediation: "chmod it", Package: "herd.audit.files", File: "policies/audit/files.rego", Line: 9},
	}
	if diff := cmp.Diff(want, a.Controls()); diff != "" {
		t.Errorf("Controls() (-want +got):\n%s", diff)
	}
	if a.Empty() || a.Digest() == "" {
		t.Errorf("Empty() = %v, Digest() = %q; want controls and a digest", a.Empty(), a.Digest())
	}
	for part, want := range map[string]bool{"catalog": true, "report": true, "drift": false, "facts": false} {
		if got := a.Reads(part); got != want {
			t.Errorf("Reads(%q) = %v, want %v", part, got, want)
		}
	}
	// The gate of the same files ignores the controls, and its digest
	// does not move when they change.
	g1 := mustPrepare(t, Options{}, "policies/gate.rego", gatePolicy, "policies/audit/runs.rego", control("runs", "#   id: HERD-1\n#   severity: low", failedRun))
	g2 := mustPrepare(t, Options{}, "policies/gate.rego", gatePolicy)
	if g1.Digest() != g2.Digest() {
		t.Errorf("gate digests %s and %s differ by an audit control", g1.Digest(), g2.Digest())
	}
	if g := mustPrepare(t, Options{}, "policies/audit/runs.rego", control("runs", "#   id: HERD-1\n#   severity: low", failedRun)); !g.Empty() {
		t.Error("Prepare(only audit controls) is not an empty gate")
	}
	// The indexes are of the catalog: a caller must load it for them.
	byID := mustPrepareAudit(t, Options{}, "policies/audit/a.rego", control("a", "#   id: A\n#   severity: low", `violations contains r.id if r := input.resources["file:/x"]`))
	if !byID.Reads("catalog") || byID.Reads("report") {
		t.Errorf("an audit reading input.resources: Reads(catalog) = %v, Reads(report) = %v; want true, false", byID.Reads("catalog"), byID.Reads("report"))
	}
	empty := mustPrepareAudit(t, Options{}, "policies/gate.rego", gatePolicy)
	if !empty.Empty() || empty.Controls() != nil || empty.Digest() != "" {
		t.Errorf("PrepareAudit(no controls) = %+v, want empty", empty.Controls())
	}
	if rs, err := empty.Evaluate(context.Background(), AuditInput{Node: "x"}); rs != nil || err != nil {
		t.Errorf("empty Evaluate() = %v, %v; want nothing", rs, err)
	}
}

func TestPrepareAuditErrors(t *testing.T) {
	t.Parallel()
	ok := "#   id: OK-1\n#   severity: low"
	tests := []struct {
		name  string
		files []string
		want  []string
	}{
		{"no id", []string{"policies/audit/a.rego", control("a", "#   severity: low", worldWritable)},
			[]string{"policies/audit/a.rego:1", "custom.id is missing"}},
		{"id not a string", []string{"policies/audit/a.rego", control("a", "#   id: 12\n#   severity: low", worldWritable)},
			[]string{"policies/audit/a.rego:1", "custom.id is 12, want a string"}},
		{"bad id", []string{"policies/audit/a.rego", control("a", "#   id: a b\n#   severity: low", worldWritable)},
			[]string{"policies/audit/a.rego:1", `custom.id "a b"`}},
		{"duplicate id", []string{
			"policies/audit/a.rego", control("a", ok, worldWritable),
			"policies/audit/b.rego", control("b", ok, failedRun)},
			[]string{"policies/audit/b.rego:1", `control id "OK-1" is taken: policies/audit/a.rego:7 has it too`}},
		{"unknown severity", []string{"policies/audit/a.rego", control("a", "#   id: A\n#   severity: severe", worldWritable)},
			[]string{"policies/audit/a.rego:1", `custom.severity "severe" is not one of low, medium, high, critical`}},
		{"no severity", []string{"policies/audit/a.rego", control("a", "#   id: A", worldWritable)},
			[]string{"policies/audit/a.rego:1", "custom.severity is missing"}},
		{"misspelt custom key", []string{"policies/audit/a.rego", control("a", ok+"\n#   remedation: x", worldWritable)},
			[]string{"policies/audit/a.rego:1", "unknown custom.remedation"}},
		{"misnamed rule", []string{"policies/audit/a.rego", control("a", ok, strings.Replace(worldWritable, "violations", "violation", 1))},
			[]string{"policies/audit/a.rego:7", "package herd.audit.a has control METADATA but no violations rule (it has violation)"}},
		{"violations without METADATA", []string{"policies/audit/a.rego", "package herd.audit.a\n\n" + worldWritable},
			[]string{"policies/audit/a.rego:3", "package herd.audit.a has a violations rule but no METADATA"}},
		{"violations not a set", []string{"policies/audit/a.rego", control("a", ok, `violations := {"x"}`)},
			[]string{"policies/audit/a.rego:9", "violations must be a partial set"}},
		{"METADATA on the rule", []string{"policies/audit/a.rego", "package herd.audit.a\n\n# METADATA\n# title: t\n# custom:\n#   id: A\n#   severity: low\n" + worldWritable},
			[]string{"policies/audit/a.rego:3", "goes right above its package line"}},
		{"no title", []string{"policies/audit/a.rego", strings.Replace(control("a", ok, worldWritable), "# title: control a\n", "", 1)},
			[]string{"policies/audit/a.rego:1", "title is missing"}},
		{"misspelt input", []string{"policies/audit/a.rego", control("a", ok, strings.Replace(failedRun, "input.report", "input.reprot", 1))},
			[]string{"policies/audit/a.rego:10", "undefined ref: input.reprot"}},
		{"misspelt report field", []string{"policies/audit/a.rego", control("a", ok, "violations contains \"x\" if input.report.summary.faild > 0")},
			[]string{"policies/audit/a.rego:9", "input.report.summary.faild"}},
		{"misspelt type", []string{"policies/audit/a.rego", control("a", ok, "violations contains r.id if some r in input.by_type.fiel")},
			[]string{"policies/audit/a.rego:9", "input.by_type.fiel"}},
		{"misspelt part of a resource by type", []string{"policies/audit/a.rego", control("a", ok, "violations contains r.id if {\n\tsome r in input.by_type.file\n\tr.atrs.mode == \"0666\"\n}")},
			[]string{"policies/audit/a.rego:11", "r.atrs.mode"}},
		{"network built-in", []string{"policies/audit/a.rego", control("a", ok, `violations contains "x" if http.send({"method": "get", "url": "http://x"}).status_code == 200`)},
			[]string{"policies/audit/a.rego:9", "http.send"}},
		{"syntax", []string{"policies/audit/a.rego", control("a", ok, "violations contains x if {")},
			[]string{"policies/audit/a.rego:10"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a, err := PrepareAudit(context.Background(), files(tt.files...), Options{})
			if err == nil {
				t.Fatalf("PrepareAudit() = %+v, nil; want an error", a.Controls())
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("PrepareAudit() error = %q, want it to contain %q", err, w)
				}
			}
		})
	}
	// Every mistake at once.
	_, err := PrepareAudit(context.Background(), files(
		"policies/audit/a.rego", control("a", "#   severity: low", worldWritable),
		"policies/audit/b.rego", control("b", "#   id: B\n#   severity: huge", worldWritable)), Options{})
	if err == nil || !strings.Contains(err.Error(), "2 errors") {
		t.Errorf("PrepareAudit(two broken controls) error = %v, want both", err)
	}
}

// auditInput is testInput's node with a last run in which one resource
// failed, and one drifted file.
func auditInput() AuditInput {
	in := testInput()
	return AuditInput{
		Node:    in.Node,
		Facts:   in.Facts,
		Catalog: in.Catalog,
		Report: &RunReport{RunID: "r1", Version: "v2", Summary: RunSummary{Resources: 3, InSync: 2, Failed: 1},
			Events: []RunEvent{
				{ID: "file:/etc/motd", Type: "file", Status: "in-sync"},
				{ID: "package:nginx", Type: "package", Status: "failed", Error: "apt-get: exit status 100"},
				{ID: "service:web", Type: "service", Status: "skipped", Cause: "package:nginx failed"},
			}},
		Drift: []Drift{{ID: "file:/etc/motd", Attrs: []DriftAttr{{Name: "mode", From: "0600", To: "0666"}}}},
	}
}

func TestAuditEvaluate(t *testing.T) {
	t.Parallel()
	drifted := `violations contains {"message": sprintf("%s differs from the catalog: %s", [d.id, concat(", ", [a.name | some a in d.attrs])]), "resource": d.id} if {
	some d in input.drift
}`
	brokenBuiltin := `violations contains "never" if to_number(input.node) > 1`
	conflict := `mode := r.attrs.mode if {
	some r in input.catalog.resources
	r.attrs.mode
}

mode := "x" if input.node == "web-01"

violations contains "conflict" if mode == "y"`
	badShape := `violations contains 42 if true`
	// A helper whose built-in fails, read by a control: the error is
	// found by evaluating each control alone.
	helper := `package herd.audit.lib

number := to_number(input.node)
`
	usesHelper := `import data.herd.audit.lib

violations contains "big" if lib.number > 1`
	mk := func(pkg, rules string) []string {
		return []string{"policies/audit/" + pkg + ".rego", control(pkg, "#   id: "+pkg+"\n#   severity: high", rules)}
	}
	type want struct {
		id       string
		state    State
		evidence []Message
		errHas   string
	}
	pass := func(id string) want { return want{id: id, state: StatePass} }
	tests := []struct {
		name  string
		files [][]string
		in    func(*AuditInput)
		want  []want
	}{
		{"pass and fail", [][]string{mk("a_files", worldWritable), mk("b_runs", failedRun), mk("c_drift", drifted)}, nil, []want{
			{id: "a_files", state: StateFail, evidence: []Message{{Message: "/etc/motd is world-writable", Resource: "file:/etc/motd"}}},
			{id: "b_runs", state: StateFail, evidence: []Message{{Message: "package:nginx failed in the last run: apt-get: exit status 100"}}},
			{id: "c_drift", state: StateFail, evidence: []Message{{Message: "file:/etc/motd differs from the catalog: mode", Resource: "file:/etc/motd"}}},
		}},
		{"a compliant node", [][]string{mk("a_files", worldWritable), mk("b_runs", failedRun), mk("c_drift", drifted)}, func(in *AuditInput) {
			in.Catalog.Resources[0].Attrs["mode"] = "0644"
			in.Report.Events[1].Status = "in-sync"
			in.Drift = nil
		}, []want{pass("a_files"), pass("b_runs"), pass("c_drift")}},
		{"no report, no catalog", [][]string{mk("a_files", worldWritable), mk("b_runs", failedRun)}, func(in *AuditInput) {
			in.Report, in.Catalog = nil, nil
		}, []want{pass("a_files"), pass("b_runs")}},
		{"a built-in's error is its control's", [][]string{mk("a_files", worldWritable), mk("b_broken", brokenBuiltin), mk("c_runs", failedRun)}, nil, []want{
			{id: "a_files", state: StateFail, evidence: []Message{{Message: "/etc/motd is world-writable", Resource: "file:/etc/motd"}}},
			{id: "b_broken", state: StateError, errHas: "policies/audit/b_broken.rego:9: eval_builtin_error: to_number"},
			{id: "c_runs", state: StateFail, evidence: []Message{{Message: "package:nginx failed in the last run: apt-get: exit status 100"}}},
		}},
		{"a conflict is its control's", [][]string{mk("a_files", worldWritable), mk("b_conflict", conflict), mk("c_runs", failedRun)}, nil, []want{
			{id: "a_files", state: StateFail, evidence: []Message{{Message: "/etc/motd is world-writable", Resource: "file:/etc/motd"}}},
			{id: "b_conflict", state: StateError, errHas: "policies/audit/b_conflict.rego:"},
			{id: "c_runs", state: StateFail, evidence: []Message{{Message: "package:nginx failed in the last run: apt-get: exit status 100"}}},
		}},
		{"the indexes and the events not in sync", [][]string{mk("a_index", `violations contains sprintf("%s %s", [r.id, r.attrs.ensure]) if r := input.resources["package:nginx"]

violations contains sprintf("services: %v", [[r.id | some r in input.by_type.service]]) if true

violations contains sprintf("events: %v", [[e.id | some e in input.report.events]]) if true`)}, nil, []want{
			{id: "a_index", state: StateFail, evidence: []Message{
				{Message: "events: [\"package:nginx\", \"service:web\"]"},
				{Message: "package:nginx 1.26"},
				{Message: "services: [\"service:web\"]"},
			}},
		}},
		{"a wrongly shaped violation", [][]string{mk("a_shape", badShape), mk("b_runs", failedRun)}, nil, []want{
			{id: "a_shape", state: StateError, errHas: "policies/audit/a_shape.rego:9: violations element 42"},
			{id: "b_runs", state: StateFail, evidence: []Message{{Message: "package:nginx failed in the last run: apt-get: exit status 100"}}},
		}},
		{"a helper's built-in error", [][]string{{"policies/audit/lib.rego", helper}, mk("a_helper", usesHelper), mk("b_files", worldWritable)}, nil, []want{
			{id: "a_helper", state: StateError, errHas: "policies/audit/lib.rego:3: eval_builtin_error: to_number"},
			{id: "b_files", state: StateFail, evidence: []Message{{Message: "/etc/motd is world-writable", Resource: "file:/etc/motd"}}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var pairs []string
			for _, f := range tt.files {
				pairs = append(pairs, f...)
			}
			a := mustPrepareAudit(t, Options{}, pairs...)
			in := auditInput()
			if tt.in != nil {
				tt.in(&in)
			}
			// Twice: the second evaluation must not see the first's
			// built-in errors.
			for range 2 {
				rs, err := a.Evaluate(context.Background(), in)
				if err != nil {
					t.Fatalf("Evaluate: %v", err)
				}
				if len(rs) != len(tt.want) {
					t.Fatalf("Evaluate() = %+v, want %d results", rs, len(tt.want))
				}
				for i, w := range tt.want {
					r := rs[i]
					if r.Control != w.id || r.State != w.state || !cmp.Equal(r.Evidence, w.evidence) || !strings.Contains(r.Error, w.errHas) || (w.errHas == "") != (r.Error == "") {
						t.Errorf("result %d = %+v, want %+v", i, r, w)
					}
				}
			}
		})
	}
}

func TestAuditEvaluateTimeout(t *testing.T) {
	t.Parallel()
	loop := `violations contains "never" if {
	some i in numbers.range(1, 1000000)
	some j in numbers.range(1, 1000000)
	i + j < 0
}`
	const timeout = 200 * time.Millisecond
	a := mustPrepareAudit(t, Options{Timeout: timeout},
		"policies/audit/a.rego", control("a", "#   id: A\n#   severity: low", worldWritable),
		"policies/audit/b.rego", control("b", "#   id: B\n#   severity: low", loop),
		"policies/audit/c.rego", control("c", "#   id: C\n#   severity: low", failedRun))
	start := time.Now()
	rs, err := a.Evaluate(context.Background(), auditInput())
	took := time.Since(start)
	if err != nil {
		t.Fatalf("Evaluate: %v", err)
	}
	if len(rs) != 3 || rs[0].State != StateFail || rs[2].State != StateFail {
		t.Errorf("Evaluate() = %+v; want A and C judged despite B", rs)
	}
	if len(rs) > 1 && (rs[1].State != StateError || !strings.Contains(rs[1].Error, "policies/audit/b.rego:") || !strings.Contains(rs[1].Error, "timeout")) {
		t.Errorf("B = %+v, want an error naming its file and the timeout", rs[1])
	}
	// Generous: the bound (twice the timeout) must hold, not be exact,
	// on a loaded machine.
	if took > 2*timeout+5*time.Second {
		t.Errorf("Evaluate took %v with a timeout of %v", took, timeout)
	}
	// The caller's own cancellation is an error, not a result.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if rs, err := a.Evaluate(ctx, auditInput()); err == nil {
		t.Errorf("Evaluate(cancelled) = %+v, nil; want an error", rs)
	}
}

func TestRunTestsAudit(t *testing.T) {
	t.Parallel()
	src := files(
		"policies/gate.rego", gatePolicy,
		"policies/gate_test.rego", "package herd.gate_test\n\nimport data.herd.gate\n\ntest_gate if count(gate.deny) == 0 with input as {\"catalog\": {\"resources\": []}}\n",
		"policies/audit/runs.rego", control("runs", "#   id: R\n#   severity: low", failedRun),
		"policies/audit/checks/runs_test.rego", `package herd.audit.runs_test

import data.herd.audit.runs

test_failed if {
	runs.violations == {"x failed in the last run: boom"} with input as {"report": {"events": [{"id": "x", "status": "failed", "error": "boom"}]}}
}

test_wrong if {
	count(runs.violations) == 1 with input as {"report": {"events": []}}
}
`)
	results, err := RunTests(context.Background(), src)
	if err != nil {
		t.Fatalf("RunTests: %v", err)
	}
	var got []string
	for _, r := range results {
		got = append(got, fmt.Sprintf("%s %s:%d %v", r.Name, r.File, r.Line, r.Passed))
	}
	want := []string{
		"test_failed policies/audit/checks/runs_test.rego:5 true",
		"test_wrong policies/audit/checks/runs_test.rego:9 false",
		"test_gate policies/gate_test.rego:5 true",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("RunTests() (-want +got):\n%s", diff)
	}
	// An audit test is type-checked against the audit's input.
	_, err = RunTests(context.Background(), files(
		"policies/audit/runs.rego", control("runs", "#   id: R\n#   severity: low", failedRun),
		"policies/audit/runs_test.rego", "package herd.audit.runs_test\n\ntest_x if input.reprot == 1\n"))
	if err == nil || !strings.Contains(err.Error(), "policies/audit/runs_test.rego:3") {
		t.Errorf("RunTests(a test misspelling input.report) = %v, want an error at policies/audit/runs_test.rego:3", err)
	}
}

// TestAuditEvaluateConcurrent evaluates one audit from many goroutines,
// through the one query and the per-control fallback (a helper's
// built-in error), as the server's workers do: results agree, and -race
// finds no shared state written without a lock.
func TestAuditEvaluateConcurrent(t *testing.T) {
	t.Parallel()
	// A timeout no loaded machine reaches: what is compared is the
	// results, and TestAuditEvaluateTimeout has the timeout.
	a := mustPrepareAudit(t, Options{Timeout: time.Minute},
		"policies/audit/lib.rego", "package herd.audit.lib\n\nnumber := to_number(input.node)\n",
		"policies/audit/a.rego", control("a", "#   id: A\n#   severity: low", "import data.herd.audit.lib\n\nviolations contains \"big\" if lib.number > 1"),
		"policies/audit/b.rego", control("b", "#   id: B\n#   severity: low", worldWritable),
		"policies/audit/c.rego", control("c", "#   id: C\n#   severity: low", failedRun))
	for _, node := range []string{"web-01", "42"} {
		in := auditInput()
		in.Node = node
		want, err := a.Evaluate(context.Background(), in)
		if err != nil {
			t.Fatal(err)
		}
		errs := make(chan error, 8)
		for range 8 {
			go func() {
				for range 20 {
					got, err := a.Evaluate(context.Background(), in)
					if err != nil {
						errs <- err
						return
					}
					if diff := cmp.Diff(want, got); diff != "" {
						errs <- fmt.Errorf("node %s: concurrent Evaluate (-want +got):\n%s", node, diff)
						return
					}
				}
				errs <- nil
			}()
		}
		for range 8 {
			if err := <-errs; err != nil {
				t.Error(err)
			}
		}
	}
}
