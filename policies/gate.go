package policies

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/topdown"

	"github.com/herdcm/herd/catalogs"
)

// DefaultTimeout bounds one node's gate evaluation when Options.Timeout is
// zero.
const DefaultTimeout = 500 * time.Millisecond

// Options tune a prepared gate.
type Options struct {
	// Timeout bounds one node's evaluation; zero means DefaultTimeout. A
	// gate that runs past it is an error, which the caller treats as a
	// denial.
	Timeout time.Duration
}

// gatePackage is where the gate's rules live: data.herd.gate.deny and
// data.herd.gate.warn.
var gatePackage = ast.MustParseRef("data.herd.gate")

// Gate is a site version's prepared gate: its policies compiled and its
// deny/warn query prepared once, evaluated per node. It is safe for
// concurrent use.
type Gate struct {
	timeout time.Duration
	digest  string
	query   rego.PreparedEvalQuery
	empty   bool
	// rules holds, for "deny" and "warn", the rules that define it, for
	// errors that must name a file:line the evaluator did not give.
	rules map[string][]*ast.Rule
	fleet fleetCache
	cache *resourceCache
	// uses says which parts of input the policies read: a part no rule
	// reads is not converted.
	uses inputUse
}

// Empty reports whether the site has no gate (no policies, or none in
// package herd.gate): such a gate allows every catalog without evaluating
// anything.
func (g *Gate) Empty() bool { return g == nil || g.empty }

// Digest identifies the policies (every .rego file but the policy
// tests, by path and content): gates of the same digest give every input
// the same verdict. It is "" for an empty gate.
func (g *Gate) Digest() string {
	if g.Empty() {
		return ""
	}
	return g.digest
}

// Reads reports whether some gate rule may read input.part (node, facts,
// catalog, previous, change, fleet): a caller need not build a part no
// rule reads, such as decoding every node's previous catalog for gates
// that never look at it.
func (g *Gate) Reads(part string) bool { return !g.Empty() && g.uses.reads(part, "") }

// Prepare compiles the site version's gate policies (every .rego file in
// files but the *_test.rego policy tests, as Rego v1) and prepares the
// query of data.herd.gate.deny and data.herd.gate.warn once. A parse or
// compile error (syntax, types, unsafe or unused variables, unknown
// functions) names the file and line. A package herd.gate without a deny
// or warn rule is an error too: it is most likely a misspelt rule that
// would let everything through.
func Prepare(ctx context.Context, files []catalogs.SourceFile, opts Options) (*Gate, error) {
	g := &Gate{timeout: cmp.Or(opts.Timeout, DefaultTimeout), cache: newResourceCache()}
	if g.timeout < 0 {
		return nil, fmt.Errorf("preparing policies: timeout %v is negative", opts.Timeout)
	}
	all, err := parseModules(files, false)
	if err != nil {
		return nil, err
	}
	// The audit controls (package herd.audit and below) read another
	// input and are compiled apart, by PrepareAudit.
	modules, _ := splitAudit(all)
	if len(modules) == 0 {
		g.empty = true
		return g, nil
	}
	c, err := compileModules(modules, schemas)
	if err != nil {
		return nil, err
	}
	var inGate *ast.Module
	for _, name := range slices.Sorted(maps.Keys(modules)) {
		if m := modules[name]; m.Package.Path.Equal(gatePackage) {
			inGate = m
			break
		}
	}
	if inGate == nil {
		g.empty = true
		return g, nil
	}
	g.uses = inputKeys(c.Modules)
	g.digest = policyDigest(files, modules)
	g.rules = map[string][]*ast.Rule{}
	var exprs []string
	for _, name := range []string{"deny", "warn"} {
		rules := c.GetRules(gatePackage.Append(ast.StringTerm(name)))
		slices.SortFunc(rules, func(a, b *ast.Rule) int { return compareLoc(a.Location, b.Location) })
		g.rules[name] = rules
		if len(rules) > 0 {
			exprs = append(exprs, name+" := data.herd.gate."+name)
		}
	}
	if len(exprs) == 0 {
		return nil, fmt.Errorf("%s: package herd.gate has neither a deny nor a warn rule: nothing would ever be denied", locString(inGate.Package.Location))
	}
	g.query, err = rego.New(
		rego.Compiler(c),
		rego.Query(strings.Join(exprs, "; ")),
		rego.SetRegoVersion(ast.RegoV1),
		// A built-in function's error (to_number("x"), a bad regex)
		// would otherwise make its rule undefined: a deny rule would
		// quietly not fire, and the catalog would ship.
		rego.StrictBuiltinErrors(true),
		// The result is read as OPA's own values: no conversion to Go
		// maps first.
		rego.GenerateJSON(func(t *ast.Term, _ *rego.EvalContext) (any, error) { return t, nil }),
	).PrepareForEval(ctx)
	if err != nil {
		return nil, fmt.Errorf("preparing the gate query: %w", errorWithLocations(err))
	}
	return g, nil
}

