package catalogs

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"text/template/parse"
)

// How a secret's taint spreads. A secret is opened only at compile, into
// the compile's context. Every render that could read one (any render of
// a node whose params hold a secret, or one that called the template
// function secret or named an "age:" value) runs twice: with the plain
// values and with decoys, values that differ from the plain one in length
// and in every byte. An attribute whose rendering differs depends on a
// secret and is sealed whole to the node. This follows the value through
// params, data lookups, {{ }} templates, template files and every template
// function (a length, a slice, a comparison all differ) without an unwrap
// step for an author to forget, and costs nothing for a site without
// secrets.

// decoyOf is a stand-in for plain that differs from it in length and at
// every byte.
func decoyOf(plain string) string {
	b := make([]byte, len(plain)+7)
	for i := range b {
		b[i] = '#'
		if i < len(plain) && plain[i] == '#' {
			b[i] = '%'
		}
	}
	return string(b)
}

// openSecret opens r for the render under way: its plain value, or its
// decoy in a decoy render.
func (c *compiler) openSecret(r *secretRef) (string, error) {
	var plain string
	switch {
	case c.opts.Placeholders:
		plain = SensitiveText
	case c.opts.Secrets == nil:
		return "", Diagnostic{Pos: r.pos, Msg: fmt.Sprintf("secret %s: no secrets key to open it (the server's secrets key; herd apply --secrets-key FILE)", r.key)}
	default:
		p, err := c.opts.Secrets.Open(r.ct)
		if err != nil {
			return "", Diagnostic{Pos: r.pos, Msg: fmt.Sprintf("secret %s: %v", r.key, err)}
		}
		plain = p
	}
	if c.decoy {
		return decoyOf(plain), nil
	}
	c.opened++
	c.scrub = append(c.scrub, plain)
	return plain, nil
}

// secretFile is the template function secret "NAME".
func (c *compiler) secretFile(name string) (string, error) {
	r, ok := c.site.secretFiles[name]
	if !ok {
		return "", fmt.Errorf("secret %q: no file secrets/%s.age", name, name)
	}
	v, err := c.openSecret(r)
	if d, ok := err.(Diagnostic); ok {
		// The template's own position comes first in the message.
		return "", fmt.Errorf("%s (%s)", d.Msg, d.Pos)
	}
	return v, err
}

// resolveSecrets opens every secret in a params value: plain and decoy are
// copies holding the plain values and the decoys, sharing what holds no
// secret; found says there was one.
func (c *compiler) resolveSecrets(path string, v any) (plain, decoy any, found bool) {
	switch v := v.(type) {
	case *secretRef:
		p, err := c.openSecret(v)
		if err != nil {
			c.diags = append(c.diags, err.(Diagnostic))
		}
		c.opened-- // opened for the context, not by a render
		c.secretPaths = append(c.secretPaths, path)
		return p, decoyOf(p), true
	case map[string]any:
		var pm, dm map[string]any
		for k, e := range v {
			p, d, f := c.resolveSecrets(path+"."+k, e)
			if !f {
				continue
			}
			if pm == nil {
				pm, dm = maps.Clone(v), maps.Clone(v)
			}
			pm[k], dm[k] = p, d
		}
		if pm == nil {
			return v, v, false
		}
		return pm, dm, true
	case []any:
		var pl, dl []any
		for i, e := range v {
			// A list element is read by index, not by field: the
			// list stands for it.
			p, d, f := c.resolveSecrets(path, e)
			if !f {
				continue
			}
			if pl == nil {
				pl, dl = slices.Clone(v), slices.Clone(v)
			}
			pl[i], dl[i] = p, d
		}
		if pl == nil {
			return v, v, false
		}
		return pl, dl, true
	}
	return v, v, false
}

// tracked runs render and, when a secret may have reached it (it opened
// one, or mayRead says it may read a secret param), runs it again with
// decoys: tainted says the two differ (or the decoy render failed where the
// plain one did not).
func (c *compiler) tracked(mayRead bool, render func() (any, error)) (v any, tainted bool, err error) {
	var alt any
	opened := c.opened
	if v, err = render(); err != nil || !c.tracking {
		return v, false, err
	}
	if !mayRead && c.opened == opened {
		return v, false, nil
	}
	defer func() {
		if tainted {
			c.scrub = appendTainted(c.scrub, v, alt)
		}
	}()
	ctx := c.ctx
	if c.decoyCtx != nil {
		c.ctx = c.decoyCtx
	}
	c.decoy = true
	var derr error
	alt, derr = render()
	c.ctx, c.decoy = ctx, false
	return v, derr != nil || !sameRendered(v, alt), nil
}

