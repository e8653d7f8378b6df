package catalogs

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
)

// definition is one defines/<name>.toml: a resource type of the site's own
// (Puppet's defined type), made of typed parameters and the same
// declarations as a role. A role uses it as [[name]] any number of times;
// compile expands each use into plain resources, so that the catalog, and
// the agent, never know definitions exist.
type definition struct {
	name   string
	file   string
	params map[string]*paramSpec
	decls  []*decl
}

// paramSpec is one parameter of a definition.
type paramSpec struct {
	name     string
	typ      string // one of paramTypes
	def      any    // the default, in its parameter's shape
	required bool   // no default: every use must give it
	pos      Pos
}

// paramTypes are the types a definition's parameter may declare.
var paramTypes = []string{"string", "integer", "float", "boolean", "list", "table", "any"}

// metaKeys are the keys of a declaration that are not attributes of its
// type: for a use of a definition, every other key is a parameter.
var metaKeys = []string{"for_each", "when", "require", "before", "notify", "subscribe", "tags"}

// use is a declaration whose type is a definition.
type use struct {
	def    *definition
	params []*useParam // sorted by name
}

// useParam is one parameter value written at a use.
type useParam struct {
	spec   *paramSpec
	pos    Pos
	static any       // the value, when it has no template
	value  *tstring  // a templated string, rendered per node then coerced
	list   []tstring // a list of strings of which one is templated
}

// loadDefines reads defines/*.toml. Every name is known before any body is
// read, since a definition may use another.
func (l *loader) loadDefines() {
	files := l.filesUnder("defines", ".toml")
	docs := map[string]*tomlDoc{}
	for _, rel := range files {
		name := strings.TrimSuffix(strings.TrimPrefix(rel, "defines/"), ".toml")
		switch {
		case !validName(name) || strings.Contains(name, "/"):
			l.diags.add(Pos{File: rel}, "definition name %q: want letters, digits, _ and -", name)
			continue
		case Schemas[name] != nil:
			l.diags.add(Pos{File: rel}, "definition %q shadows the built-in resource type %s: rename the file", name, name)
			continue
		case slices.Contains(metaKeys, name) || slices.Contains([]string{"include", "params", "description"}, name):
			l.diags.add(Pos{File: rel}, "definition %q: the name is a key of roles; rename the file", name)
			continue
		}
		doc := l.parse(rel)
		if doc == nil {
			continue
		}
		docs[name] = doc
		l.site.defines[name] = &definition{name: name, file: rel, params: map[string]*paramSpec{}}
	}
	for _, name := range l.defineNames() {
		df, doc := l.site.defines[name], docs[name]
		r := reader{doc: doc, diags: &l.diags}
		r.known("", append([]string{"params", "description"}, l.declTypes()...)...)
		r.str("description")
		if r.table("params") {
			l.loadParamSpecs(doc, df)
		}
		df.decls = l.loadDecls(doc)
	}
	l.checkDefineCycles()
}

