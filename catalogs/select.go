package catalogs

import (
	"fmt"
	"slices"
	"strings"
)

// Tags returns the resource's tags, sorted: its own tags attribute (with
// the tags of the definition uses it came from), the role that declared
// it and every definition it came through. The last two are read from
// Source ("roles/web.toml:40 via defines/vhost.toml:12" gives web and
// vhost), as Puppet tags a resource with its class: the catalog need not
// repeat them on every resource.
func (r *Resource) Tags() []string {
	tags := slices.Clone(r.Strings("tags"))
	for part := range strings.SplitSeq(r.Source, " via ") {
		if i := strings.LastIndexByte(part, ':'); i >= 0 {
			part = part[:i]
		}
		for _, dir := range []string{"roles/", "defines/"} {
			if name, ok := strings.CutPrefix(part, dir); ok {
				tags = append(tags, strings.TrimSuffix(name, ".toml"))
			}
		}
	}
	return sortedSet(tags)
}

// validTag reports whether t can be a tag: a name, or a role's name
// with its directories (profiles/web).
func validTag(t string) bool {
	for part := range strings.SplitSeq(t, "/") {
		if !validName(part) {
			return false
		}
	}
	return true
}

// Selection is what a partial run converges: the resources that carry one
// of Tags or are named in Only ("type:name"), with everything they require.
// The zero Selection is the whole catalog.
type Selection struct {
	Tags []string
	Only []string
}

// Empty reports whether s selects the whole catalog.
func (s Selection) Empty() bool { return len(s.Tags) == 0 && len(s.Only) == 0 }

// String describes s for logs and reports: "tags web,tls; only file:/etc/motd".
func (s Selection) String() string {
	var parts []string
	if len(s.Tags) > 0 {
		parts = append(parts, "tags "+strings.Join(s.Tags, ","))
	}
	if len(s.Only) > 0 {
		parts = append(parts, "only "+strings.Join(s.Only, ","))
	}
	return strings.Join(parts, "; ")
}

// ParseSelection reads --tags values (each may list several, comma
// separated) and --only values (resource ids), checking their shape.
func ParseSelection(tags, only []string) (Selection, error) {
	var s Selection
	for _, v := range tags {
		for t := range strings.SplitSeq(v, ",") {
			t = strings.TrimSpace(t)
			if t == "" {
				continue
			}
			if !validTag(t) {
				return Selection{}, fmt.Errorf("--tags %q: a tag is letters, digits, _ - and . (a role's may have /)", t)
			}
			s.Tags = append(s.Tags, t)
		}
	}
	for _, v := range only {
		for id := range strings.SplitSeq(v, ",") {
			id = strings.TrimSpace(id)
			if id == "" {
				continue
			}
			if _, _, ok := SplitID(id); !ok {
				return Selection{}, fmt.Errorf("--only %q: want a resource as type:name, such as file:/etc/motd", id)
			}
			s.Only = append(s.Only, id)
		}
	}
	s.Tags, s.Only = sortedSet(s.Tags), sortedSet(s.Only)
	return s, nil
}

// Select returns the part of c that sel picks: the selected resources and
// the closure of what they require, so that a partial run never applies a
// resource before what it depends on. Refreshes of resources left out are
// dropped. A tag no resource carries, or an --only resource the catalog
// lacks, is an error: a typo must not make a run that does nothing.
func (c *Catalog) Select(sel Selection) (*Catalog, error) {
	if sel.Empty() {
		return c, nil
	}
	byID := make(map[string]*Resource, len(c.Resources))
	for i := range c.Resources {
		byID[c.Resources[i].ID] = &c.Resources[i]
	}
	picked := map[string]bool{}
	var queue []string
	pick := func(id string) {
		if !picked[id] {
			picked[id] = true
			queue = append(queue, id)
		}
	}
	for _, id := range sel.Only {
		if _, ok := byID[id]; !ok {
			return nil, fmt.Errorf("--only %s: no such resource in the catalog of %s", id, c.Node)
		}
		pick(id)
	}
	seen := map[string]bool{}
	for i := range c.Resources {
		for _, t := range c.Resources[i].Tags() {
			if slices.Contains(sel.Tags, t) {
				seen[t] = true
				pick(c.Resources[i].ID)
			}
		}
	}
	for _, t := range sel.Tags {
		if !seen[t] {
			return nil, fmt.Errorf("--tags %s: no resource in the catalog of %s carries that tag", t, c.Node)
		}
	}
	for len(queue) > 0 {
		id := queue[0]
		queue = queue[1:]
		if r, ok := byID[id]; ok {
			for _, dep := range r.Require {
				pick(dep)
			}
		}
	}
	out := &Catalog{Environment: c.Environment, Node: c.Node, Version: c.Version}
	digests := map[string]bool{}
	for _, r := range c.Resources {
		if !picked[r.ID] {
			continue
		}
		if len(r.Notify) > 0 {
			r.Notify = slices.DeleteFunc(slices.Clone(r.Notify), func(id string) bool { return !picked[id] })
			if len(r.Notify) == 0 {
				r.Notify = nil
			}
		}
		if d := r.String("digest"); d != "" {
			digests[d] = true
		}
		out.Resources = append(out.Resources, r)
	}
	for _, f := range c.Files {
		if digests[f.Digest] {
			out.Files = append(out.Files, f)
		}
	}
	return out, nil
}
