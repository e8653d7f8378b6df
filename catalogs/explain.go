package catalogs

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/herdcm/herd/facts"
)

// Why a node's catalog is what it is. A compile with a recorder (Explain)
// notes, as it goes, which classification rules matched, where each role
// came from, and for every resource the declaration, the uses of
// definitions and the for_each element it came through, what each
// attribute's templates read and where each of those values was set, and
// every edge with the place that wrote it. Nothing is guessed afterwards:
// the recorder sees the compile's own decisions. A plain compile carries a
// nil recorder and pays one pointer test per hook.

// Explanation is the answer of `herd explain`: why node's catalog is what
// it is. Its JSON is the --json document of the command and of the Admin
// service's Explain.
type Explanation struct {
	Node string `json:"node"`
	// Environment is the environment the node was compiled in: the
	// site's (herd.toml's environment). Where the environment comes from
	// (a branch of the site) is explained here too once the server serves
	// several.
	Environment string `json:"environment"`
	Version     string `json:"version"`
	// Digest is the digest of the catalog the explained compile made.
	Digest    string           `json:"digest"`
	Rules     []RuleMatch      `json:"rules"`
	Roles     []RoleOrigin     `json:"roles"`
	Hierarchy []LevelConsulted `json:"hierarchy"`
	// Resources lists every resource of the catalog, when no one resource
	// was asked for.
	Resources []ResourceSummary `json:"resources,omitempty"`
	// Resource explains the one resource asked for.
	Resource *ResourceExplanation `json:"resource,omitempty"`
	// Rollout is where the node stands in the rollout of the site's
	// versions: filled by the server, absent for a masterless explain.
	Rollout *RolloutPosition `json:"rollout,omitempty"`
}

// RuleMatch is one [[node]] rule of nodes.toml and whether it matched.
type RuleMatch struct {
	At      string   `json:"at"`
	Match   []string `json:"match,omitempty"`
	When    string   `json:"when,omitempty"`
	Roles   []string `json:"roles"`
	Matched bool     `json:"matched"`
	// Why says why it matched or not: the glob that matched, or the
	// condition that did not hold.
	Why string `json:"why"`
}

// RoleOrigin says where one of the node's roles came from: a rule of
// nodes.toml or another role's include.
type RoleOrigin struct {
	Role string `json:"role"`
	File string `json:"file"`
	// By is "rule" or "include"; At is where the role was named, and
	// Via the rule ("nodes.toml:9:1") or the including role.
	By  string `json:"by"`
	At  string `json:"at"`
	Via string `json:"via"`
}

// LevelConsulted is one place the node's params are read from, most
// specific first.
type LevelConsulted struct {
	Level string `json:"level"`
	File  string `json:"file"`
	// Note says why the level gives nothing, when it does not.
	Note string `json:"note,omitempty"`
}

// ResourceSummary names one resource of the catalog and where it was
// declared.
type ResourceSummary struct {
	ID     string `json:"id"`
	Source string `json:"source"`
	Role   string `json:"role"`
}

// ResourceExplanation explains one resource: where it was declared and
// through what, where each attribute's value came from, and its edges.
type ResourceExplanation struct {
	ID     string `json:"id"`
	Source string `json:"source"`
	// Role is the role whose declaration (or use of a definition) made
	// the resource.
	Role       string `json:"role"`
	DeclaredAt string `json:"declared_at"`
	// Uses are the uses of definitions the resource came through,
	// outermost first.
	Uses []UseStep `json:"uses,omitempty"`
	// Element is the for_each element of the declaration that made it.
	Element *ElementOrigin `json:"element,omitempty"`
	// When is the condition that held for it.
	When *ConditionHeld `json:"when,omitempty"`
	// Tree names the directory whose source directory the resource's
	// file came from (a file of a source directory's tree).
	Tree       string            `json:"tree,omitempty"`
	Attributes []AttrExplanation `json:"attributes"`
	Edges      []EdgeExplanation `json:"edges"`
}

// UseStep is one use of a definition a resource came through.
type UseStep struct {
	Use        string `json:"use"` // "vhost:shop"
	At         string `json:"at"`
	Definition string `json:"definition"` // "defines/vhost.toml"
	Element    string `json:"element,omitempty"`
	// When is the use's condition, which held.
	When string `json:"when,omitempty"`
}