// defineNames returns the names of the site's definitions, sorted.
func (l *loader) defineNames() []string {
	names := make([]string, 0, len(l.site.defines))
	for n := range l.site.defines {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// declTypes is every type a declaration may have: the built-in ones and
// the site's definitions.
func (l *loader) declTypes() []string {
	return append(TypeNames(), l.defineNames()...)
}

// loadParamSpecs reads a definition's [params]. A parameter is written
// either as its default (port = 80: an integer, default 80) or as a table
// { type = "integer", default = 80 }; without a default it is required.
// name is every definition's own parameter: the instance's name.
func (l *loader) loadParamSpecs(doc *tomlDoc, df *definition) {
	r := reader{doc: doc, diags: &l.diags}
	raw := doc.data["params"].(map[string]any)
	for _, k := range slices.Sorted(maps.Keys(raw)) {
		kp := joinKey("params", k)
		ps := &paramSpec{name: k, pos: doc.posOf(kp)}
		if k == "name" {
			r.bad(kp, "params: name is every definition's own parameter, the instance's name (a string); do not declare it")
			continue
		}
		if slices.Contains(metaKeys, k) {
			r.bad(kp, "params: %q is a key every declaration has (%s); choose another name", k, strings.Join(metaKeys, ", "))
			continue
		}
		if m, ok := raw[k].(map[string]any); ok && m["type"] != nil {
			r.known(kp, "type", "default", "doc")
			typ, _ := r.str(joinKey(kp, "type"))
			r.str(joinKey(kp, "doc"))
			if !slices.Contains(paramTypes, typ) {
				r.bad(joinKey(kp, "type"), "params.%s: type %q: want one of %s", k, typ, strings.Join(paramTypes, ", "))
				continue
			}
			ps.typ = typ
			if d, ok := m["default"]; ok {
				v, err := coerceParam(typ, d, false)
				if err != nil {
					r.bad(joinKey(kp, "default"), "params.%s: default: %v", k, err)
					continue
				}
				ps.def = v
			} else {
				ps.required = true
			}
		} else {
			ps.typ = paramTypeOf(raw[k])
			ps.def = raw[k]
		}
		if sr, isSecret := l.secretIn(doc, kp, df.name+" params."+k, ps.def); isSecret {
			// An "age:" default is a secret, opened per use.
			if sr == nil {
				continue
			}
			if ps.typ != "string" && ps.typ != "any" {
				r.bad(kp, "params.%s: a secret is a string, and the parameter is %s %s", k, article(ps.typ), ps.typ)
				continue
			}
			ps.def = sr
		}
		df.params[k] = ps
	}
}

// paramTypeOf is the type a default written alone gives its parameter.
func paramTypeOf(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case int64:
		return "integer"
	case float64:
		return "float"
	case bool:
		return "boolean"
	case []any:
		return "list"
	case map[string]any:
		return "table"
	}
	return "any"
}

// coerceParam checks v against a parameter's type. rendered says v came
// out of a template, so that a string may stand for a number or a boolean.
func coerceParam(typ string, v any, rendered bool) (any, error) {
	s, isStr := v.(string)
	switch typ {
	case "any":
		return v, nil
	case "string":
		if isStr {
			return s, nil
		}
	case "integer":
		switch n := v.(type) {
		case int64:
			return n, nil
		case float64:
			if n == math.Trunc(n) && math.Abs(n) < 1<<53 {
				return int64(n), nil
			}
		}
		if isStr && rendered {
			if n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64); err == nil {
				return n, nil
			}
		}
	case "float":
		switch n := v.(type) {
		case float64:
			return n, nil
		case int64:
			return float64(n), nil
		}
		if isStr && rendered {
			if f, err := strconv.ParseFloat(strings.TrimSpace(s), 64); err == nil {
				return f, nil
			}
		}
	case "boolean":
		if b, ok := v.(bool); ok {
			return b, nil
		}
		if isStr && rendered {
			if b, err := strconv.ParseBool(strings.TrimSpace(s)); err == nil {
				return b, nil
			}
		}
	case "list":
		switch x := v.(type) {
		case []any:
			return x, nil
		case []string:
			out := make([]any, len(x))
			for i, e := range x {
				out[i] = e
			}
			return out, nil
		}
	case "table":
		if m, ok := v.(map[string]any); ok {
			return m, nil
		}
	}
	if isStr && rendered {
		return nil, fmt.Errorf("want %s %s, got %q (after rendering its template)", article(typ), typ, s)
	}
	return nil, fmt.Errorf("want %s %s, got %s", article(typ), typ, typeName(v))
}

func article(typ string) string {
	if strings.IndexByte("aeiou", typ[0]) >= 0 {
		return "an"
	}
	return "a"
}

