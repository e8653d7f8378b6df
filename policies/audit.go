package policies

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/topdown"

	"github.com/herdcm/herd/catalogs"
)

// A control is one package at or under herd.audit, by convention one
// file in the site's policies/audit/:
//
//	# METADATA
//	# title: sshd refuses root logins
//	# description: A managed sshd_config must say PermitRootLogin no.
//	# custom:
//	#   id: CIS-5.1.20
//	#   severity: high
//	#   reference: CIS Debian Linux 12 Benchmark v1.1.0, 5.1.20
//	#   remediation: Set PermitRootLogin no in the role that manages sshd_config.
//	package herd.audit.sshd_root_login
//
//	violations contains {"message": msg, "resource": r.id} if { ... }
//
// The package's METADATA gives the control: title and custom.id and
// custom.severity are required, description, custom.reference and
// custom.remediation optional, no other custom key is known. The
// control's rule is a partial set named violations whose elements are
// strings or objects {"message": string, "resource": string (optional)}.
// No violation passes; any violation fails with them as the evidence.
// Packages under herd.audit without METADATA and without violations are
// helpers the controls may import.

// auditPackage is where controls live: data.herd.audit and below.
var auditPackage = ast.MustParseRef("data.herd.audit")

// auditTestPackage is where OPA's convention puts the tests of
// herd.audit: data.herd.audit_test and below.
var auditTestPackage = ast.MustParseRef("data.herd.audit_test")

// violationsRule is the one rule of a control.
const violationsRule = "violations"

// controlID is what an id may hold: it is a command-line argument
// (herd audit --control ID), a CSV cell and a URL path element.
var controlID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// Severity says how much a failing control matters.
type Severity string

// The severities, from the least to the most serious.
const (
	SeverityLow      Severity = "low"
	SeverityMedium   Severity = "medium"
	SeverityHigh     Severity = "high"
	SeverityCritical Severity = "critical"
)

// Rank orders severities: 1 for low to 4 for critical, 0 for any other
// value. Sort controls by it, most serious first, in reports.
func (s Severity) Rank() int {
	return slices.Index([]Severity{SeverityLow, SeverityMedium, SeverityHigh, SeverityCritical}, s) + 1
}

// Control is one compliance control of a site version, as its METADATA
// describes it.
type Control struct {
	ID          string   `json:"id"`
	Title       string   `json:"title"`
	Description string   `json:"description,omitempty"`
	Severity    Severity `json:"severity"`
	// Reference names what the control implements, e.g. a CIS item.
	Reference string `json:"reference,omitempty"`
	// Remediation says how to make a failing node pass.
	Remediation string `json:"remediation,omitempty"`
	// Package is the control's Rego package, "herd.audit.sshd_root_login".
	Package string `json:"package"`
	// File and Line are where the control's package line is.
	File string `json:"file"`
	Line int    `json:"line"`
}

// State is a control's compliance on one node.
type State string

// The states. Evaluate gives pass, fail or error; StateNoData is the
// caller's: the server says it of a node that has not reported recently
// enough to judge, instead of evaluating the controls over stale data.
const (
	StatePass   State = "pass"
	StateFail   State = "fail"
	StateError  State = "error"
	StateNoData State = "no-data"
)

// Result is one control's verdict on one node.
type Result struct {
	// Control is the control's id.
	Control string `json:"control"`
	State   State  `json:"state"`
	// Evidence holds, when the state is fail, the control's violations:
	// what is wrong and where, sorted, each with the resource it is about
	// when the control named one.
	Evidence []Message `json:"evidence,omitempty"`
	// Error says, when the state is error, why the control could not be
	// evaluated, starting with the policy's file:line.
	Error string `json:"error,omitempty"`
}

// Audit is a site version's prepared compliance controls, evaluated per
// node. It is safe for concurrent use.
type Audit struct {
	timeout  time.Duration
	digest   string
	controls []Control // sorted by id
	// rules holds each control's violations rules, in the order of
	// controls, for errors that must name a file:line.
	rules [][]*ast.Rule
	// vars are the query's variables, one per control, in that order;
	// refs the refs of their violations.
	vars []ast.Var
	refs []ast.Ref
	// query evaluates every control at once with built-in errors
	// collected rather than fatal, so that a control whose built-in
	// fails is that control's error, not every control's.
	query rego.PreparedEvalQuery
	// byFile is the control each control's file belongs to. A built-in
	// error located in one, when no other control reads its package
	// (shared), is that control's error; any other error of the one
	// query makes Evaluate fall back to one strict query per control.
	byFile map[string]int
	shared []bool
	single []aloneQuery
	c      *ast.Compiler
	cache  *resourceCache
	spans  *spanCache
	uses   inputUse
}

