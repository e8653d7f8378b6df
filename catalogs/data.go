package catalogs

import (
	"fmt"
	"strings"

	"github.com/herdcm/herd/facts"
)

func (l *loader) loadData() {
	for _, rel := range l.filesUnder("data", ".toml") {
		if doc := l.parse(rel); doc != nil {
			l.site.data[strings.TrimSuffix(strings.TrimPrefix(rel, "data/"), ".toml")] = doc
		}
	}
}

// source is one place a node's params can come from: a data file of the
// hierarchy, a classification rule's params or a role's defaults.
type source struct {
	level  string         // the hierarchy level as written, or "role defaults"
	file   string         // the file it reads, "data/os/debian.toml"
	doc    *tomlDoc       // nil when the file does not exist
	prefix string         // key path of the params inside doc, "" for data files
	data   map[string]any // the params it gives
	note   string         // why it gives nothing, when it does not
}

// sources lists where node's params come from, most specific first: the
// hierarchy of herd.toml, then the defaults of its roles (an including role's
// defaults win over the included role's).
func (s *Site) sources(node string, cls *classification, f facts.Facts) []source {
	var out []source
	for _, level := range s.Settings.Hierarchy {
		if level == "nodes.toml" {
			for i := len(cls.rules) - 1; i >= 0; i-- {
				ru := cls.rules[i]
				src := source{level: level, file: "nodes.toml", prefix: ru.path + ".params", data: ru.params}
				if src.data == nil {
					src.note = fmt.Sprintf("rule at %s sets no params", ru.pos)
				}
				out = append(out, src)
			}
			continue
		}
		for _, p := range s.expandLevel(level, node, cls, f) {
			src := source{level: level, file: "data/" + p.path + ".toml", note: p.note}
			if p.note == "" {
				if doc, ok := s.data[p.path]; ok {
					src.doc, src.data = doc, doc.data
				} else {
					src.note = "no such file"
				}
			}
			out = append(out, src)
		}
	}
	for i := len(cls.roles) - 1; i >= 0; i-- {
		ro := s.roles[cls.roles[i]]
		src := source{level: "role defaults", file: ro.file, doc: ro.doc, prefix: "params", data: ro.params}
		if len(ro.params) == 0 {
			src.note = "no [params]"
		}
		out = append(out, src)
	}
	return out
}

type levelPath struct {
	path string
	note string // set when the level does not apply to this node
}

// expandLevel interpolates one hierarchy level for node. {role} yields one
// path per role, the most specific (last classified) first.
func (s *Site) expandLevel(level, node string, cls *classification, f facts.Facts) []levelPath {
	if strings.Contains(level, "{role}") {
		var out []levelPath
		for i := len(cls.roles) - 1; i >= 0; i-- {
			out = append(out, s.expandLevel(strings.ReplaceAll(level, "{role}", cls.roles[i]), node, cls, f)...)
		}
		return out
	}
	var b strings.Builder
	rest := level
	for {
		i := strings.IndexByte(rest, '{')
		if i < 0 {
			b.WriteString(rest)
			break
		}
		b.WriteString(rest[:i])
		j := strings.IndexByte(rest, '}')
		name := rest[i+1 : j]
		rest = rest[j+1:]
		switch {
		case name == "node":
			b.WriteString(node)
		case name == "environment":
			b.WriteString(s.Settings.Environment)
		case strings.HasPrefix(name, "facts."):
			v, ok := f.Lookup(strings.TrimPrefix(name, "facts."))
			str, isScalar := scalarString(v)
			if !ok || !isScalar || str == "" || strings.ContainsAny(str, "/\\") || str == ".." {
				return []levelPath{{path: level, note: fmt.Sprintf("fact %s is missing or not a plain value", strings.TrimPrefix(name, "facts."))}}
			}
			b.WriteString(str)
		}
	}
	return []levelPath{{path: b.String()}}
}

func scalarString(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return v, true
	case bool, int, int64, float64:
		return fmt.Sprint(v), true
	}
	return "", false
}

// mergeParams folds sources (most specific first) into one params table:
// the most specific value wins per key and tables merge key by key. Source
// data is never modified; merged tables are fresh maps.
func mergeParams(srcs []source) map[string]any {
	out := map[string]any{}
	for i := len(srcs) - 1; i >= 0; i-- {
		mergeInto(out, srcs[i].data)
	}
	return out
}

func mergeInto(dst, src map[string]any) {
	for k, v := range src {
		if vm, ok := v.(map[string]any); ok {
			if dm, ok := dst[k].(map[string]any); ok {
				merged := make(map[string]any, len(dm)+len(vm))
				for dk, dv := range dm {
					merged[dk] = dv
				}
				mergeInto(merged, vm)
				dst[k] = merged
				continue
			}
		}
		dst[k] = v
	}
}

// LookupStep is one level consulted by Lookup.
type LookupStep struct {
	Level string // the hierarchy level as written, or "role defaults"
	File  string // the file read
	Pos   Pos    // where the key is set, when Found
	Found bool
	Value any
	Note  string // why the level gave nothing, when it did not
}

// LookupResult explains a param's value for one node.
type LookupResult struct {
	Key   string
	Found bool
	Value any          // the merged value the node gets
	Steps []LookupStep // every level consulted, most specific first
	Won   int          // index in Steps of the value that won (for a table, the most specific contributor); -1 when not found
}

// Lookup resolves the dotted param key for node with facts f, saying which
// levels were consulted and which one won.
func (s *Site) Lookup(node string, f facts.Facts, key string) (*LookupResult, error) {
	if err := ValidNodeName(node); err != nil {
		return nil, err
	}
	env := compileEnv(node, s.Settings.Environment, f, nil)
	cls, err := s.classify(node, env)
	if err != nil {
		return nil, err
	}
	srcs := s.sources(node, cls, f)
	res := &LookupResult{Key: key, Won: -1}
	parts := strings.Split(key, ".")
	var contributors []any
	for _, src := range srcs {
		st := LookupStep{Level: src.level, File: src.file, Note: src.note}
		if src.data != nil {
			if v, ok := dig(src.data, parts); ok {
				st.Found, st.Value = true, v
				st.Pos = s.keyPos(src, parts)
				if res.Won < 0 {
					res.Won = len(res.Steps)
				}
				contributors = append(contributors, v)
			} else if st.Note == "" {
				st.Note = "key not set"
			}
		}
		res.Steps = append(res.Steps, st)
	}
	if res.Won < 0 {
		return res, nil
	}
	res.Found = true
	res.Value = contributors[0]
	if _, isTable := res.Value.(map[string]any); isTable {
		merged := map[string]any{}
		for i := len(contributors) - 1; i >= 0; i-- {
			if m, ok := contributors[i].(map[string]any); ok {
				mergeInto(merged, m)
			} else {
				merged = map[string]any{}
			}
		}
		res.Value = merged
	}
	return res, nil
}

// keyPos is where src sets the param key parts.
func (s *Site) keyPos(src source, parts []string) Pos {
	kp := src.prefix
	for _, part := range parts {
		kp = joinKey(kp, part)
	}
	doc := src.doc
	if doc == nil {
		doc = s.nodes // a classification rule's params
	}
	return doc.posOf(kp)
}

func dig(m map[string]any, parts []string) (any, bool) {
	var cur any = m
	for _, p := range parts {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		cur, ok = mm[p]
		if !ok {
			return nil, false
		}
	}
	return cur, true
}
