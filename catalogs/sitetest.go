package catalogs

import (
	"errors"
	"fmt"
	"path"
	"reflect"
	"slices"
	"strings"

	"github.com/pelletier/go-toml/v2"

	"github.com/herdcm/herd/facts"
)

// SiteTest is one [[test]] of a tests/*.toml file: a node with facts, and
// what its catalog must (or must not) contain. Site tests let ops check a
// change before it ships, in the site's own CI, with `herd check`.
type SiteTest struct {
	Name   string
	Node   string
	Facts  facts.Facts
	Pos    Pos
	Error  string // when set, compile must fail with a message containing it
	Expect []Expectation
	// Deny, when set, expects the policy gates to deny the node's catalog
	// with messages containing each of these texts. A test without it
	// expects the catalog to be allowed.
	Deny []string
}

// Expectation is one [[test.expect]].
type Expectation struct {
	Pos      Pos
	Resource string            // "type:name"
	Absent   bool              // the resource must not be in the catalog
	Attrs    map[string]any    // attributes that must have exactly these values
	Contains map[string]string // string attributes that must contain these texts
}

func (l *loader) loadTests() {
	for _, rel := range l.filesUnder("tests", ".toml") {
		doc := l.parse(rel)
		if doc == nil {
			continue
		}
		r := reader{doc: doc, diags: &l.diags}
		r.known("", "test")
		for i := range r.tables("test") {
			p := fmt.Sprintf("test[%d]", i)
			r.known(p, "name", "node", "facts", "error", "expect", "deny")
			t := SiteTest{Pos: doc.posOf(p), Facts: facts.Facts{}}
			t.Node, _ = r.str(p + ".node")
			if t.Node == "" {
				r.bad(p, "test: missing node = \"…\"")
			} else if err := ValidNodeName(t.Node); err != nil {
				r.bad(p+".node", "%v", err)
			}
			t.Name, _ = r.str(p + ".name")
			if t.Name == "" {
				t.Name = t.Node
			}
			t.Error, _ = r.str(p + ".error")
			if deny, ok := r.strs(p + ".deny"); ok {
				if len(deny) == 0 {
					deny = []string{""} // deny = []: denied, whatever the message
				}
				t.Deny = deny
				if t.Error != "" {
					r.bad(p+".deny", "deny: a test that expects compile to fail (error = …) has no catalog to deny")
				}
			}
			if v, ok := r.get(p + ".facts"); ok {
				switch fv := v.(type) {
				case string:
					t.Facts = l.factsFile(path.Join(path.Dir(rel), fv), doc.posOf(p+".facts"))
				case map[string]any:
					t.Facts = facts.Facts(fv)
				default:
					r.bad(p+".facts", "facts: want a table of facts or the name of a JSON or TOML file beside the test, got %s", typeName(v))
				}
			}
			for j := range r.tables(p + ".expect") {
				ep := fmt.Sprintf("%s.expect[%d]", p, j)
				r.known(ep, "resource", "absent", "attrs", "contains")
				e := Expectation{Pos: doc.posOf(ep)}
				e.Resource, _ = r.str(ep + ".resource")
				if err := checkRef(e.Resource); err != nil {
					r.bad(ep+".resource", "%v", err)
				}
				e.Absent, _ = r.bool(ep + ".absent")
				if r.table(ep + ".attrs") {
					v, _ := r.get(ep + ".attrs")
					e.Attrs = v.(map[string]any)
				}
				if r.table(ep + ".contains") {
					v, _ := r.get(ep + ".contains")
					e.Contains = map[string]string{}
					for k, s := range v.(map[string]any) {
						str, ok := s.(string)
						if !ok {
							r.bad(ep+".contains."+k, "contains.%s: want a string, got %s", k, typeName(s))
						}
						e.Contains[k] = str
					}
				}
				if e.Absent && (e.Attrs != nil || e.Contains != nil) {
					r.bad(ep+".absent", "absent = true cannot also expect attrs or contains")
				}
				t.Expect = append(t.Expect, e)
			}
			l.site.Tests = append(l.site.Tests, t)
		}
	}
}

