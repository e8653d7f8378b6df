package policies

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/tester"
	"github.com/open-policy-agent/opa/v1/topdown"

	"github.com/herdcm/herd/catalogs"
)

// TestTimeout bounds one policy test.
const TestTimeout = 10 * time.Second

// TestResult is the outcome of one policy test: a rule named test_* in a
// *_test.rego file.
type TestResult struct {
	Name    string // the rule, "test_world_writable_denied"
	Package string // "herd.gate_test"
	File    string // "policies/gate_test.rego"
	Line    int
	Passed  bool
	// Skipped tests are the todo_test_* rules: neither passed nor failed.
	Skipped bool
	// Error says why a test failed: "policies/gate_test.rego:12: failed:
	// count(deny) == 0", or its run-time error, and what it printed.
	Error    string
	Duration time.Duration
}

// RunTests runs the site's policy tests with OPA's tester: every test_*
// rule of the *_test.rego files (in policies/ and its sub-directories),
// compiled with the site's other policies as Prepare and PrepareAudit
// compile them (Rego v1, strict, no network built-ins). The gate and
// the audit controls read different inputs, so each is compiled apart
// with its own input schema: a test whose package is under herd.audit or
// herd.audit_test, or that imports data.herd.audit, is an audit test and
// sees the audit controls; the others see the gate. A parse or compile
// error returns an error naming file:line. Results are sorted by file and
// line.
func RunTests(ctx context.Context, files []catalogs.SourceFile) ([]TestResult, error) {
	modules, err := parseModules(files, true)
	if err != nil {
		return nil, err
	}
	gate, audit := splitAudit(modules)
	var out []TestResult
	for _, g := range []struct {
		modules map[string]*ast.Module
		schemas *ast.SchemaSet
	}{{gate, schemas}, {audit, auditSchemas}} {
		res, err := runTests(ctx, g.modules, g.schemas)
		if err != nil {
			return nil, err
		}
		out = append(out, res...)
	}
	if err := ctx.Err(); err != nil {
		return out, fmt.Errorf("running policy tests: %w", err)
	}
	slices.SortFunc(out, func(a, b TestResult) int {
		return cmp.Or(strings.Compare(a.File, b.File), cmp.Compare(a.Line, b.Line), strings.Compare(a.Name, b.Name))
	})
	return out, nil
}

// runTests runs the tests among modules, compiled against the input
// schema ss; nothing when modules hold no test.
func runTests(ctx context.Context, modules map[string]*ast.Module, ss *ast.SchemaSet) ([]TestResult, error) {
	hasTests := false
	for name := range modules {
		if isTestFile(name) {
			hasTests = true
			break
		}
	}
	if !hasTests {
		return nil, nil
	}
	c := ast.NewCompiler().
		WithDefaultRegoVersion(ast.RegoV1).
		WithCapabilities(capabilities).
		WithStrict(true).
		WithSchemas(ss).
		WithEnablePrintStatements(true)
	ch, err := tester.NewRunner().
		SetCompiler(c).
		SetDefaultRegoVersion(ast.RegoV1).
		SetModules(modules).
		// As in the gate: a built-in's error fails the test instead of
		// making its rule undefined.
		RaiseBuiltinErrors(true).
		SetTimeout(TestTimeout).
		EnableTracing(true).
		CapturePrintOutput(true).
		RunTests(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("compiling policy tests: %w", errorWithLocations(err))
	}
	var out []TestResult
	for r := range ch {
		tr := TestResult{
			Name:     r.Name,
			Package:  strings.TrimPrefix(r.Package, "data."),
			Passed:   r.Pass(),
			Skipped:  r.Skip,
			Duration: r.Duration,
		}
		if r.Location != nil {
			tr.File, tr.Line = r.Location.File, r.Location.Row
		}
		switch {
		case r.Error != nil:
			tr.Error = errorWithLocations(r.Error).Error()
		case r.Fail:
			tr.Error = failure(r)
		}
		if !tr.Passed && len(r.Output) > 0 {
			tr.Error += "\nprinted:\n" + strings.TrimRight(string(r.Output), "\n")
		}
		out = append(out, tr)
	}
	return out, nil
}

// failure names the expression of a failed test's body that failed last:
// the line an author looks at first.
func failure(r *tester.Result) string {
	loc := r.Location
	if loc == nil {
		return "failed"
	}
	last := loc.Row + strings.Count(string(loc.Text), "\n")
	var at *ast.Expr
	for _, e := range r.Trace {
		if e.Op != topdown.FailOp {
			continue
		}
		x, ok := e.Node.(*ast.Expr)
		if !ok || x.Location == nil || x.Location.File != loc.File || x.Location.Row < loc.Row || x.Location.Row > last {
			continue
		}
		at = x
	}
	if at == nil {
		return fmt.Sprintf("%s:%d: failed", loc.File, loc.Row)
	}
	text := string(at.Location.Text)
	if text == "" {
		text = at.String()
	}
	return fmt.Sprintf("%s:%d: failed: %s", at.Location.File, at.Location.Row, truncate(text, 200))
}
