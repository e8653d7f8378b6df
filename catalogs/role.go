package catalogs

import (
	"fmt"
	"slices"
	"strings"
)

// role is one roles/<name>.toml: included roles, parameter defaults and
// resource declarations, parsed once per site version.
type role struct {
	name     string
	file     string
	doc      *tomlDoc
	includes []string
	incPos   []Pos
	params   map[string]any
	decls    []*decl
}

// decl is one resource declaration in a role, checked at load so that only
// templated values remain to be rendered and checked per node.
type decl struct {
	schema  *Schema // nil for a use of a definition
	use     *use    // set for a use of a definition
	pos     Pos
	source  string // pos as the catalog records it, "roles/web.toml:12"
	when    *condition
	forEach *iteration
	attrs   []*declAttr // sorted by name; for a use, its edges and tags
}

// declAttr is one attribute of a declaration. Values without templates are
// coerced once at load (static); the rest keep their parsed templates.
type declAttr struct {
	name   string // "mode", or "health.tcp" for a table's sub-attribute
	attr   *Attr
	pos    Pos
	static any // the value in catalog shape, when !dynamic
	dyn    bool
	value  tstring            // a templated string
	list   []tstring          // every list's elements, templated or not
	elemAt []Pos              // where each list element was written
	table  map[string]tstring // a table of strings with a templated value
}

func (l *loader) loadRoles() {
	for _, rel := range l.filesUnder("roles", ".toml") {
		name := strings.TrimSuffix(strings.TrimPrefix(rel, "roles/"), ".toml")
		doc := l.parse(rel)
		if doc == nil {
			continue
		}
		ro := &role{name: name, file: rel, doc: doc, params: map[string]any{}}
		l.site.roles[name] = ro
		r := reader{doc: doc, diags: &l.diags}
		allowed := append([]string{"include", "params", "description"}, l.declTypes()...)
		r.known("", allowed...)
		r.str("description")
		if inc, ok := r.strs("include"); ok {
			ro.includes = inc
			for i := range inc {
				ro.incPos = append(ro.incPos, doc.posOf(fmt.Sprintf("include[%d]", i)))
			}
		}
		if r.table("params") {
			ro.params = doc.data["params"].(map[string]any)
		}
		ro.decls = l.loadDecls(doc)
		// Past the load only the positions of [params] are read (lookup
		// explains where a default came from): the rest of the parse, a
		// value and a position for every key of every declaration, would
		// stay alive as long as the site.
		ro.doc = doc.only("params")
	}
	for _, ro := range l.site.roles {
		for i, inc := range ro.includes {
			if _, ok := l.site.roles[inc]; !ok && !l.unparsed["roles/"+inc+".toml"] {
				l.diags.add(ro.incPos[i], "include %q: no role %s (want one of: %s)", inc, "roles/"+inc+".toml", strings.Join(l.roleNames(), ", "))
			}
		}
	}
	l.checkIncludeCycles()
}