// ElementOrigin is the for_each element a resource was declared for.
type ElementOrigin struct {
	Key     any      `json:"key"`
	ForEach string   `json:"for_each"` // the expression, or "(written in place)"
	At      string   `json:"at"`
	From    []Origin `json:"from,omitempty"`
}

// ConditionHeld is a declaration's when, which held for the node.
type ConditionHeld struct {
	Condition string   `json:"condition"`
	At        string   `json:"at"`
	From      []Origin `json:"from,omitempty"`
}

// AttrExplanation says where one attribute's value came from.
type AttrExplanation struct {
	Name string `json:"name"`
	// Value is the attribute's value, SensitiveText for a sensitive one.
	Value     any  `json:"value"`
	Sensitive bool `json:"sensitive,omitempty"`
	// At is where the value (or what makes it) is written.
	At string `json:"at,omitempty"`
	// How is how the value was made: "written", "template",
	// "template file templates/NAME", "digest of files/NAME", …
	How string `json:"how"`
	// From is what its templates read, and where each of those was set.
	From []Origin `json:"from,omitempty"`
}

// Origin is one value a template (or a condition, or a for_each) read,
// and where it was set.
type Origin struct {
	Read string `json:"read"` // "params.port", "facts.os.family", "each.key"
	// Value is the value read; absent where it could hold a secret.
	Value any `json:"value,omitempty"`
	// Level is where the value comes from: a level of the data hierarchy
	// ("nodes/{node}"), "nodes.toml", "role defaults", "use of vhost:shop",
	// "default of vhost", "for_each", "facts", "node", "not set", …
	Level string `json:"level"`
	At    string `json:"at,omitempty"`
	// Overrides are the less specific places that set it too: overridden,
	// or merged under it for a table.
	Overrides []string `json:"overrides,omitempty"`
	// From is what a value written with a template itself read.
	From []Origin `json:"from,omitempty"`
}

// EdgeExplanation is one ordering edge of a resource, seen from it.
type EdgeExplanation struct {
	// Relation is "after" (the resource waits for Other) or "before"
	// (Other waits for it).
	Relation string `json:"relation"`
	Other    string `json:"other"`
	// Kind is require, before, notify, subscribe or implicit.
	Kind string `json:"kind"`
	// Refresh says a refresh crosses the edge: "refreshed by" Other's
	// change, or "refreshes" Other.
	Refresh string `json:"refresh,omitempty"`
	// DeclaredOn is the resource whose declaration (or whose use of a
	// definition) wrote the edge; At where.
	DeclaredOn string `json:"declared_on"`
	At         string `json:"at,omitempty"`
	Why        string `json:"why"`
}

// RolloutPosition is where a node stands in the rollout of site versions,
// as the server knows it.
type RolloutPosition struct {
	// Approved is the site version of the catalog the node is given now.
	Approved string `json:"approved"`
	// Pending is the version the node waits for, when a rollout has not
	// released it to the node yet.
	Pending string `json:"pending,omitempty"`
	ID      int64  `json:"id,omitempty"`
	Version string `json:"version,omitempty"`
	// State is the rollout's state: running, paused, halted, done, ….
	State string `json:"state,omitempty"`
	// Stage is the node's stage, by name and number (1 is the first).
	Stage      string `json:"stage,omitempty"`
	StageIndex int    `json:"stage_number,omitempty"`
	StageState string `json:"stage_state,omitempty"`
	// NodeState is the node's state in the rollout: pending, released,
	// healthy, failed, denied, ….
	NodeState string `json:"node_state,omitempty"`
	Decision  string `json:"decision,omitempty"`
}

// UnknownResourceError is Explain's answer for a resource that is not in
// the node's catalog.
type UnknownResourceError struct {
	Node, ID string
	// Near are the catalog's ids closest to ID.
	Near []string
}

func (e *UnknownResourceError) Error() string {
	msg := fmt.Sprintf("no resource %s in the catalog of node %s", e.ID, e.Node)
	if len(e.Near) > 0 {
		msg += " (near: " + strings.Join(e.Near, ", ") + ")"
	}
	return msg
}