// Evaluate decides one node's catalog. It returns an error, which the
// caller must treat as a denial, when the gate fails at run time (a
// built-in's error, conflicting values of a rule, the timeout), when deny
// or warn is undefined, or when one of their elements is neither a string
// nor an object with a message. The error names the policy's file and
// line. A Fleet passed in must not change afterwards: its converted value
// is reused while the same *Fleet comes back.
func (g *Gate) Evaluate(ctx context.Context, in Input) (d Decision, err error) {
	if g.Empty() {
		return Decision{}, nil
	}
	defer func() {
		// OPA's value conversion panics on a value it cannot convert;
		// whatever the cause, a panic denies this node, not the server.
		if p := recover(); p != nil {
			d, err = Decision{}, fmt.Errorf("gating %s: the policy engine failed: %v", in.Node, p)
		}
	}()
	input, err := g.inputValue(in)
	if err != nil {
		return Decision{}, fmt.Errorf("gating %s: %w", in.Node, err)
	}
	ctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	// Cancellation through a callback on ctx instead of the goroutine
	// OPA would start per evaluation.
	c := topdown.NewCancel()
	stop := context.AfterFunc(ctx, c.Cancel)
	defer stop()
	rs, err := g.query.Eval(ctx, rego.EvalParsedInput(input), rego.EvalExternalCancel(c))
	if err != nil {
		if ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) && isCancel(err) {
			return Decision{}, fmt.Errorf("gating %s: %s: the gate ran past its timeout of %v", in.Node, cancelLocation(err, g.rules), g.timeout)
		}
		return Decision{}, fmt.Errorf("gating %s: %w", in.Node, errorWithLocations(err))
	}
	if len(rs) == 0 {
		return Decision{}, fmt.Errorf("gating %s: %s: deny or warn is undefined for this input (a complete rule whose body failed?)", in.Node, ruleLocations(append(slices.Clone(g.rules["deny"]), g.rules["warn"]...)))
	}
	if len(rs) > 1 {
		// The query binds two rule values; one result is all it can give.
		return Decision{}, fmt.Errorf("gating %s: the gate query gave %d results, want 1", in.Node, len(rs))
	}
	for _, out := range []struct {
		name string
		dst  *[]Message
	}{{"deny", &d.Deny}, {"warn", &d.Warn}} {
		v, ok := rs[0].Bindings[out.name]
		if !ok {
			continue
		}
		t, ok := v.(*ast.Term)
		if !ok {
			return Decision{}, fmt.Errorf("gating %s: %s came back as %T, not an OPA term", in.Node, out.name, v)
		}
		msgs, err := messages(out.name, t, g.rules[out.name])
		if err != nil {
			return Decision{}, fmt.Errorf("gating %s: %w", in.Node, err)
		}
		*out.dst = msgs
	}
	return d, nil
}

// messages reads a deny or warn value: a set (or array) of strings or of
// objects with "message" (or "msg") and an optional "resource".
func messages(name string, v *ast.Term, rules []*ast.Rule) ([]Message, error) {
	var elems []*ast.Term
	switch x := v.Value.(type) {
	case ast.Set:
		elems = x.Slice()
	case *ast.Array:
		for i := range x.Len() {
			elems = append(elems, x.Elem(i))
		}
	default:
		return nil, fmt.Errorf("%s: %s is %s, want a set of messages (write `%s contains msg if { ... }`)", ruleLocations(rules), name, ast.ValueName(v.Value), name)
	}
	if len(elems) == 0 {
		return nil, nil
	}
	out := make([]Message, 0, len(elems))
	for _, e := range elems {
		m, ok := message(e.Value)
		if !ok {
			return nil, fmt.Errorf("%s: %s element %s is neither a string nor an object with a string \"message\" and an optional string \"resource\"", ruleLocations(suspects(rules)), name, truncate(e.String(), 200))
		}
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b Message) int {
		return cmp.Or(strings.Compare(a.Message, b.Message), strings.Compare(a.Resource, b.Resource))
	})
	out = slices.Compact(out)
	return out, nil
}