// aloneQuery is one control's own query, prepared when first needed.
type aloneQuery struct {
	once  sync.Once
	query rego.PreparedEvalQuery
	err   error
}

// PrepareAudit compiles the site version's audit controls (the non-test
// .rego files of files whose package is herd.audit or below it, as Rego
// v1, strict, without the network built-ins, type-checked against the
// audit input's schema) once, and prepares one query of every control's
// violations. Parse and compile errors, and every mistake of a control
// (no id, a duplicate id, an unknown severity, control METADATA without
// a violations rule or a violations rule without METADATA), are errors
// naming file:line, all of them at once. A site without controls gives
// an empty Audit.
func PrepareAudit(ctx context.Context, files []catalogs.SourceFile, opts Options) (*Audit, error) {
	a := &Audit{timeout: cmp.Or(opts.Timeout, DefaultTimeout), cache: newResourceCache(), spans: newSpanCache()}
	if a.timeout < 0 {
		return nil, fmt.Errorf("preparing audit controls: timeout %v is negative", opts.Timeout)
	}
	all, err := parseModules(files, false)
	if err != nil {
		return nil, err
	}
	_, modules := splitAudit(all)
	if len(modules) == 0 {
		return a, nil
	}
	c, err := compileModules(modules, auditSchemas)
	if err != nil {
		return nil, err
	}
	if err := a.findControls(c); err != nil {
		return nil, err
	}
	if len(a.controls) == 0 {
		return a, nil
	}
	a.c = c
	a.digest = policyDigest(files, modules)
	a.uses = inputKeys(c.Modules)
	a.single = make([]aloneQuery, len(a.controls))
	a.vars = make([]ast.Var, len(a.controls))
	body := make(ast.Body, len(a.controls))
	for i := range a.controls {
		a.vars[i] = ast.Var(fmt.Sprintf("c%d", i))
		body[i] = ast.Equality.Expr(ast.VarTerm(string(a.vars[i])), ast.RefTerm(a.refs[i]...))
	}
	a.query, err = rego.New(
		rego.Compiler(c),
		rego.ParsedQuery(body),
		rego.SetRegoVersion(ast.RegoV1),
		rego.GenerateJSON(func(t *ast.Term, _ *rego.EvalContext) (any, error) { return t, nil }),
	).PrepareForEval(ctx)
	if err != nil {
		return nil, fmt.Errorf("preparing the audit query: %w", errorWithLocations(err))
	}
	return a, nil
}

// splitAudit parts modules into the gate's and the audit's: a module is
// the audit's when its package is herd.audit or below; a policy test also
// when its package is under herd.audit_test or it imports data.herd.audit.
func splitAudit(modules map[string]*ast.Module) (gate, audit map[string]*ast.Module) {
	gate, audit = map[string]*ast.Module{}, map[string]*ast.Module{}
	for name, m := range modules {
		if isAuditModule(name, m) {
			audit[name] = m
		} else {
			gate[name] = m
		}
	}
	return gate, audit
}

func isAuditModule(name string, m *ast.Module) bool {
	if m.Package.Path.HasPrefix(auditPackage) {
		return true
	}
	if !isTestFile(name) {
		return false
	}
	if m.Package.Path.HasPrefix(auditTestPackage) {
		return true
	}
	for _, imp := range m.Imports {
		if ref, ok := imp.Path.Value.(ast.Ref); ok && ref.HasPrefix(auditPackage) {
			return true
		}
	}
	return false
}