// loadUse checks one [[name]] table of a role or definition that uses the
// definition df: its meta keys and its parameters, against both places.
func (l *loader) loadUse(doc *tomlDoc, df *definition, p string, raw map[string]any, d *decl) bool {
	r := reader{doc: doc, diags: &l.diags}
	u := &use{def: df}
	d.use = u
	ok := true
	for _, k := range slices.Sorted(maps.Keys(raw)) {
		if slices.Contains(metaKeys, k) {
			continue
		}
		kp := joinKey(p, k)
		pos := doc.posOf(kp)
		spec := df.params[k]
		if k == "name" {
			spec = &paramSpec{name: "name", typ: "string", required: true, pos: Pos{File: df.file}}
		}
		if spec == nil {
			want := append([]string{"name"}, slices.Sorted(maps.Keys(df.params))...)
			r.bad(kp, "unknown parameter %q for %s (defined in %s; want %s, or %s)", k, df.name, df.file, strings.Join(want, ", "), strings.Join(metaKeys, ", "))
			ok = false
			continue
		}
		up := &useParam{spec: spec, pos: pos}
		switch v := raw[k].(type) {
		case string:
			// An "age:" value is a secret, opened per node like a
			// template is rendered.
			ts, err := l.newValue(v, pos, df.name+" "+k)
			if err != nil {
				l.diags = append(l.diags, err.(Diagnostic))
				ok = false
				continue
			}
			if ts.dynamic() {
				up.value = &ts
			}
		case []any:
			dyn := false
			list := make([]tstring, len(v))
			for i, e := range v {
				s, isStr := e.(string)
				if !isStr {
					continue
				}
				ts, err := l.newValue(s, doc.posOf(fmt.Sprintf("%s[%d]", kp, i)), fmt.Sprintf("%s %s[%d]", df.name, k, i))
				if err != nil {
					l.diags = append(l.diags, err.(Diagnostic))
					ok = false
					continue
				}
				list[i] = ts
				dyn = dyn || ts.dynamic()
			}
			if dyn {
				for i, e := range v {
					if _, isStr := e.(string); !isStr {
						r.bad(fmt.Sprintf("%s[%d]", kp, i), "%s: a list with a template must hold only strings, got %s", k, typeName(e))
						ok = false
					}
				}
				up.list = list
			}
		}
		if up.value == nil && up.list == nil {
			v, err := coerceParam(spec.typ, raw[k], false)
			if err != nil {
				l.diags.add(pos, "%s %s: %v (the parameter is declared at %s)", df.name, k, err, spec.where(df))
				ok = false
				continue
			}
			up.static = v
		}
		u.params = append(u.params, up)
	}
	if _, has := raw["name"]; !has {
		l.diags.add(d.pos, "%s: missing name, the instance's name (the definition is %s)", df.name, df.file)
		ok = false
	}
	for _, k := range slices.Sorted(maps.Keys(df.params)) {
		if spec := df.params[k]; spec.required {
			if _, has := raw[k]; !has {
				l.diags.add(d.pos, "%s: missing required parameter %q (declared at %s)", df.name, k, spec.pos)
				ok = false
			}
		}
	}
	return ok
}

// where says where a parameter is declared.
func (ps *paramSpec) where(df *definition) string {
	if ps.pos.Line == 0 {
		return df.file
	}
	return ps.pos.String()
}

// checkDefineCycles finds definitions that use themselves, through any
// chain of others, and spells the chain out.
func (l *loader) checkDefineCycles() {
	const (
		unseen = iota
		onPath
		done
	)
	state := map[string]int{}
	var stack []string
	var visit func(name string)
	visit = func(name string) {
		state[name] = onPath
		stack = append(stack, name)
		for _, d := range l.site.defines[name].decls {
			if d.use == nil {
				continue
			}
			next := d.use.def.name
			switch state[next] {
			case unseen:
				visit(next)
			case onPath:
				start := slices.Index(stack, next)
				cycle := append(slices.Clone(stack[start:]), next)
				l.diags.add(d.pos, "definition cycle: %s (a definition may not use itself)", strings.Join(cycle, " → "))
			}
		}
		stack = stack[:len(stack)-1]
		state[name] = done
	}
	for _, n := range l.defineNames() {
		if state[n] == unseen {
			visit(n)
		}
	}
}

// checkRefShape checks a "type:name" reference's shape, whatever its type.
func checkRefShape(ref string) error {
	if _, name, ok := SplitID(ref); !ok || name == "" {
		return fmt.Errorf("reference %q: want type:name, like \"package:nginx\"", ref)
	}
	return nil
}

// checkRefTypes checks that every reference in refs, the attribute attr
// written at pos, names a built-in type or one of the site's definitions.
func (l *loader) checkRefTypes(attr string, refs []string, pos Pos) bool {
	ok := true
	for _, ref := range refs {
		typ, _, _ := SplitID(ref)
		if Schemas[typ] == nil && l.site.defines[typ] == nil {
			l.diags.add(pos, "%s: reference %q: unknown resource type %q (want one of %s)", attr, ref, typ, strings.Join(l.declTypes(), ", "))
			ok = false
		}
	}
	return ok
}