// Explain compiles node's catalog as CompileWith does and says why it is
// what it is. With resource ("type:name") it explains that resource in
// full; without, it lists every resource. A resource not in the catalog is
// an *UnknownResourceError naming the nearest ones.
func (s *Site) Explain(node string, f facts.Facts, opts CompileOptions, resource string) (*Explanation, *Catalog, error) {
	if resource != "" {
		if err := checkRefShape(resource); err != nil {
			return nil, nil, err
		}
	}
	p := &provRecorder{facts: f, node: node, res: map[*built]*resProv{}}
	cat, c, err := s.compile(node, f, opts, p)
	if err != nil {
		return nil, nil, err
	}
	enc, err := cat.Encode()
	if err != nil {
		return nil, nil, err
	}
	ex := &Explanation{
		Node: node, Environment: cat.Environment, Version: cat.Version, Digest: Digest(enc),
		Rules: p.rules, Roles: p.roles,
	}
	for _, src := range p.srcs {
		ex.Hierarchy = append(ex.Hierarchy, LevelConsulted{Level: src.level, File: src.file, Note: src.note})
	}
	if resource == "" {
		ex.Resources = make([]ResourceSummary, 0, len(c.order))
		for _, b := range c.order {
			ex.Resources = append(ex.Resources, ResourceSummary{ID: b.res.ID, Source: b.res.Source, Role: p.res[b].role})
		}
		return ex, cat, nil
	}
	rb, ok := c.byID[resource]
	if !ok {
		ids := make([]string, 0, len(c.order))
		for _, b := range c.order {
			ids = append(ids, b.res.ID)
		}
		return nil, nil, &UnknownResourceError{Node: node, ID: resource, Near: nearIDs(ids, resource, 5)}
	}
	ex.Resource = p.explain(c, rb)
	return ex, cat, nil
}

// provRecorder is what a compile for Explain records.
type provRecorder struct {
	facts facts.Facts
	node  string
	srcs  []source // where the node's params come from, most specific first
	rules []RuleMatch
	roles []RoleOrigin
	role  string // the role whose declarations are being run
	scope provScope
	res   map[*built]*resProv
}

// provScope is what the declarations being run read their params and
// each from: the data hierarchy at the top of a role, a use's parameters
// inside a definition.
type provScope struct {
	params   map[string]Origin // nil at the top of a role
	each     *ElementOrigin
	eachSrc  *iteration
	uses     []UseStep
	useEdges []provEdge // the edges of the uses, which each of their resources gets
}

type provEdge struct {
	edge
	use string // the use that wrote it, "vhost:shop at roles/web.toml:47:1"
}

// resProv is what was recorded of one resource.
type resProv struct {
	role  string
	decl  Pos
	uses  []UseStep
	elem  *ElementOrigin
	when  *ConditionHeld
	tree  string
	attrs map[string]AttrExplanation
	edges []provEdge // declared on it, before uses of definitions expand
}

// classified records the rules of nodes.toml and the roles they gave.
func (p *provRecorder) classified(s *Site, node string, cls *classification) {
	for _, ru := range s.rules {
		m := RuleMatch{At: ru.pos.String(), Match: ru.match, Roles: ru.roles, Matched: slices.Contains(cls.rules, ru)}
		if ru.when != nil {
			m.When = ru.when.src
		}
		switch {
		case !ru.matchesName(node):
			m.Why = fmt.Sprintf("%s matches none of %s", node, strings.Join(ru.match, ", "))
		case ru.when != nil && !m.Matched:
			m.Why = "condition " + quoteShort(ru.when.src) + " is false"
		case len(ru.match) == 0 && ru.when == nil:
			m.Why = "no match or when: every node"
		case len(ru.match) == 0:
			m.Why = "condition " + quoteShort(ru.when.src) + " holds"
		default:
			g := ru.match[slices.IndexFunc(ru.match, func(g string) bool { return (&rule{match: []string{g}}).matchesName(node) })]
			m.Why = fmt.Sprintf("%s matches %q", node, g)
			if ru.when != nil {
				m.Why += " and condition " + quoteShort(ru.when.src) + " holds"
			}
		}
		p.rules = append(p.rules, m)
	}
	// The first place that named each role is where it came from, as
	// classify's walk adds it.
	seen := map[string]bool{}
	var add func(name, by string, at Pos, via string)
	add = func(name, by string, at Pos, via string) {
		if seen[name] {
			return
		}
		seen[name] = true
		ro := s.roles[name]
		for i, inc := range ro.includes {
			add(inc, "include", ro.incPos[i], "role "+name)
		}
		p.roles = append(p.roles, RoleOrigin{Role: name, File: ro.file, By: by, At: at.String(), Via: via})
	}
	for _, ru := range cls.rules {
		for i, name := range ru.roles {
			add(name, "rule", ru.rolePos[i], "rule at "+ru.pos.String())
		}
	}
}

