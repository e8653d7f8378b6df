package catalogs

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// frame is where the compiler is declaring: at the top of a role, or
// inside uses of definitions, for one element of a for_each.
type frame struct {
	via      string      // what Source says before the declaration: "roles/web.toml:40 via "
	whereVia string      // via, with the for_each elements of the uses, for diagnostics
	elem     string      // the for_each element, for diagnostics: ` (for_each key "a")`
	insts    []*instance // the uses being expanded, outermost first
	useEdges []edge      // the edges of those uses, which each of their resources gets
	tags     []string    // the tags of those uses
}

// instance is one use of a definition, whose resources an edge to
// "vhost:shop" stands for.
type instance struct {
	where   string // the use, as Source names it, with its element
	members []*built
}

// MaxExpansions caps how many resources and uses of definitions one
// node's compile may declare: definitions that each use the next ten
// times would otherwise grow a catalog exponentially with a few lines.
const MaxExpansions = 50_000

// run declares d once, or once per element of its for_each.
func (c *compiler) run(d *decl) {
	if !c.expand(d) {
		return
	}
	if d.forEach == nil {
		c.one(d)
		return
	}
	elems, err := d.forEach.elements(c.ctx)
	if err != nil {
		c.forEachError(d, err)
		return
	}
	alts, fine := c.decoyElements(d, elems)
	if !fine {
		return
	}
	ctx, elem, decoyCtx, paths := c.ctx, c.elem, c.decoyCtx, c.secretPaths
	// One context for the loop, each set per element: nothing an element
	// declares keeps a reference to the context.
	c.ctx = maps.Clone(ctx)
	each := map[string]any{}
	c.ctx["each"] = each
	// The decoy context follows in step: each in it is the decoy element,
	// so that what an element renders from a secret is tainted.
	var dctx, decoyEach map[string]any
	var scope provScope
	if c.prov != nil {
		scope = c.prov.scope
	}
	for i, e := range elems {
		if !c.expand(d) {
			break
		}
		each["key"], each["value"] = e.key, e.value
		c.decoyCtx = decoyCtx
		if c.tracking {
			var alt *element
			if alts != nil {
				alt = &alts[i]
			}
			if plain, decoy, found := c.elementSecrets(e, alt); found {
				if dctx == nil {
					base := decoyCtx
					if base == nil {
						base = ctx
					}
					dctx = maps.Clone(base)
					decoyEach = map[string]any{}
					dctx["each"] = decoyEach
					// Any template that reads each may read a secret.
					c.secretPaths = append(slices.Clip(paths), "each")
				}
				each["value"] = plain
				decoyEach["key"], decoyEach["value"] = e.key, decoy
				c.decoyCtx = dctx
			}
		}
		c.elem = " (" + e.label() + ")"
		if c.prov != nil {
			c.prov.element(c, d, e)
		}
		before := len(c.diags)
		c.one(d)
		for i := before; i < len(c.diags); i++ {
			// An element or use named already names the chain up to
			// here: a diagnostic inside one says where it is once.
			if m := c.diags[i].Msg; !strings.Contains(m, "(for_each ") && !strings.Contains(m, " (in the use at ") {
				c.diags[i].Msg += fmt.Sprintf(" (%s of %s)", e.label(), d.source)
			}
		}
	}
	c.ctx, c.elem, c.decoyCtx, c.secretPaths = ctx, elem, decoyCtx, paths
	if c.prov != nil {
		c.prov.scope = scope
	}
}

// expand counts one more declaration, and says whether the compile may
// go on: past MaxExpansions it says so once, at d.
func (c *compiler) expand(d *decl) bool {
	if c.expansions++; c.expansions <= MaxExpansions {
		return true
	}
	if c.expansions == MaxExpansions+1 {
		c.diags.add(d.pos, "the catalog grows past %d resources and uses of definitions: a for_each or a chain of definitions expands too far", MaxExpansions)
	}
	return false
}

// inUse names the use being expanded, for a diagnostic inside a
// definition.
func (c *compiler) inUse() string {
	if len(c.insts) == 0 {
		return ""
	}
	return " (in the use at " + c.insts[len(c.insts)-1].where + ")"
}

func (c *compiler) one(d *decl) {
	if d.use != nil {
		c.instantiate(d)
		return
	}
	before := len(c.diags)
	c.declare(d)
	c.noteUse(before)
}

// noteUse names the use being expanded in the diagnostics from i on that
// name none yet.
func (c *compiler) noteUse(i int) {
	if len(c.insts) == 0 {
		return
	}
	for ; i < len(c.diags); i++ {
		if !strings.Contains(c.diags[i].Msg, " (in the use at ") {
			c.diags[i].Msg += c.inUse()
		}
	}
}

