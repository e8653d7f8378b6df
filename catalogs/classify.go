package catalogs

import (
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/herdcm/herd/facts"
)

// rule is one [[node]] table of nodes.toml. A rule matches a node when its
// name matches one of the globs (or no glob is given) and its condition
// holds (or none is given). Every matching rule contributes roles and
// params, in file order; a later rule's params win over an earlier's.
type rule struct {
	pos     Pos
	match   []string
	when    *condition
	roles   []string
	rolePos []Pos
	params  map[string]any
	path    string // key path of the rule, "node[2]"
	// env is the rule's `environment`: the server places a matching node
	// in that environment (the last matching rule that names one wins).
	env string
}

func (l *loader) loadNodes() {
	const file = "nodes.toml"
	if _, ok := l.contents[file]; !ok {
		l.diags.add(Pos{File: file}, "a site needs nodes.toml: it says which roles apply to which nodes")
		return
	}
	doc := l.parse(file)
	if doc == nil {
		return
	}
	l.site.nodes = doc
	r := reader{doc: doc, diags: &l.diags}
	r.known("", "node")
	for i := range r.tables("node") {
		p := fmt.Sprintf("node[%d]", i)
		r.known(p, "match", "when", "roles", "params", "environment")
		ru := &rule{pos: doc.posOf(p), path: p}
		if m, ok := r.strs(p + ".match"); ok {
			for j, g := range m {
				if _, err := path.Match(g, ""); err != nil {
					r.bad(fmt.Sprintf("%s.match[%d]", p, j), "bad glob %q: %v", g, err)
				}
			}
			ru.match = m
		}
		if src, ok := r.str(p + ".when"); ok {
			c, err := compileCondition(src, doc.posOf(p+".when"))
			if err != nil {
				l.diags = append(l.diags, err.(Diagnostic))
			}
			ru.when = c
		}
		if env, ok := r.str(p + ".environment"); ok {
			if !validName(env) {
				r.bad(p+".environment", "environment %q: want letters, digits, '-', '_' or '.'", env)
			}
			ru.env = env
		}
		roles, ok := r.strs(p + ".roles")
		if !ok {
			if _, set := r.get(p + ".roles"); !set {
				r.bad(p, "rule: missing roles = [\"…\"]")
			}
		}
		for j, name := range roles {
			rp := doc.posOf(fmt.Sprintf("%s.roles[%d]", p, j))
			if _, known := l.site.roles[name]; !known && !l.unparsed["roles/"+name+".toml"] {
				l.diags.add(rp, "roles: no role %q (no file roles/%s.toml; want one of: %s)", name, name, strings.Join(l.roleNames(), ", "))
			}
			ru.roles = append(ru.roles, name)
			ru.rolePos = append(ru.rolePos, rp)
		}
		if r.table(p + ".params") {
			v, _ := r.get(p + ".params")
			ru.params = v.(map[string]any)
		}
		l.site.rules = append(l.site.rules, ru)
	}
	if len(l.site.rules) == 0 {
		l.diags.add(Pos{File: file, Line: 1}, "nodes.toml has no [[node]] rule, so no node has a role")
	}
}

// classification is what nodes.toml says of one node.
type classification struct {
	rules []*rule
	roles []string // every role, includes before their includers, once each
}

// classify matches node against the rules and expands role includes.
func (s *Site) classify(node string, env map[string]any) (*classification, error) {
	c := &classification{}
	var diags Diagnostics
	seen := map[string]bool{}
	var add func(name string)
	add = func(name string) {
		if seen[name] {
			return
		}
		seen[name] = true
		ro := s.roles[name]
		for _, inc := range ro.includes {
			add(inc)
		}
		c.roles = append(c.roles, name)
	}
	for _, ru := range s.rules {
		if !ru.matchesName(node) {
			continue
		}
		if ru.when != nil {
			ok, err := ru.when.eval(env)
			if err != nil {
				diags = append(diags, err.(Diagnostic))
				continue
			}
			if !ok {
				continue
			}
		}
		c.rules = append(c.rules, ru)
		for _, name := range ru.roles {
			add(name)
		}
	}
	if len(diags) > 0 {
		return nil, diags.err()
	}
	if len(c.rules) == 0 {
		return nil, Diagnostics{{Pos: Pos{File: "nodes.toml"}, Msg: fmt.Sprintf("node %q matches no rule in nodes.toml (add a rule with match = %q, or a catch-all rule without match)", node, node)}}
	}
	return c, nil
}

// NodeEnvironment says which environment nodes.toml puts node in: the
// `environment` of the last matching rule that names one, "" when none
// does. A server serving environments asks its default environment's
// site, so that classification (like Puppet's ENC) wins over what the
// agent asks for. The rules are matched as compile matches them, without
// requiring a match: a node no rule matches simply has no environment
// from classification.
func (s *Site) NodeEnvironment(node string, f facts.Facts) (string, error) {
	env := compileEnv(node, s.Settings.Environment, f, nil)
	out := ""
	var diags Diagnostics
	for _, ru := range s.rules {
		if ru.env == "" || !ru.matchesName(node) {
			continue
		}
		if ru.when != nil {
			ok, err := ru.when.eval(env)
			if err != nil {
				diags = append(diags, err.(Diagnostic))
				continue
			}
			if !ok {
				continue
			}
		}
		out = ru.env
	}
	if len(diags) > 0 {
		return "", diags.err()
	}
	return out, nil
}

func (ru *rule) matchesName(node string) bool {
	if len(ru.match) == 0 {
		return true
	}
	return slices.ContainsFunc(ru.match, func(g string) bool {
		ok, _ := path.Match(g, node)
		return ok
	})
}