// declared records b, just made from d in the current scope.
func (p *provRecorder) declared(c *compiler, d *decl, b *built) {
	rp := &resProv{role: p.role, decl: d.pos, uses: p.scope.uses, elem: p.scope.each, attrs: map[string]AttrExplanation{}}
	if d.when != nil {
		rp.when = &ConditionHeld{Condition: d.when.src, At: d.when.pos.String(), From: p.exprOrigins(c, d.when.src)}
	}
	own := b.edges[:len(b.edges)-len(c.useEdges)]
	for _, e := range own {
		rp.edges = append(rp.edges, provEdge{edge: e})
	}
	rp.edges = append(rp.edges, p.scope.useEdges...)
	for _, a := range d.attrs {
		if a.attr.Kind == KindRefs {
			continue
		}
		ae := AttrExplanation{Name: a.name, At: a.pos.String(), How: "written"}
		if a.dyn {
			ae.How = "template"
			ae.From = p.tstringsOrigins(c, a.tstrings())
		}
		rp.attrs[a.name] = ae
	}
	if tn, ok := p.templateOf(d); ok {
		ae := AttrExplanation{Name: "content", At: d.attrPos("template").String(), How: "template file templates/" + tn}
		ae.From = p.refsOrigins(c, c.site.render.fileRefs[tn])
		rp.attrs["content"] = ae
	}
	for _, k := range []string{"digest", "key_digest"} {
		src := "source"
		if k == "key_digest" {
			src = "key"
		}
		if f, ok := b.res.Attrs[src].(string); ok {
			rp.attrs[k] = AttrExplanation{Name: k, At: d.attrPos(src).String(), How: "digest of " + f}
		}
	}
	if len(p.scope.uses) > 0 {
		if ae, ok := rp.attrs["tags"]; ok || len(c.tags) > 0 {
			if !ok {
				ae = AttrExplanation{Name: "tags", At: p.scope.uses[0].At}
			}
			ae.How = "tags of the declaration and of its uses"
			rp.attrs["tags"] = ae
		}
	}
	p.res[b] = rp
}

// templateOf names the template file d renders into content.
func (p *provRecorder) templateOf(d *decl) (string, bool) {
	for _, a := range d.attrs {
		if a.name == "template" {
			if s, ok := a.static.(string); ok {
				return s, true
			}
		}
	}
	return "", false
}

// treeMember records nb, a file of top's source directory.
func (p *provRecorder) treeMember(d *decl, top, nb *built) {
	rp := &resProv{role: p.role, decl: d.pos, uses: p.scope.uses, elem: p.scope.each, tree: top.res.ID, attrs: map[string]AttrExplanation{}}
	for _, e := range nb.edges {
		rp.edges = append(rp.edges, provEdge{edge: e, use: "the source directory " + top.res.ID})
	}
	for k := range nb.res.Attrs {
		rp.attrs[k] = AttrExplanation{Name: k, At: d.attrPos("source").String(), How: "from the source directory of " + top.res.ID}
	}
	p.res[nb] = rp
}

// enterUse records the parameters of the use d of a definition, resolved
// in the scope around it, and makes them the scope of its declarations.
// It returns the scope to restore.
func (p *provRecorder) enterUse(c *compiler, d *decl, id, where string, edges []edge) provScope {
	saved := p.scope
	u := d.use
	params := map[string]Origin{}
	for _, up := range u.params {
		o := Origin{Level: "use of " + id, At: up.pos.String()}
		switch {
		case up.value != nil:
			o.From = p.tstringsOrigins(c, []tstring{*up.value})
		case up.list != nil:
			o.From = p.tstringsOrigins(c, up.list)
		default:
			o.Value = hideSecrets(up.static)
		}
		params[up.spec.name] = o
	}
	for k, ps := range u.def.params {
		if _, given := params[k]; !given && !ps.required {
			params[k] = Origin{Level: "default of " + u.def.name, At: ps.where(u.def), Value: hideSecrets(ps.def)}
		}
	}
	step := UseStep{Use: id, At: d.pos.String(), Definition: u.def.file}
	if d.when != nil {
		step.When = d.when.src
	}
	if saved.each != nil {
		step.Element = fmt.Sprintf("%v", saved.each.Key)
	}
	p.scope = provScope{params: params, uses: append(slices.Clip(saved.uses), step), useEdges: slices.Clip(saved.useEdges)}
	for _, e := range edges {
		p.scope.useEdges = append(p.scope.useEdges, provEdge{edge: e, use: "the use " + id + " at " + where})
	}
	return saved
}