func sameRendered(a, b any) bool {
	switch a := a.(type) {
	case string:
		bs, ok := b.(string)
		return ok && a == bs
	case []string:
		bl, ok := b.([]string)
		return ok && slices.Equal(a, bl)
	case map[string]string:
		bm, ok := b.(map[string]string)
		return ok && maps.Equal(a, bm)
	}
	return false
}

// mayBeSecret reports whether attribute a of d may depend on a secret,
// recording why not when it may not.
func (c *compiler) mayBeSecret(d *decl, a *declAttr) bool {
	s := d.schema
	why := ""
	switch {
	case a.attr.Command:
		c.diags.add(a.pos, "%s: a secret in a command line is visible to every user of the host (in /proc and ps): pass it by environment (env) or standard input (exec stdin) instead", a.name)
		return false
	case a.name == s.Key:
		why = "it names the resource in every report, event and diff"
	case a.attr.Kind == KindRefs:
		why = "it is an edge of the graph every report shows"
	case a.name == "ignore", a.name == "audit", a.name == "template", a.name == "source", a.name == "ensure", a.name == "provider":
		why = "it decides what the resource is, which every report shows"
	}
	if why != "" {
		c.diags.add(a.pos, "%s cannot come from a secret: %s", a.name, why)
		return false
	}
	return true
}

// sensitiveAttrs names the attributes of s that are sensitive by nature.
func sensitiveAttrs(s *Schema) []string {
	var out []string
	for _, a := range s.Attrs {
		if a.Sensitive {
			out = append(out, a.Name)
		}
		for _, sub := range a.Sub {
			if sub.Sensitive {
				out = append(out, a.Name+"."+sub.Name)
			}
		}
	}
	return out
}

// seal replaces every tainted or sensitive attribute's value with its
// Sealed form, sealed to the node's key.
func (c *compiler) seal() {
	for _, b := range c.order {
		names := b.tainted
		if s := Schemas[b.res.Type]; s != nil {
			names = append(names, sensitiveAttrs(s)...)
		}
		if len(names) == 0 {
			continue
		}
		slices.Sort(names)
		names = slices.Compact(names)
		for _, n := range names {
			v, ok := b.res.Attrs[n]
			if !ok {
				continue
			}
			switch {
			case c.opts.Placeholders:
				b.res.Attrs[n] = Sealed{}
			case c.opts.Seal == nil:
				c.diags.add(b.pos, "%s: %s is sensitive and there is no key to seal it with (the server's secrets key; herd apply --secrets-key FILE)", b.res.ID, n)
			case c.opts.NodeKey == nil:
				c.diags.add(b.pos, "%s: %s is sensitive, and node %s has no sealing key to seal it to: the node's agent sends one when it enrolls or renews its certificate (herd-agent renew)", b.res.ID, n, c.ctx["node"])
				return
			default:
				var sv Sealed
				var err error
				if k := c.opts.Secrets; k != nil && k.seal == c.opts.Seal {
					sv, err = k.sealTo(c.opts.NodeKey, v)
				} else {
					sv, err = c.opts.Seal.Seal(c.opts.NodeKey, v)
				}
				if err != nil {
					c.diags.add(b.pos, "%s: sealing %s: %v", b.res.ID, n, err)
					continue
				}
				b.res.Attrs[n] = sv
			}
		}
	}
}

// tmplRefs is what a template reads of its context, found in its parse
// tree, so that a render that cannot reach a secret runs once. paths are
// the field chains it reads from the root; what it reads inside a range or
// with body, through a variable or a chain, derives from a pipeline whose
// fields are recorded. unknown is set when it reads in a way not followed
// (the root itself passed on, as in toJSON ., or a call of another
// template, whose root is another value): such a template is tracked
// whenever the node has a secret.
type tmplRefs struct {
	unknown bool
	paths   []string // dotted field chains from the root: "params.db.password"
}