// factsFile reads a JSON or TOML facts file of the site.
func (l *loader) factsFile(rel string, pos Pos) facts.Facts {
	b, ok := l.contents[rel]
	if !ok {
		l.diags.add(pos, "facts file %s does not exist", rel)
		return facts.Facts{}
	}
	if strings.HasSuffix(rel, ".toml") {
		var m map[string]any
		if err := toml.Unmarshal(b, &m); err != nil {
			l.diags.add(Pos{File: rel}, "reading facts: %v", err)
			return facts.Facts{}
		}
		return facts.Facts(m)
	}
	f, err := facts.FromJSON(b)
	if err != nil {
		l.diags.add(Pos{File: rel}, "reading facts: %v", err)
		return facts.Facts{}
	}
	return f
}

// TestResult is the outcome of one site test.
type TestResult struct {
	Test    *SiteTest
	Catalog *Catalog // nil when compile failed
	// Denied holds the gate's deny messages for the catalog (nil when it
	// was allowed or no gate ran).
	Denied   []string
	Failures []Diagnostic
}

// Passed reports whether the test met every expectation.
func (r TestResult) Passed() bool { return len(r.Failures) == 0 }

// RunTests compiles the node of every site test, checks its expectations,
// and asks gate (the site's policy gates; nil when none are loaded) about
// its catalog: a test with deny = [...] must be denied with those
// messages, any other test must be allowed. With a nil gate a test that
// expects a denial fails, saying no gate is loaded.
func (s *Site) RunTests(gate TestGate) []TestResult {
	return s.RunTestsProgress(gate, nil)
}

// RunTestsProgress is RunTests telling progress (when not nil) how many
// of the site's tests have run after each one, for herd check's terminal.
func (s *Site) RunTestsProgress(gate TestGate, progress func(done, total int)) []TestResult {
	out := make([]TestResult, 0, len(s.Tests))
	for i := range s.Tests {
		out = append(out, s.runTest(&s.Tests[i], gate))
		if progress != nil {
			progress(i+1, len(s.Tests))
		}
	}
	return out
}

func (s *Site) runTest(t *SiteTest, gate TestGate) TestResult {
	res := TestResult{Test: t}
	fail := func(pos Pos, format string, args ...any) {
		res.Failures = append(res.Failures, Diagnostic{Pos: pos, Msg: fmt.Sprintf(format, args...)})
	}
	// Tests run where the server's secrets key is not (CI, herd check):
	// a sensitive value is a placeholder.
	cat, err := s.CompileWith(t.Node, t.Facts, CompileOptions{Placeholders: true})
	if t.Error != "" {
		switch {
		case err == nil:
			fail(t.Pos, "test %q: compile of %s succeeded, want an error containing %q", t.Name, t.Node, t.Error)
		case !strings.Contains(err.Error(), t.Error):
			fail(t.Pos, "test %q: compile of %s failed with %q, want an error containing %q", t.Name, t.Node, err, t.Error)
		}
		return res
	}
	if err != nil {
		// Each of the compile's diagnostics is a failure of its own, at
		// its own file:line, so that whoever prints them can prefix
		// every position (herd check prefixes the site directory)
		// rather than one position with the rest buried in a message.
		var ds Diagnostics
		if !errors.As(err, &ds) {
			fail(t.Pos, "test %q: compile of %s failed:\n%v", t.Name, t.Node, err)
			return res
		}
		fail(t.Pos, "test %q: compile of %s failed:", t.Name, t.Node)
		ds = ds.Sorted()
		if len(ds) > MaxDiagnostics {
			rest := len(ds) - MaxDiagnostics
			ds = append(ds[:MaxDiagnostics:MaxDiagnostics], Diagnostic{Pos: t.Pos, Msg: fmt.Sprintf("and %d more", rest)})
		}
		res.Failures = append(res.Failures, ds...)
		return res
	}
	res.Catalog = cat
	s.checkGate(t, cat, gate, &res, fail)
	for _, e := range t.Expect {
		r, present := cat.Resource(e.Resource)
		if e.Absent {
			if present {
				fail(e.Pos, "test %q: %s is in the catalog (declared at %s), want it absent", t.Name, e.Resource, r.Source)
			}
			continue
		}
		if !present {
			fail(e.Pos, "test %q: %s is not in the catalog of %s", t.Name, e.Resource, t.Node)
			continue
		}
		for _, k := range sortedAttrKeys(e.Attrs) {
			want := expectedValue(r.Type, k, e.Attrs[k])
			got, ok := r.Attrs[k]
			if !ok {
				fail(e.Pos, "test %q: %s has no %s, want %v", t.Name, e.Resource, k, want)
			} else if !reflect.DeepEqual(got, want) {
				fail(e.Pos, "test %q: %s %s = %v, want %v", t.Name, e.Resource, k, got, want)
			}
		}
		for _, k := range sortedAttrKeys(e.Contains) {
			got := r.String(k)
			if !strings.Contains(got, e.Contains[k]) {
				fail(e.Pos, "test %q: %s %s does not contain %q (it is %q)", t.Name, e.Resource, k, e.Contains[k], shorten(got, 200))
			}
		}
	}
	return res
}