func (l *loader) roleNames() []string {
	names := make([]string, 0, len(l.site.roles))
	for n := range l.site.roles {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// loadDecls loads every declaration of a role or definition file, built-in
// types and uses of definitions alike, in file order, so that a role
// reads top to bottom the way its catalog's sources do.
func (l *loader) loadDecls(doc *tomlDoc) []*decl {
	r := reader{doc: doc, diags: &l.diags}
	var decls []*decl
	for _, typ := range l.declTypes() {
		for i := range r.tables(typ) {
			if d := l.loadDecl(doc, typ, fmt.Sprintf("%s[%d]", typ, i)); d != nil {
				decls = append(decls, d)
			}
		}
	}
	slices.SortStableFunc(decls, func(a, b *decl) int { return a.pos.Line - b.pos.Line })
	return decls
}

// checkIncludeCycles finds every include cycle and spells it out.
func (l *loader) checkIncludeCycles() {
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
		ro := l.site.roles[name]
		for i, inc := range ro.includes {
			if _, ok := l.site.roles[inc]; !ok {
				continue
			}
			switch state[inc] {
			case unseen:
				visit(inc)
			case onPath:
				start := slices.Index(stack, inc)
				cycle := append(slices.Clone(stack[start:]), inc)
				l.diags.add(ro.incPos[i], "role include cycle: %s", strings.Join(cycle, " → "))
			}
		}
		stack = stack[:len(stack)-1]
		state[name] = done
	}
	for _, n := range l.roleNames() {
		if state[n] == unseen {
			visit(n)
		}
	}
}

// loadDecl checks one [[type]] table: unknown attributes, value types,
// templates and the condition. Values that need no template are coerced
// here, once.
func (l *loader) loadDecl(doc *tomlDoc, typ, p string) *decl {
	r := reader{doc: doc, diags: &l.diags}
	raw := doc.data[typ].([]any)[indexOf(p)].(map[string]any)
	d := &decl{pos: doc.posOf(p)}
	d.source = fmt.Sprintf("%s:%d", d.pos.File, d.pos.Line)
	before := len(l.diags)
	// for_each first: each is known to the condition only when it is set.
	if v, ok := raw["for_each"]; ok {
		d.forEach = l.loadIteration(doc, joinKey(p, "for_each"), v)
	}
	if _, ok := raw["when"]; ok {
		kp := joinKey(p, "when")
		if src, ok := r.str(kp); ok {
			c, err := compileConditionIn(src, doc.posOf(kp), d.forEach != nil)
			if err != nil {
				l.diags = append(l.diags, err.(Diagnostic))
			}
			d.when = c
		}
	}
	if df := l.site.defines[typ]; df != nil && Schemas[typ] == nil {
		l.loadUse(doc, df, p, raw, d)
		for _, k := range []string{"before", "notify", "require", "subscribe", "tags"} {
			if v, ok := raw[k]; ok {
				a, _ := metaAttr(k)
				if da := l.loadAttr(doc, joinKey(p, k), k, a, v); da != nil {
					d.attrs = append(d.attrs, da)
				}
			}
		}
		if len(l.diags) > before {
			return nil
		}
		return d
	}
	s := Schemas[typ]
	d.schema = s
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := raw[k]
		kp := joinKey(p, k)
		if k == "when" || k == "for_each" {
			continue
		}
		a, ok := s.Attr(k)
		if !ok {
			a, ok = metaAttr(k)
		}
		if !ok {
			r.bad(kp, "unknown attribute %q for %s (want %s)", k, s.Type, strings.Join(attrNames(s), ", "))
			continue
		}
		if a.Kind == KindTable {
			m, isMap := v.(map[string]any)
			if !isMap {
				r.bad(kp, "%s: want a table like { %s = … }, got %s", k, a.Sub[0].Name, typeName(v))
				continue
			}
			subKeys := make([]string, 0, len(m))
			for sk := range m {
				subKeys = append(subKeys, sk)
			}
			slices.Sort(subKeys)
			for _, sk := range subKeys {
				sub, ok := subAttr(a, sk)
				if !ok {
					r.bad(joinKey(kp, sk), "unknown attribute %q in %s (want %s)", sk, k, strings.Join(subNames(a), ", "))
					continue
				}
				if da := l.loadAttr(doc, joinKey(kp, sk), k+"."+sk, sub, m[sk]); da != nil {
					d.attrs = append(d.attrs, da)
				}
			}
			continue
		}
		if da := l.loadAttr(doc, kp, k, a, v); da != nil {
			d.attrs = append(d.attrs, da)
		}
	}
	for _, a := range s.Attrs {
		if a.Required && a.Name != s.Key {
			if _, ok := raw[a.Name]; !ok {
				l.diags.add(d.pos, "%s: missing required attribute %q (%s)", s.Type, a.Name, a.Doc)
			}
		}
	}
	if _, ok := raw[s.Key]; !ok && s.Attrs[0].Required {
		l.diags.add(d.pos, "%s: missing required attribute %q (%s)", s.Type, s.Key, s.Attrs[0].Doc)
	}
	if len(l.diags) > before {
		return nil
	}
	// Cross-attribute rules run now when every value is static; otherwise
	// they run per node after rendering. A for_each's elements may differ
	// only through templates, so the rule holds for all of them.
	if d.static() {
		vals := map[string]any{}
		for _, a := range d.attrs {
			vals[a.name] = a.static
		}
		s.check(vals, func(attr, format string, args ...any) {
			l.diags.add(d.attrPos(attr), format, args...)
		})
	}
	return d
}