// findControls reads the controls of the compiled modules: each package
// with control METADATA or a violations rule. It checks them all and
// returns every mistake at once.
func (a *Audit) findControls(c *ast.Compiler) error {
	var errs ast.Errors
	bad := func(loc *ast.Location, format string, args ...any) {
		errs = append(errs, ast.NewError(ast.CompileErr, loc, format, args...))
	}
	as := c.GetAnnotationSet()
	type pkg struct {
		path    ast.Ref
		first   *ast.Package // the first file's package line
		files   []string
		rules   []*ast.Rule // violations rules
		badRule bool        // a violations rule of the wrong kind
		others  []string    // names of the other rules, for a misnamed one
		meta    *ast.Annotations
	}
	pkgs := map[string]*pkg{}
	for _, name := range slices.Sorted(maps.Keys(c.Modules)) {
		m := c.Modules[name]
		key := m.Package.Path.String()
		p := pkgs[key]
		if p == nil {
			p = &pkg{path: m.Package.Path, first: m.Package}
			pkgs[key] = p
		}
		p.files = append(p.files, name)
		if meta := as.GetPackageScope(m.Package); meta != nil {
			p.meta = meta
		}
		for _, ann := range m.Annotations {
			if _, ok := ann.Custom["id"]; ok && ann.Scope != "package" {
				bad(ann.Location, "a control's METADATA goes right above its package line (scope package), not in scope %s", ann.Scope)
			}
		}
		for _, r := range m.Rules {
			ref := r.Head.Ref()
			if len(ref) == 0 || !ref[0].Equal(ast.VarTerm(violationsRule)) {
				if len(ref) > 0 {
					if v, ok := ref[0].Value.(ast.Var); ok && !slices.Contains(p.others, string(v)) {
						p.others = append(p.others, string(v))
					}
				}
				continue
			}
			if len(ref) != 1 || r.Head.RuleKind() != ast.MultiValue {
				bad(r.Location, "%s: violations must be a partial set: write `violations contains msg if { ... }`", strings.TrimPrefix(p.path.String(), "data."))
				p.badRule = true
				continue
			}
			p.rules = append(p.rules, r)
		}
	}
	byID := map[string]*Control{}
	for _, key := range slices.Sorted(maps.Keys(pkgs)) {
		p := pkgs[key]
		name := strings.TrimPrefix(key, "data.")
		hasCustom := p.meta != nil && len(p.meta.Custom) > 0
		switch {
		case p.badRule:
			continue // said already
		case p.meta == nil && len(p.rules) == 0:
			continue // a helper
		case p.meta != nil && !hasCustom && len(p.rules) == 0:
			continue // a documented helper
		case len(p.rules) == 0:
			others := "it has no rules"
			if len(p.others) > 0 {
				others = "it has " + strings.Join(p.others, ", ")
			}
			bad(p.first.Location, "package %s has control METADATA but no violations rule (%s): a control's rule is `violations contains msg if { ... }`", name, others)
			continue
		case p.meta == nil:
			bad(p.rules[0].Location, "package %s has a violations rule but no METADATA above its package line: a control needs a title and custom id and severity", name)
			continue
		}
		ctl, ok := readControl(p.meta, name, bad)
		if !ok {
			continue
		}
		// The package line of the file that holds the METADATA.
		loc := p.first.Location
		for _, f := range p.files {
			if c.Modules[f].Package.Location != nil && p.meta.Location != nil && c.Modules[f].Package.Location.File == p.meta.Location.File {
				loc = c.Modules[f].Package.Location
			}
		}
		ctl.File, ctl.Line = loc.File, loc.Row
		if prev, dup := byID[ctl.ID]; dup {
			bad(p.meta.Location, "control id %q is taken: %s:%d has it too", ctl.ID, prev.File, prev.Line)
			continue
		}
		byID[ctl.ID] = &ctl
		slices.SortFunc(p.rules, func(a, b *ast.Rule) int { return compareLoc(a.Location, b.Location) })
		a.controls = append(a.controls, ctl)
		a.rules = append(a.rules, p.rules)
		a.refs = append(a.refs, p.path.Copy().Append(ast.StringTerm(violationsRule)))
	}
	if len(errs) > 0 {
		return fmt.Errorf("audit controls: %w", sortedErrors(errs))
	}
	// Sorted by id, the rules in step.
	order := make([]int, len(a.controls))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(i, j int) int { return strings.Compare(a.controls[i].ID, a.controls[j].ID) })
	controls, rules, refs := make([]Control, len(order)), make([][]*ast.Rule, len(order)), make([]ast.Ref, len(order))
	for k, i := range order {
		controls[k], rules[k], refs[k] = a.controls[i], a.rules[i], a.refs[i]
	}
	a.controls, a.rules, a.refs = controls, rules, refs
	a.byFile = map[string]int{}
	for i, ref := range a.refs {
		for _, f := range pkgs[ref[:len(ref)-1].String()].files {
			a.byFile[f] = i
		}
	}
	a.shared = sharedControls(c, a.byFile, a.refs)
	return nil
}