// checkGate asks gate about the test node's catalog and checks the answer
// against the test's deny expectation.
func (s *Site) checkGate(t *SiteTest, cat *Catalog, gate TestGate, res *TestResult, fail func(Pos, string, ...any)) {
	if gate == nil {
		if len(t.Deny) > 0 {
			fail(t.Pos, "test %q: expects the catalog of %s to be denied, but no policy gate is loaded (no policies/*.rego with package herd.gate)", t.Name, t.Node)
		}
		return
	}
	denied, err := gate(t.Node, map[string]any(t.Facts), cat)
	if err != nil {
		// The server denies on a gate error; a test must not pass on one.
		fail(t.Pos, "test %q: gating the catalog of %s: %v", t.Name, t.Node, err)
		return
	}
	res.Denied = denied
	if len(t.Deny) == 0 {
		if len(denied) > 0 {
			fail(t.Pos, "test %q: the policy gates deny the catalog of %s: %s", t.Name, t.Node, strings.Join(denied, "; "))
		}
		return
	}
	if len(denied) == 0 {
		fail(t.Pos, "test %q: the policy gates allow the catalog of %s, want it denied with %s", t.Name, t.Node, quoteList(t.Deny))
		return
	}
	for _, want := range t.Deny {
		if !slices.ContainsFunc(denied, func(m string) bool { return strings.Contains(m, want) }) {
			fail(t.Pos, "test %q: no deny message for %s contains %q (denied with: %s)", t.Name, t.Node, want, strings.Join(denied, "; "))
		}
	}
}

func quoteList(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = fmt.Sprintf("%q", s)
	}
	return strings.Join(q, ", ")
}

// expectedValue puts a value written in a test into catalog shape, so that
// mode = "644" matches "0644" and a list matches []string.
func expectedValue(typ, attr string, v any) any {
	if s, ok := Schemas[typ]; ok {
		a, ok := s.Attr(attr)
		if !ok {
			if i := strings.IndexByte(attr, '.'); i > 0 {
				if parent, ok := s.Attr(attr[:i]); ok {
					a, ok = subAttr(parent, attr[i+1:])
					if !ok {
						a = nil
					}
				}
			}
		}
		if a != nil {
			in := v
			if l, isList := v.([]any); isList {
				if ss, err := toStrings(l); err == nil {
					in = ss
				}
			}
			if m, isMap := v.(map[string]any); isMap {
				sm := map[string]string{}
				for k, e := range m {
					sm[k] = fmt.Sprint(e)
				}
				in = sm
			}
			if out, err := coerce(a, in, false); err == nil {
				return out
			}
		}
	}
	return v
}

func sortedAttrKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