func message(v ast.Value) (Message, bool) {
	switch x := v.(type) {
	case ast.String:
		return Message{Message: string(x)}, true
	case ast.Object:
		var m Message
		found := false
		ok := true
		x.Foreach(func(k, val *ast.Term) {
			key, isStr := k.Value.(ast.String)
			if !isStr {
				return // other keys are the author's own
			}
			switch key {
			case "message", "msg":
				s, isStr := val.Value.(ast.String)
				if !isStr || found {
					ok = false // not a string, or both message and msg
					return
				}
				m.Message, found = string(s), true
			case "resource":
				s, isStr := val.Value.(ast.String)
				if !isStr {
					ok = false
					return
				}
				m.Resource = string(s)
			}
		})
		return m, ok && found
	}
	return Message{}, false
}

// suspects narrows the rules that may have produced a wrongly shaped
// element to those whose head is not a plain string or message object.
func suspects(rules []*ast.Rule) []*ast.Rule {
	var out []*ast.Rule
	for _, r := range rules {
		t := r.Head.Key
		if t == nil {
			t = r.Head.Value
		}
		if t != nil {
			if _, ok := t.Value.(ast.String); ok {
				continue
			}
		}
		out = append(out, r)
	}
	if len(out) == 0 {
		return rules
	}
	return out
}

// inputUse records which parts of input rules read: the top-level keys,
// and under each the second-level keys (input.change.changed), nil when
// that part is read whole or by a computed key.
type inputUse struct {
	all  bool // input read whole (x := input, input[k], with input as …)
	keys map[string]map[string]bool
}

// reads reports whether input.top (and, when sub is not empty,
// input.top.sub) may be read.
func (u inputUse) reads(top, sub string) bool {
	if u.all {
		return true
	}
	subs, ok := u.keys[top]
	if !ok {
		return false
	}
	return subs == nil || sub == "" || subs[sub]
}

// inputKeys finds which parts of input the compiled modules read.
func inputKeys(modules map[string]*ast.Module) inputUse {
	u := inputUse{keys: map[string]map[string]bool{}}
	var visit func(x any)
	visit = func(x any) {
		ast.WalkTerms(x, func(t *ast.Term) bool {
			switch v := t.Value.(type) {
			case ast.Ref:
				if !v[0].Equal(ast.InputRootDocument) {
					return false
				}
				top, ok := refKey(v, 1)
				if !ok {
					u.all = true
					return true
				}
				subs, seen := u.keys[top]
				switch sub, ok := refKey(v, 2); {
				case !ok:
					u.keys[top] = nil // read whole
				case !seen:
					u.keys[top] = map[string]bool{sub: true}
				case subs != nil:
					subs[sub] = true
				}
				for _, e := range v[1:] {
					visit(e)
				}
				return true
			case ast.Var:
				if v.Equal(ast.InputRootDocument.Value) {
					u.all = true
				}
			}
			return false
		})
	}
	for _, m := range modules {
		visit(m)
	}
	return u
}

// refKey is the i-th part of ref when it is a plain string.
func refKey(ref ast.Ref, i int) (string, bool) {
	if len(ref) <= i {
		return "", false
	}
	s, ok := ref[i].Value.(ast.String)
	return string(s), ok
}

// parseModules parses the .rego files of files: the policy tests only
// when tests is set, the others always.
func parseModules(files []catalogs.SourceFile, tests bool) (map[string]*ast.Module, error) {
	modules := map[string]*ast.Module{}
	var errs ast.Errors
	for _, f := range files {
		if path.Ext(f.Path) != ".rego" || (!tests && isTestFile(f.Path)) {
			continue
		}
		m, err := ast.ParseModuleWithOpts(f.Path, string(f.Data), ast.ParserOptions{
			RegoVersion:  ast.RegoV1,
			Capabilities: capabilities,
			// METADATA blocks are read: an audit control's id, title
			// and severity are its package's annotations.
			ProcessAnnotation: true,
		})
		if err != nil {
			var aerrs ast.Errors
			var aerr *ast.Error
			switch {
			case errors.As(err, &aerrs):
				errs = append(errs, aerrs...)
				continue
			case errors.As(err, &aerr):
				errs = append(errs, aerr)
				continue
			}
			return nil, fmt.Errorf("parsing %s: %w", f.Path, err)
		}
		modules[f.Path] = m
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("parsing policies: %w", sortedErrors(errs))
	}
	return modules, nil
}