// sharedControls finds the controls whose package another module reads
// (a control importing another's rules, or a helper that does): a
// built-in error in such a control's file may belong to its reader too.
// refs are the controls' violations refs.
func sharedControls(c *ast.Compiler, byFile map[string]int, refs []ast.Ref) []bool {
	shared := make([]bool, len(refs))
	for name, m := range c.Modules {
		own, isControl := byFile[name]
		ast.WalkRefs(m, func(ref ast.Ref) bool {
			if !ref.HasPrefix(auditPackage) {
				return false
			}
			for i, v := range refs {
				if isControl && i == own {
					continue
				}
				pkg := v[:len(v)-1]
				// data.herd.audit.x.y reads x; data.herd.audit[k]
				// (a computed key) may read any.
				if ref.HasPrefix(pkg) || pkg.HasPrefix(ref.GroundPrefix()) {
					shared[i] = true
				}
			}
			return false
		})
	}
	return shared
}

// readControl reads a control's package METADATA.
func readControl(meta *ast.Annotations, pkg string, bad func(*ast.Location, string, ...any)) (Control, bool) {
	ctl := Control{Package: pkg, Title: strings.TrimSpace(meta.Title), Description: strings.TrimSpace(meta.Description)}
	ok := true
	str := func(key string, required bool) string {
		v, present := meta.Custom[key]
		if !present {
			if required {
				bad(meta.Location, "control %s: custom.%s is missing", pkg, key)
				ok = false
			}
			return ""
		}
		s, isStr := v.(string)
		if !isStr {
			bad(meta.Location, "control %s: custom.%s is %v, want a string (quote it)", pkg, key, v)
			ok = false
			return ""
		}
		return strings.TrimSpace(s)
	}
	ctl.ID = str("id", true)
	if ctl.ID != "" && !controlID.MatchString(ctl.ID) {
		bad(meta.Location, "control %s: custom.id %q: want letters, digits, '.', '_' or '-', at most 64, starting with a letter or digit", pkg, ctl.ID)
		ok = false
	}
	if v, present := meta.Custom["id"]; present && ctl.ID == "" {
		if _, isStr := v.(string); isStr {
			bad(meta.Location, "control %s: custom.id is empty", pkg)
			ok = false
		}
	}
	ctl.Severity = Severity(str("severity", true))
	if ctl.Severity != "" && ctl.Severity.Rank() == 0 {
		bad(meta.Location, "control %s: custom.severity %q is not one of low, medium, high, critical", pkg, ctl.Severity)
		ok = false
	}
	ctl.Reference = str("reference", false)
	ctl.Remediation = str("remediation", false)
	for _, key := range slices.Sorted(maps.Keys(meta.Custom)) {
		switch key {
		case "id", "severity", "reference", "remediation":
		default:
			bad(meta.Location, "control %s: unknown custom.%s (known: id, severity, reference, remediation)", pkg, key)
			ok = false
		}
	}
	if ctl.Title == "" {
		bad(meta.Location, "control %s: title is missing", pkg)
		ok = false
	}
	return ctl, ok
}

// Empty reports whether the site has no audit controls.
func (a *Audit) Empty() bool { return a == nil || len(a.controls) == 0 }

// Controls returns the controls, sorted by id.
func (a *Audit) Controls() []Control {
	if a.Empty() {
		return nil
	}
	return slices.Clone(a.controls)
}

// Digest identifies the controls (the audit's .rego files but the policy
// tests, by path and content): audits of the same digest give every input
// the same results, so a caller need not evaluate a node again whose
// input did not change either. It is "" for an empty audit.
func (a *Audit) Digest() string {
	if a.Empty() {
		return ""
	}
	return a.digest
}