// instantiate expands one use of a definition into its resources. A
// parameter rendered from a secret is tainted: the use's decoy context
// holds its decoy, so that whatever the definition renders from it is
// sealed, or refused where it would show.
func (c *compiler) instantiate(d *decl) {
	if ok, _ := c.when(d); !ok {
		return
	}
	u := d.use
	df := u.def
	before := len(c.diags)
	params := make(map[string]any, len(df.params)+1)
	for k, ps := range df.params {
		if !ps.required {
			params[k] = ps.def
		}
	}
	// decoys are the decoy values of the parameters rendered from a
	// secret, by name.
	var decoys map[string]any
	for _, up := range u.params {
		v := up.static
		var alt any
		tainted := false
		switch {
		case up.value != nil:
			var err error
			v, alt, tainted, err = c.trackedAlt(c.mayReadTString(*up.value), func() (any, error) { return c.renderString(*up.value, up.pos) })
			if err != nil {
				c.diags = append(c.diags, err.(Diagnostic))
				continue
			}
		case up.list != nil:
			may := false
			for _, ts := range up.list {
				may = may || c.mayReadTString(ts)
			}
			var err error
			v, alt, tainted, err = c.trackedAlt(may, func() (any, error) {
				l := make([]any, len(up.list))
				for i, ts := range up.list {
					s, err := c.renderString(ts, up.pos)
					if err != nil {
						return nil, err
					}
					l[i] = s
				}
				return l, nil
			})
			if err != nil {
				c.diags = append(c.diags, err.(Diagnostic))
				continue
			}
		}
		if up.value != nil || up.list != nil {
			cv, err := coerceParam(up.spec.typ, v, true)
			if err != nil {
				c.diags.add(up.pos, "%s %s: %v (the parameter is declared at %s)", df.name, up.spec.name, err, up.spec.where(df))
				continue
			}
			v = cv
		}
		if tainted {
			if up.spec.name == "name" {
				c.diags.add(up.pos, "%s name cannot come from a secret: it names the use, and every resource of it, in every report and diff", df.name)
				continue
			}
			if decoys == nil {
				decoys = map[string]any{}
			}
			// A decoy that does not coerce stays as rendered: what the
			// definition renders from it differs all the same.
			if cv, err := coerceParam(up.spec.typ, alt, true); err == nil {
				alt = cv
			}
			decoys[up.spec.name] = alt
		}
		params[up.spec.name] = v
	}
	var edges []edge
	var tags []string
	for _, a := range d.attrs {
		v := a.static
		if a.dyn {
			var err error
			if v, err = c.untainted(a); err != nil {
				c.diags = append(c.diags, err.(Diagnostic))
				continue
			}
		}
		list, _ := v.([]string)
		if a.name == "tags" {
			tags = append(tags, list...)
			continue
		}
		for i, ref := range list {
			pos := a.pos
			if i < len(a.elemAt) {
				pos = a.elemAt[i]
			}
			edges = append(edges, edge{kind: a.name, ref: ref, pos: pos})
		}
	}
	if len(c.diags) > before {
		return
	}
	name, _ := params["name"].(string)
	if name == "" {
		c.diags.add(d.pos, "%s: name is empty", df.name)
		return
	}
	id := df.name + ":" + name
	where := c.whereVia + d.pos.String() + c.elem
	if prev, dup := c.instances[id]; dup {
		c.diags.add(d.pos, "duplicate %s: already used at %s", id, prev.where)
		return
	}
	inst := &instance{where: where}
	c.instances[id] = inst
	var scope provScope
	if c.prov != nil {
		scope = c.prov.enterUse(c, d, id, where, edges)
	}
	saved, ctx, decoyCtx, paths := c.frame, c.ctx, c.decoyCtx, c.secretPaths
	// The use's context holds only its parameters (and node, facts): its
	// secrets are the tainted ones and those written as "age:" values.
	c.decoyCtx, c.secretPaths = nil, nil
	var decoyParams map[string]any
	if c.tracking {
		plain, decoy, found := c.resolveSecrets("params", params)
		if found || decoys != nil {
			params = plain.(map[string]any)
			decoyParams = maps.Clone(decoy.(map[string]any))
			for k, v := range decoys {
				decoyParams[k] = v
				c.secretPaths = append(c.secretPaths, "params."+k)
			}
		}
	}
	c.ctx = compileEnv(asString(ctx["node"]), asString(ctx["environment"]), nil, params)
	c.ctx["facts"] = ctx["facts"]
	if decoyParams != nil {
		c.decoyCtx = compileEnv(asString(ctx["node"]), asString(ctx["environment"]), nil, decoyParams)
		c.decoyCtx["facts"] = ctx["facts"]
	}
	c.frame = frame{
		via:      c.via + d.source + " via ",
		whereVia: where + " via ",
		insts:    append(slices.Clip(saved.insts), inst),
		useEdges: append(slices.Clip(saved.useEdges), edges...),
		tags:     append(slices.Clip(saved.tags), tags...),
	}
	inner := len(c.diags)
	for _, dd := range df.decls {
		c.run(dd)
	}
	c.frame, c.ctx, c.decoyCtx, c.secretPaths = saved, ctx, decoyCtx, paths
	if c.prov != nil {
		c.prov.scope = scope
	}
	c.noteUse(inner)
}

func asString(v any) string { s, _ := v.(string); return s }

// addTags merges the tags of the uses a resource came from into its own
// and checks them: a tag is a name (letters, digits, _ - .), so that
// --tags a,b splits cleanly.
func (c *compiler) addTags(d *decl, attrs map[string]any) {
	own, _ := attrs["tags"].([]string)
	if len(own) == 0 && len(c.tags) == 0 {
		return
	}
	all := sortedSet(append(slices.Clone(own), c.tags...))
	for _, t := range all {
		if !validName(t) {
			c.diags.add(d.attrPos("tags"), "tags: %q is not a tag (letters, digits, _ - and .)", t)
		}
	}
	attrs["tags"] = all
}

// expandInstances turns every edge to a use of a definition ("vhost:shop")
// into edges to each of its resources.
func (c *compiler) expandInstances() {
	if len(c.instances) == 0 {
		return
	}
	for _, b := range c.order {
		n := 0
		for _, e := range b.edges {
			if _, ok := c.instances[e.ref]; ok {
				n++
			}
		}
		if n == 0 {
			continue
		}
		edges := make([]edge, 0, len(b.edges))
		for _, e := range b.edges {
			in, ok := c.instances[e.ref]
			if !ok {
				edges = append(edges, e)
				continue
			}
			for _, m := range in.members {
				if m != b {
					edges = append(edges, edge{kind: e.kind, ref: m.res.ID, pos: e.pos})
				}
			}
		}
		b.edges = edges
	}
}