func treeRefs(root parse.Node) tmplRefs {
	var r tmplRefs
	var walk func(n parse.Node, rel bool)
	walk = func(n parse.Node, rel bool) {
		if r.unknown || n == nil {
			return
		}
		switch n := n.(type) {
		case *parse.ListNode:
			if n == nil {
				return
			}
			for _, c := range n.Nodes {
				walk(c, rel)
			}
		case *parse.ActionNode:
			walk(n.Pipe, rel)
		case *parse.PipeNode:
			if n == nil {
				return
			}
			for _, c := range n.Cmds {
				walk(c, rel)
			}
		case *parse.CommandNode:
			for _, a := range n.Args {
				walk(a, rel)
			}
		case *parse.FieldNode:
			if !rel {
				r.paths = append(r.paths, strings.Join(n.Ident, "."))
			}
		case *parse.DotNode:
			if !rel {
				r.unknown = true
			}
		case *parse.VariableNode:
			switch {
			case n.Ident[0] != "$":
				// Declared from a pipeline walked already.
			case len(n.Ident) > 1:
				r.paths = append(r.paths, strings.Join(n.Ident[1:], "."))
			default:
				r.unknown = true
			}
		case *parse.ChainNode:
			walk(n.Node, rel)
		case *parse.IfNode:
			walk(n.Pipe, rel)
			walk(n.List, rel)
			walk(n.ElseList, rel)
		case *parse.RangeNode:
			walk(n.Pipe, rel)
			walk(n.List, true)
			walk(n.ElseList, rel)
		case *parse.WithNode:
			walk(n.Pipe, rel)
			walk(n.List, true)
			walk(n.ElseList, rel)
		case *parse.IdentifierNode, *parse.StringNode, *parse.NumberNode, *parse.BoolNode,
			*parse.NilNode, *parse.TextNode, *parse.CommentNode, *parse.BreakNode, *parse.ContinueNode:
		default: // template calls
			r.unknown = true
		}
	}
	walk(root, false)
	return r
}

// refsOf analyses every template of t into refs, by name.
func refsOf(t *template.Template, refs map[string]tmplRefs) {
	for _, tm := range t.Templates() {
		if tm.Tree != nil && tm.Tree.Root != nil {
			refs[tm.Name()] = treeRefs(tm.Tree.Root)
		}
	}
}

// mayRead reports whether a render of the template named name (in refs)
// may read one of the node's secret params.
func (c *compiler) mayRead(refs map[string]tmplRefs, name string) bool {
	if c.decoyCtx == nil {
		return false
	}
	r, ok := refs[name]
	if !ok || r.unknown {
		return true
	}
	for _, p := range r.paths {
		for _, s := range c.secretPaths {
			if related(s, p) {
				return true
			}
		}
	}
	return false
}

// related reports whether one dotted path is the other or under it.
func related(a, b string) bool {
	if len(a) < len(b) {
		a, b = b, a
	}
	return a[:len(b)] == b && (len(a) == len(b) || a[len(b)] == '.')
}

// attrMayRead is mayRead for every template of a declaration's value.
func (c *compiler) attrMayRead(a *declAttr) bool {
	if c.decoyCtx == nil {
		return false
	}
	refs := c.site.render.inlineRefs
	if a.value.name != "" && c.mayRead(refs, a.value.name) {
		return true
	}
	for _, ts := range a.list {
		if ts.name != "" && c.mayRead(refs, ts.name) {
			return true
		}
	}
	for _, ts := range a.table {
		if ts.name != "" && c.mayRead(refs, ts.name) {
			return true
		}
	}
	return false
}

// appendTainted adds to scrub the strings of a rendered value v that
// differ from its decoy rendering alt: those that depend on a secret.
func appendTainted(scrub []string, v, alt any) []string {
	switch v := v.(type) {
	case string:
		if s, ok := alt.(string); !ok || s != v {
			scrub = append(scrub, v)
		}
	case []string:
		a, _ := alt.([]string)
		for i, e := range v {
			if len(a) != len(v) || a[i] != e {
				scrub = append(scrub, e)
			}
		}
	case map[string]string:
		a, _ := alt.(map[string]string)
		for k, e := range v {
			if ae, ok := a[k]; !ok || ae != e {
				scrub = append(scrub, e)
			}
		}
	}
	return scrub
}

// scrubDiags replaces every plain value a diagnostic's message quotes
// (as is, or escaped as %q quotes it) with (sensitive).
func (c *compiler) scrubDiags() {
	if len(c.scrub) == 0 {
		return
	}
	// Longest first, so that a value containing another goes whole.
	slices.SortFunc(c.scrub, func(a, b string) int { return len(b) - len(a) })
	for i := range c.diags {
		msg := c.diags[i].Msg
		for _, v := range c.scrub {
			if v == "" {
				continue
			}
			msg = strings.ReplaceAll(msg, v, SensitiveText)
			if q := strconv.Quote(v); q[1:len(q)-1] != v {
				msg = strings.ReplaceAll(msg, q[1:len(q)-1], SensitiveText)
			}
		}
		c.diags[i].Msg = msg
	}
}
