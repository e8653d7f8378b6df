package facts

import "strings"

// Facts is a host description: nested maps whose leaves are strings, bools,
// int64s, float64s or lists of those. It is the shape that conditions,
// templates and policies read (facts.os.family), so it stays plain data.
type Facts map[string]any

// Lookup returns the value at a dotted path such as "os.family".
// The second result is false when any step of the path is missing.
func (f Facts) Lookup(path string) (any, bool) {
	var cur any = map[string]any(f)
	for part := range strings.SplitSeq(path, ".") {
		m, ok := asMap(cur)
		if !ok {
			return nil, false
		}
		cur, ok = m[part]
		if !ok {
			return nil, false
		}
	}
	return cur, true
}

func asMap(v any) (map[string]any, bool) {
	switch m := v.(type) {
	case map[string]any:
		return m, true
	case Facts:
		return m, true
	}
	return nil, false
}
