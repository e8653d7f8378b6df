package catalogs

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// reader reads typed values out of a tomlDoc by key path, recording a
// positioned diagnostic for every value of the wrong type or unknown key.
type reader struct {
	doc   *tomlDoc
	diags *Diagnostics
}

func (r reader) bad(path, format string, args ...any) {
	r.diags.add(r.doc.posOf(path), format, args...)
}

// get resolves a key path such as "rollout.stage[1].name".
func (r reader) get(p string) (any, bool) {
	var cur any = r.doc.data
	for p != "" {
		var seg string
		seg, p = nextSegment(p)
		if strings.HasPrefix(seg, "[") {
			i, _ := strconv.Atoi(seg[1 : len(seg)-1])
			list, ok := cur.([]any)
			if !ok || i >= len(list) {
				return nil, false
			}
			cur = list[i]
			continue
		}
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if uq, err := strconv.Unquote(seg); err == nil {
			seg = uq
		}
		cur, ok = m[seg]
		if !ok {
			return nil, false
		}
	}
	return cur, true
}

// nextSegment splits the first key or [index] off a key path.
func nextSegment(p string) (seg, rest string) {
	p = strings.TrimPrefix(p, ".")
	if strings.HasPrefix(p, "[") {
		i := strings.IndexByte(p, ']')
		return p[:i+1], p[i+1:]
	}
	if strings.HasPrefix(p, "\"") {
		for i := 1; i < len(p); i++ {
			if p[i] == '\\' {
				i++
				continue
			}
			if p[i] == '"' {
				return p[:i+1], p[i+1:]
			}
		}
	}
	i := strings.IndexAny(p, ".[")
	if i < 0 {
		return p, ""
	}
	return p[:i], p[i:]
}

func (r reader) str(p string) (string, bool) {
	v, ok := r.get(p)
	if !ok {
		return "", false
	}
	s, isStr := v.(string)
	if !isStr {
		r.bad(p, "%s: want a string, got %s", lastKey(p), typeName(v))
		return "", false
	}
	return s, true
}

func (r reader) bool(p string) (bool, bool) {
	v, ok := r.get(p)
	if !ok {
		return false, false
	}
	b, isBool := v.(bool)
	if !isBool {
		r.bad(p, "%s: want true or false, got %s", lastKey(p), typeName(v))
		return false, false
	}
	return b, true
}

// strs reads a list of strings; a single string is accepted as a list of one.
func (r reader) strs(p string) ([]string, bool) {
	v, ok := r.get(p)
	if !ok {
		return nil, false
	}
	if s, isStr := v.(string); isStr {
		return []string{s}, true
	}
	out, err := toStrings(v)
	if err != nil {
		r.bad(p, "%s: %v", lastKey(p), err)
		return nil, false
	}
	return out, true
}

// table reports whether p is a table, recording a diagnostic when p is set
// to something else.
func (r reader) table(p string) bool {
	v, ok := r.get(p)
	if !ok {
		return false
	}
	if _, isMap := v.(map[string]any); !isMap {
		r.bad(p, "%s: want a table, got %s", lastKey(p), typeName(v))
		return false
	}
	return true
}

// tables iterates over the indexes of the array of tables at p, recording
// a diagnostic for a value that is not an array of tables.
func (r reader) tables(p string) func(func(int) bool) {
	return func(yield func(int) bool) {
		v, ok := r.get(p)
		if !ok {
			return
		}
		list, isList := v.([]any)
		if !isList {
			r.bad(p, "%s: want an array of tables ([[%s]]), got %s", lastKey(p), p, typeName(v))
			return
		}
		for i, e := range list {
			if _, isMap := e.(map[string]any); !isMap {
				r.bad(fmt.Sprintf("%s[%d]", p, i), "%s[%d]: want a table, got %s", lastKey(p), i, typeName(e))
				continue
			}
			if !yield(i) {
				return
			}
		}
	}
}

// known records a diagnostic for every key of the table at p that is not
// one of names ("" is the document's top level).
func (r reader) known(p string, names ...string) { r.knownSuggesting(p, names, names) }

// knownSuggesting is known, suggesting only some of the names: a key that
// is recognised only to be refused is not worth suggesting.
func (r reader) knownSuggesting(p string, names, suggest []string) {
	v, _ := r.get(p)
	m, _ := v.(map[string]any)
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !slices.Contains(names, k) {
			r.bad(joinKey(p, k), "unknown key %q%s (want %s)", k, inTable(p), strings.Join(suggest, ", "))
		}
	}
}

// inTable names the table at key path p the way it is written in the
// file: " in [policy]", or " in [[node]] #2" for an array of tables.
func inTable(p string) string {
	if p == "" {
		return ""
	}
	if strings.HasSuffix(p, "]") {
		i := strings.LastIndexByte(p, '[')
		return fmt.Sprintf(" in [[%s]] #%d", p[:i], indexOf(p)+1)
	}
	return " in [" + p + "]"
}

func lastKey(p string) string {
	if i := strings.LastIndexByte(p, '.'); i >= 0 {
		return p[i+1:]
	}
	return p
}

// toStrings converts a decoded TOML array to []string.
func toStrings(v any) ([]string, error) {
	list, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("want a list of strings, got %s", typeName(v))
	}
	out := make([]string, len(list))
	for i, e := range list {
		s, ok := e.(string)
		if !ok {
			return nil, fmt.Errorf("element %d: want a string, got %s", i, typeName(e))
		}
		out[i] = s
	}
	return out, nil
}

// duration reads a Go duration written as a string ("10m", "500ms").
func (r reader) duration(p string) (time.Duration, bool) {
	s, ok := r.str(p)
	if !ok {
		return 0, false
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		r.bad(p, "%s %q: want a duration like \"30s\", \"10m\" or \"1h30m\"", lastKey(p), s)
		return 0, false
	}
	return d, true
}