// Reads reports whether some control may read input.part (node, facts,
// catalog, report, drift): a caller need not load what no control reads,
// nor evaluate a node again when only such a part changed. The catalog
// is read when input.resources or input.by_type is.
func (a *Audit) Reads(part string) bool {
	if a.Empty() {
		return false
	}
	if part == "catalog" {
		return a.uses.reads("catalog", "") || a.uses.reads("resources", "") || a.uses.reads("by_type", "")
	}
	return a.uses.reads(part, "")
}

// Evaluate judges one node against every control: one Result per control,
// in the order of Controls. A control that cannot be evaluated (a
// built-in's error, conflicting values, a wrongly shaped violation, the
// timeout) is a Result in state error naming its file:line; the other
// controls are judged all the same. The whole evaluation is bounded by
// the timeout, twice at most when a control fails. Evaluate returns an
// error only when the input cannot be converted or ctx ends.
func (a *Audit) Evaluate(ctx context.Context, in AuditInput) (results []Result, err error) {
	if a.Empty() {
		return nil, nil
	}
	defer func() {
		// OPA's value conversion panics on a value it cannot convert;
		// whatever the cause, a panic fails this node, not the server.
		if p := recover(); p != nil {
			results, err = nil, fmt.Errorf("auditing %s: the policy engine failed: %v", in.Node, p)
		}
	}()
	input, err := a.inputValue(in)
	if err != nil {
		return nil, fmt.Errorf("auditing %s: %w", in.Node, err)
	}
	results = make([]Result, len(a.controls))
	for i, ctl := range a.controls {
		results[i].Control = ctl.ID
	}
	var berrs []topdown.Error
	rs, err := a.eval(ctx, a.query, input, rego.EvalBuiltinErrorList(&berrs))
	if ctx.Err() != nil {
		return nil, fmt.Errorf("auditing %s: %w", in.Node, ctx.Err())
	}
	// redo lists the controls to evaluate alone, strictly: every one
	// when the query failed or a built-in failed where it cannot be
	// pinned on one control.
	var redo []int
	switch {
	case err != nil && isCancel(err):
		// The evaluation stopped where it was stuck: that control ran
		// past the timeout; the others are judged alone.
		culprit := a.controlAt(cancelAt(err))
		for i := range a.controls {
			if i == culprit {
				results[i] = a.timedOut(i)
				continue
			}
			redo = append(redo, i)
		}
	case err != nil:
		redo = a.all()
	case len(rs) != 1:
		redo = a.all()
	default:
		pinned := map[int][]string{}
		for _, be := range berrs {
			i := a.controlAt(be.Location)
			if i < 0 || a.shared[i] {
				redo = a.all()
				break
			}
			if msg := errorWithLocations(&be).Error(); !slices.Contains(pinned[i], msg) {
				pinned[i] = append(pinned[i], msg)
			}
		}
		if redo != nil {
			break
		}
		for i := range a.controls {
			if msgs, ok := pinned[i]; ok {
				results[i].State, results[i].Error = StateError, strings.Join(msgs, "; ")
				continue
			}
			results[i] = a.result(i, rs[0].Bindings[string(a.vars[i])])
		}
	}
	if len(redo) > 0 {
		if err := a.evaluateAlone(ctx, input, redo, results); err != nil {
			return nil, fmt.Errorf("auditing %s: %w", in.Node, err)
		}
	}
	return results, nil
}

// evaluateAlone evaluates the controls redo one at a time, each with its
// own strict query, within one more timeout shared by them all: each gets
// at least timeout/len(redo).
func (a *Audit) evaluateAlone(ctx context.Context, input ast.Value, redo []int, results []Result) error {
	deadline := time.Now().Add(a.timeout)
	for k, i := range redo {
		q, err := a.aloneQuery(ctx, i)
		if err != nil {
			results[i] = Result{Control: a.controls[i].ID, State: StateError, Error: err.Error()}
			continue
		}
		if !time.Now().Before(deadline) {
			for _, j := range redo[k:] {
				results[j] = Result{Control: a.controls[j].ID, State: StateError,
					Error: fmt.Sprintf("%s: not evaluated: the node's audit ran past its timeout of %v", a.location(j), a.timeout)}
			}
			return nil
		}
		// A fair share of what is left, so that one control that hangs
		// does not starve those after it; what a control leaves unused
		// goes to the next.
		share := time.Until(deadline) / time.Duration(len(redo)-k)
		rs, err := a.evalUntil(ctx, time.Now().Add(share), q, input)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		switch {
		case err != nil && isCancel(err):
			results[i] = a.timedOut(i)
		case err != nil:
			results[i] = Result{Control: a.controls[i].ID, State: StateError, Error: errorWithLocations(err).Error()}
		case len(rs) != 1:
			results[i] = Result{Control: a.controls[i].ID, State: StateError,
				Error: fmt.Sprintf("%s: violations is undefined for this input", a.location(i))}
		default:
			results[i] = a.result(i, rs[0].Bindings["v"])
		}
	}
	return nil
}