// element records the for_each element e of d as the scope's each.
func (p *provRecorder) element(c *compiler, d *decl, e element) {
	if p.scope.eachSrc != d.forEach || p.scope.each == nil {
		p.scope.eachSrc = d.forEach
		p.scope.each = &ElementOrigin{ForEach: d.forEach.src, At: d.forEach.pos.String()}
		if d.forEach.src == "" {
			p.scope.each.ForEach = "(written in place)"
		} else {
			p.scope.each.From = p.exprOrigins(c, d.forEach.src)
		}
	}
	el := *p.scope.each
	el.Key = e.key
	p.scope.each = &el
}

// tstrings are the templated strings of a declaration's value.
func (a *declAttr) tstrings() []tstring {
	var out []tstring
	if a.value.dynamic() {
		out = append(out, a.value)
	}
	for _, ts := range a.list {
		if ts.dynamic() {
			out = append(out, ts)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(a.table)) {
		if ts := a.table[k]; ts.dynamic() {
			out = append(out, ts)
		}
	}
	return out
}

// tstringsOrigins resolves what the strings read in the current scope.
func (p *provRecorder) tstringsOrigins(c *compiler, tss []tstring) []Origin {
	var refs tmplRefs
	var out []Origin
	for _, ts := range tss {
		if ts.secret != nil {
			out = append(out, Origin{Read: "a secret written in place", Value: SensitiveText, Level: "secret", At: ts.secret.pos.String()})
			continue
		}
		r := c.site.render.inlineRefs[ts.name]
		refs.unknown = refs.unknown || r.unknown
		refs.paths = append(refs.paths, r.paths...)
	}
	return append(out, p.refsOrigins(c, refs)...)
}

// exprPath finds what a condition or a for_each expression reads.
var exprPath = regexp.MustCompile(`(?:^|[^.\w'"])((?:params|facts|each)(?:\.\w+)+|node|environment)\b`)

// exprOrigins resolves what an expression reads in the current scope.
func (p *provRecorder) exprOrigins(c *compiler, src string) []Origin {
	var refs tmplRefs
	for _, m := range exprPath.FindAllStringSubmatch(src, -1) {
		refs.paths = append(refs.paths, m[1])
	}
	return p.refsOrigins(c, refs)
}

// refsOrigins resolves every path of refs in the current scope.
func (p *provRecorder) refsOrigins(c *compiler, refs tmplRefs) []Origin {
	paths := slices.Clone(refs.paths)
	slices.Sort(paths)
	paths = slices.Compact(paths)
	var out []Origin
	for _, path := range paths {
		out = append(out, p.origin(c, path))
	}
	if refs.unknown {
		out = append(out, Origin{Read: ".", Level: "the whole context (passed on whole, or to another template): any param may matter"})
	}
	return out
}

// origin says where the value at path (as a template reads it: params.x,
// facts.os.family, each.key, node) came from in the current scope.
func (p *provRecorder) origin(c *compiler, path string) Origin {
	parts := strings.Split(path, ".")
	switch parts[0] {
	case "params":
		if p.scope.params == nil {
			return p.dataOrigin(c.site, path, parts[1:])
		}
		if len(parts) == 1 {
			return Origin{Read: path, Level: "every parameter of " + p.scope.uses[len(p.scope.uses)-1].Use}
		}
		o, ok := p.scope.params[parts[1]]
		if !ok {
			return Origin{Read: path, Level: "not set"}
		}
		o.Read = path
		if len(parts) > 2 {
			o.Value, _ = dig(map[string]any{"v": o.Value}, append([]string{"v"}, parts[2:]...))
		}
		return o
	case "facts":
		v, ok := p.facts.Lookup(strings.Join(parts[1:], "."))
		if !ok {
			return Origin{Read: path, Level: "facts", Value: "(not set)"}
		}
		return Origin{Read: path, Level: "facts", Value: v}
	case "node":
		return Origin{Read: path, Level: "node", Value: p.node}
	case "environment":
		return Origin{Read: path, Level: "herd.toml environment", Value: c.site.Settings.Environment}
	case "each":
		if p.scope.each == nil {
			return Origin{Read: path, Level: "not set"}
		}
		o := Origin{Read: path, Level: "for_each " + p.scope.each.ForEach, At: p.scope.each.At, From: p.scope.each.From}
		if path == "each.key" {
			o.Value = p.scope.each.Key
		}
		return o
	}
	return Origin{Read: path, Level: "a template variable"}
}

// dataOrigin finds the most specific place of the data hierarchy (or the
// role defaults) that sets the param key parts, as Lookup does.
func (p *provRecorder) dataOrigin(s *Site, path string, parts []string) Origin {
	o := Origin{Read: path, Level: "not set"}
	if len(parts) == 0 {
		o.Level = "every param"
		return o
	}
	var contributors []any
	for _, src := range p.srcs {
		if src.data == nil {
			continue
		}
		v, ok := dig(src.data, parts)
		if !ok {
			continue
		}
		at := s.keyPos(src, parts).String()
		if contributors == nil {
			o.Level, o.At = src.level, at
		} else {
			o.Overrides = append(o.Overrides, src.level+" at "+at)
		}
		contributors = append(contributors, v)
	}
	if contributors == nil {
		return o
	}
	o.Value = contributors[0]
	if _, isTable := o.Value.(map[string]any); isTable {
		merged := map[string]any{}
		for i := len(contributors) - 1; i >= 0; i-- {
			if m, ok := contributors[i].(map[string]any); ok {
				mergeInto(merged, m)
			} else {
				merged = map[string]any{}
			}
		}
		o.Value = merged
	}
	o.Value = hideSecrets(o.Value)
	return o
}

// hideSecrets is v with every secret in it shown as SensitiveText.
func hideSecrets(v any) any {
	switch v := v.(type) {
	case *secretRef:
		return SensitiveText
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			out[k] = hideSecrets(e)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = hideSecrets(e)
		}
		return out
	}
	return v
}