func (d *decl) static() bool {
	for _, a := range d.attrs {
		if a.dyn {
			return false
		}
	}
	return true
}

// attrPos returns where attribute name was written, or the declaration.
func (d *decl) attrPos(name string) Pos {
	for _, a := range d.attrs {
		if a.name == name {
			return a.pos
		}
	}
	return d.pos
}

// loadAttr converts one decoded TOML value into a declAttr.
func (l *loader) loadAttr(doc *tomlDoc, kp, name string, a *Attr, v any) *declAttr {
	pos := doc.posOf(kp)
	da := &declAttr{name: name, attr: a, pos: pos}
	fail := func(err error) *declAttr {
		if d, ok := err.(Diagnostic); ok {
			l.diags = append(l.diags, d)
		} else {
			l.diags.add(pos, "%s: %v", name, err)
		}
		return nil
	}
	switch a.Kind {
	case KindList, KindRefs:
		if s, ok := v.(string); ok && a.Kind == KindRefs {
			v = []any{s} // require = "package:nginx" reads naturally
		}
		list, err := toStrings(v)
		if err != nil {
			return fail(err)
		}
		da.list = make([]tstring, len(list))
		for i, s := range list {
			ep := doc.posOf(fmt.Sprintf("%s[%d]", kp, i))
			ts, err := l.newValue(s, ep, name)
			if err != nil {
				return fail(err)
			}
			da.list[i] = ts
			da.elemAt = append(da.elemAt, ep)
			da.dyn = da.dyn || ts.dynamic()
		}
		if !da.dyn {
			v = list
		}
	case KindMap:
		m, ok := v.(map[string]any)
		if !ok {
			return fail(fmt.Errorf("want a table of strings, got %s", typeName(v)))
		}
		da.table = make(map[string]tstring, len(m))
		sm := make(map[string]string, len(m))
		for k, e := range m {
			s, ok := e.(string)
			if !ok {
				return fail(Diagnostic{Pos: doc.posOf(joinKey(kp, k)), Msg: fmt.Sprintf("%s.%s: want a string, got %s", name, k, typeName(e))})
			}
			ts, err := l.newValue(s, doc.posOf(joinKey(kp, k)), name+"."+k)
			if err != nil {
				return fail(err)
			}
			da.table[k] = ts
			sm[k] = s
			da.dyn = da.dyn || ts.dynamic()
		}
		v = sm
	default:
		if s, ok := v.(string); ok {
			ts, err := l.newValue(s, pos, name)
			if err != nil {
				return fail(err)
			}
			da.value = ts
			da.dyn = ts.dynamic()
		}
	}
	if da.dyn {
		return da
	}
	cv, err := coerce(a, v, false)
	if err != nil {
		return fail(err)
	}
	if refs, ok := cv.([]string); ok && a.Kind == KindRefs && !l.checkRefTypes(name, refs, pos) {
		return nil
	}
	da.static = cv
	return da
}

func metaAttr(name string) (*Attr, bool) {
	for i := range metaAttrs {
		if metaAttrs[i].Name == name {
			return &metaAttrs[i], true
		}
	}
	return nil, false
}

func subAttr(a *Attr, name string) (*Attr, bool) {
	for i := range a.Sub {
		if a.Sub[i].Name == name {
			return &a.Sub[i], true
		}
	}
	return nil, false
}

func attrNames(s *Schema) []string {
	var names []string
	for _, a := range s.Attrs {
		names = append(names, a.Name)
	}
	for _, a := range metaAttrs {
		names = append(names, a.Name)
	}
	return names
}

func subNames(a *Attr) []string {
	var names []string
	for _, s := range a.Sub {
		names = append(names, s.Name)
	}
	return names
}

// indexOf returns N of a key path ending in "[N]".
func indexOf(p string) int {
	i := strings.LastIndexByte(p, '[')
	n := 0
	for _, c := range p[i+1 : len(p)-1] {
		n = n*10 + int(c-'0')
	}
	return n
}