// eval runs q on input within the timeout.
func (a *Audit) eval(ctx context.Context, q rego.PreparedEvalQuery, input ast.Value, opts ...rego.EvalOption) (rego.ResultSet, error) {
	return a.evalUntil(ctx, time.Now().Add(a.timeout), q, input, opts...)
}

// evalUntil runs q on input until deadline. Cancellation goes through a
// callback on the context instead of the goroutine OPA would start per
// evaluation.
func (a *Audit) evalUntil(ctx context.Context, deadline time.Time, q rego.PreparedEvalQuery, input ast.Value, opts ...rego.EvalOption) (rego.ResultSet, error) {
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	c := topdown.NewCancel()
	stop := context.AfterFunc(ctx, c.Cancel)
	defer stop()
	return q.Eval(ctx, append([]rego.EvalOption{rego.EvalParsedInput(input), rego.EvalExternalCancel(c)}, opts...)...)
}

// aloneQuery is control i's own query: its violations alone, a built-in's
// error fatal, as in the gate.
func (a *Audit) aloneQuery(ctx context.Context, i int) (rego.PreparedEvalQuery, error) {
	s := &a.single[i]
	s.once.Do(func() {
		body := ast.NewBody(ast.Equality.Expr(ast.VarTerm("v"), ast.RefTerm(a.refs[i]...)))
		s.query, s.err = rego.New(
			rego.Compiler(a.c),
			rego.ParsedQuery(body),
			rego.SetRegoVersion(ast.RegoV1),
			rego.StrictBuiltinErrors(true),
			rego.GenerateJSON(func(t *ast.Term, _ *rego.EvalContext) (any, error) { return t, nil }),
		).PrepareForEval(context.WithoutCancel(ctx))
		if s.err != nil {
			s.err = fmt.Errorf("%s: preparing the control's query: %w", a.location(i), errorWithLocations(s.err))
		}
	})
	return s.query, s.err
}

// result reads control i's violations, bound to v.
func (a *Audit) result(i int, v any) Result {
	r := Result{Control: a.controls[i].ID}
	t, ok := v.(*ast.Term)
	if !ok {
		r.State, r.Error = StateError, fmt.Sprintf("%s: violations came back as %T, not an OPA term", a.location(i), v)
		return r
	}
	msgs, err := messages(violationsRule, t, a.rules[i])
	if err != nil {
		r.State, r.Error = StateError, err.Error()
		return r
	}
	if len(msgs) == 0 {
		r.State = StatePass
		return r
	}
	r.State, r.Evidence = StateFail, msgs
	return r
}

func (a *Audit) timedOut(i int) Result {
	return Result{Control: a.controls[i].ID, State: StateError,
		Error: fmt.Sprintf("%s: the control ran past the audit's timeout of %v", a.location(i), a.timeout)}
}

// location is control i's violations rules, file:line each.
func (a *Audit) location(i int) string { return ruleLocations(a.rules[i]) }

// controlAt is the control whose file holds loc, or -1.
func (a *Audit) controlAt(loc *ast.Location) int {
	if loc == nil {
		return -1
	}
	if i, ok := a.byFile[loc.File]; ok {
		return i
	}
	return -1
}

// all is every control's index.
func (a *Audit) all() []int {
	out := make([]int, len(a.controls))
	for i := range out {
		out[i] = i
	}
	return out
}

// cancelAt is where a cancelled evaluation stopped, or nil.
func cancelAt(err error) *ast.Location {
	var terr *topdown.Error
	if errors.As(err, &terr) {
		return terr.Location
	}
	return nil
}