// hideOrigins is os with every value read shown as SensitiveText.
func hideOrigins(os []Origin) []Origin {
	if os == nil {
		return nil
	}
	out := make([]Origin, len(os))
	for i, o := range os {
		if o.Value != nil {
			o.Value = SensitiveText
		}
		o.From = hideOrigins(o.From)
		out[i] = o
	}
	return out
}

// explain builds the explanation of b from what was recorded.
func (p *provRecorder) explain(c *compiler, b *built) *ResourceExplanation {
	rp := p.res[b]
	re := &ResourceExplanation{ID: b.res.ID, Source: b.res.Source, Role: rp.role, DeclaredAt: rp.decl.String(),
		Uses: rp.uses, Element: rp.elem, When: rp.when, Tree: rp.tree}
	for _, k := range slices.Sorted(maps.Keys(b.res.Attrs)) {
		ae, ok := rp.attrs[k]
		if !ok {
			ae = AttrExplanation{Name: k, At: rp.decl.String(), How: "made by the compile"}
			switch {
			case k == "name" && (b.res.Type == "exec" || b.res.Type == "line" || b.res.Type == "ini"):
				ae.How = "named by what it runs or edits"
			case rp.tree == "" && (k == "recurse" || k == "ensure" || k == "mode"):
				ae.How = "a source directory's top"
				if src, ok := rp.attrs["source"]; ok {
					ae.At = src.At
				}
			}
		}
		ae.Value = b.res.Attrs[k]
		if _, sealed := ae.Value.(Sealed); sealed {
			// What it was made from would show it too: a password hash
			// in data is no secret, yet the attribute is sensitive.
			ae.Value, ae.Sensitive = SensitiveText, true
			ae.From = hideOrigins(ae.From)
		}
		re.Attributes = append(re.Attributes, ae)
	}
	re.Edges = p.edges(c, b)
	return re
}

