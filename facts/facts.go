package facts

import (
	"strconv"
	"strings"
)

// Facts is a host description: nested maps whose leaves are strings, bools,
// int64s, float64s or lists of those. It is the shape that conditions,
// templates and policies read (facts.os.family), so it stays plain data.
type Facts map[string]any

// Lookup returns the value at a dotted path such as "os.family".
// A step into a list is its decimal index ("networking.interfaces.eth0.addresses.0.address").
// A key that itself holds dots (the mount point "/etc/resolv.conf", the VLAN
// interface "eth0.100") is found too: where one step does not match, it is
// tried joined with the next. So every name the flattened listing of
// `herd facts` prints can be looked up again.
// The second result is false when any step of the path is missing.
func (f Facts) Lookup(path string) (any, bool) {
	return lookup(map[string]any(f), strings.Split(path, "."))
}

func lookup(cur any, parts []string) (any, bool) {
	if len(parts) == 0 {
		return cur, true
	}
	if l, ok := cur.([]any); ok {
		i, err := strconv.Atoi(parts[0])
		if err != nil || i < 0 || i >= len(l) {
			return nil, false
		}
		return lookup(l[i], parts[1:])
	}
	m, ok := asMap(cur)
	if !ok {
		return nil, false
	}
	// The shortest key first: "a" before "a.b", so plain paths cost one
	// map access per step.
	key := parts[0]
	for n := 1; ; n++ {
		if v, ok := m[key]; ok {
			if r, ok := lookup(v, parts[n:]); ok {
				return r, true
			}
		}
		if n == len(parts) {
			return nil, false
		}
		key += "." + parts[n]
	}
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