// policyDigest digests the files of modules (parsed from files, keyed
// by path), by path and content.
func policyDigest(files []catalogs.SourceFile, modules map[string]*ast.Module) string {
	h := sha256.New()
	for _, f := range slices.SortedFunc(slices.Values(files), func(a, b catalogs.SourceFile) int { return strings.Compare(a.Path, b.Path) }) {
		if _, ok := modules[f.Path]; !ok {
			continue
		}
		fmt.Fprintf(h, "%s\x00%d\x00", f.Path, len(f.Data))
		h.Write(f.Data)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

func isTestFile(p string) bool { return strings.HasSuffix(path.Base(p), "_test.rego") }

// compileModules compiles the site's modules in strict mode (unused
// variables and imports are errors) with the built-ins a gate may use,
// type-checked against the input schema ss (schemas for the gate,
// auditSchemas for the audit controls).
func compileModules(modules map[string]*ast.Module, ss *ast.SchemaSet) (*ast.Compiler, error) {
	c := ast.NewCompiler().
		WithDefaultRegoVersion(ast.RegoV1).
		WithCapabilities(capabilities).
		WithStrict(true).
		WithSchemas(ss).
		WithEnablePrintStatements(false)
	c.Compile(modules)
	if c.Failed() {
		return nil, fmt.Errorf("compiling policies: %w", sortedErrors(c.Errors))
	}
	return c, nil
}

// capabilities are OPA's built-ins less those that reach the network: a
// gate is a function of its input, the same in `herd check` as on the
// server, and must not stall a rollout on a remote host.
var capabilities = func() *ast.Capabilities {
	c := ast.CapabilitiesForThisVersion(ast.CapabilitiesRegoVersion(ast.RegoV1))
	c.Builtins = slices.DeleteFunc(c.Builtins, func(b *ast.Builtin) bool {
		switch b.Name {
		case "http.send", "net.lookup_ip_addr", "opa.runtime":
			return true
		}
		return false
	})
	c.AllowNet = []string{}
	return c
}()

// policyErrors lists policy errors one per line, each starting with its
// file:line.
type policyErrors []string

func (e policyErrors) Error() string {
	if len(e) == 1 {
		return e[0]
	}
	return fmt.Sprintf("%d errors:\n  %s", len(e), strings.Join(e, "\n  "))
}

const maxErrors = 20

func sortedErrors(errs ast.Errors) error {
	errs = slices.Clone(errs)
	slices.SortStableFunc(errs, func(a, b *ast.Error) int { return compareLoc(a.Location, b.Location) })
	var out policyErrors
	for i, e := range errs {
		if i == maxErrors {
			out = append(out, fmt.Sprintf("and %d more", len(errs)-maxErrors))
			break
		}
		out = append(out, locString(e.Location)+": "+e.Code+": "+e.Message)
	}
	return out
}

// errorWithLocations renders the errors OPA returns (ast.Errors,
// topdown.Error, rego.Errors) with their file:line first.
func errorWithLocations(err error) error {
	var aerrs ast.Errors
	if errors.As(err, &aerrs) {
		return sortedErrors(aerrs)
	}
	var terr *topdown.Error
	if errors.As(err, &terr) {
		return fmt.Errorf("%s: %s: %s", locString(terr.Location), terr.Code, terr.Message)
	}
	return err
}

func isCancel(err error) bool {
	var terr *topdown.Error
	return errors.As(err, &terr) && terr.Code == topdown.CancelErr
}

// cancelLocation is where a cancelled evaluation stopped, or else the
// gate's rules.
func cancelLocation(err error, rules map[string][]*ast.Rule) string {
	var terr *topdown.Error
	if errors.As(err, &terr) && terr.Location != nil {
		return locString(terr.Location)
	}
	return ruleLocations(append(slices.Clone(rules["deny"]), rules["warn"]...))
}

func locString(l *ast.Location) string {
	if l == nil {
		return "policies"
	}
	if l.File == "" {
		return fmt.Sprintf("%d:%d", l.Row, l.Col)
	}
	return fmt.Sprintf("%s:%d", l.File, l.Row)
}

func ruleLocations(rules []*ast.Rule) string {
	var locs []string
	for _, r := range rules {
		if s := locString(r.Location); !slices.Contains(locs, s) {
			locs = append(locs, s)
		}
	}
	if len(locs) == 0 {
		return "policies"
	}
	return strings.Join(locs, ", ")
}

func compareLoc(a, b *ast.Location) int {
	if a == nil || b == nil {
		switch {
		case a == nil && b == nil:
			return 0
		case a == nil:
			return 1
		}
		return -1
	}
	return cmp.Or(strings.Compare(a.File, b.File), cmp.Compare(a.Row, b.Row), cmp.Compare(a.Col, b.Col))
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