// edges lists every edge that touches b, declared on it or on another
// resource, and its implicit ones, as the compile linked them.
func (p *provRecorder) edges(c *compiler, b *built) []EdgeExplanation {
	out := []EdgeExplanation{}
	self := b.res.ID
	for _, o := range c.order {
		rp := p.res[o]
		if rp == nil {
			continue
		}
		for _, e := range rp.edges {
			targets := []string{e.ref}
			why := e.kind + " at " + e.pos.String()
			if in, ok := c.instances[e.ref]; ok {
				targets = targets[:0]
				for _, m := range in.members {
					if m != o {
						targets = append(targets, m.res.ID)
					}
				}
				why += ", to every resource of the use " + e.ref + " at " + in.where
			}
			if e.use != "" {
				why += ", written on " + e.use
			}
			// A source directory's tree stands for all of it, as link
			// has it: what waits for its top waits for every file below,
			// and what its top is before waits for them too.
			if kids := c.trees[e.ref]; len(kids) > 0 && c.treeOf[o.res.ID] != e.ref && (e.kind == "require" || e.kind == "subscribe") && slices.Contains(kids, self) {
				out = append(out, edgeFrom(self, o.res.ID, self, e.kind, e.pos, why+", to every file of the source directory of "+e.ref))
			}
			if e.kind == "before" && c.treeOf[self] == o.res.ID {
				for _, t := range targets {
					ee := edgeFrom(self, self, t, e.kind, e.pos, why+", for every file of the source directory of "+o.res.ID)
					ee.DeclaredOn = o.res.ID
					out = append(out, ee)
				}
			}
			for _, t := range targets {
				if o != b && t != self {
					continue
				}
				out = append(out, edgeFrom(self, o.res.ID, t, e.kind, e.pos, why))
			}
		}
		if o != b {
			for _, e := range o.edges {
				if e.ref == self && strings.HasPrefix(e.kind, "implicit ") {
					out = append(out, edgeFrom(self, o.res.ID, e.ref, "implicit", e.pos, strings.TrimPrefix(e.kind, "implicit ")+" (implicit)"))
				}
			}
		}
	}
	for _, e := range b.edges {
		if strings.HasPrefix(e.kind, "implicit ") {
			out = append(out, edgeFrom(self, self, e.ref, "implicit", e.pos, strings.TrimPrefix(e.kind, "implicit ")+" (implicit)"))
		}
	}
	slices.SortStableFunc(out, func(a, b EdgeExplanation) int {
		return strings.Compare(a.Relation+" "+a.Other, b.Relation+" "+b.Other)
	})
	return out
}

// edgeFrom is the edge declarer → target of kind, seen from self.
func edgeFrom(self, declarer, target, kind string, at Pos, why string) EdgeExplanation {
	waiter, waited := declarer, target
	if kind == "before" || kind == "notify" {
		waiter, waited = target, declarer
	}
	e := EdgeExplanation{Kind: kind, DeclaredOn: declarer, Why: why}
	if kind != "implicit" {
		e.At = at.String()
	}
	if self == waiter {
		e.Relation, e.Other = "after", waited
	} else {
		e.Relation, e.Other = "before", waiter
	}
	if kind == "notify" || kind == "subscribe" {
		if self == waiter {
			e.Refresh = "refreshed by"
		} else {
			e.Refresh = "refreshes"
		}
	}
	return e
}

// nearIDs returns up to n of ids closest to want: the same type first,
// then by edit distance.
func nearIDs(ids []string, want string, n int) []string {
	typ, name, _ := SplitID(want)
	type cand struct {
		id   string
		dist int
	}
	var cs []cand
	for _, id := range ids {
		t, nm, _ := SplitID(id)
		d := editDistance(nm, name)
		if strings.Contains(nm, name) || strings.Contains(name, nm) {
			d = min(d, abs(len(nm)-len(name)))
		}
		if t != typ {
			d += 3
		}
		if d <= max(3, len(name)/2) {
			cs = append(cs, cand{id, d})
		}
	}
	slices.SortStableFunc(cs, func(a, b cand) int {
		if a.dist != b.dist {
			return a.dist - b.dist
		}
		return strings.Compare(a.id, b.id)
	})
	var out []string
	for i := 0; i < len(cs) && i < n; i++ {
		out = append(out, cs[i].id)
	}
	return out
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
