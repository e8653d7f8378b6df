package facts

import (
	"slices"
	"strconv"
)

// Leaf is one fact in a flattened listing: a dotted name that Lookup
// accepts, and a value that is a scalar, a list of scalars, or an empty map
// or list.
type Leaf struct {
	Name  string
	Value any
}

// Flatten lists the leaves under v (a Facts, a map or a value) named from
// name, sorted by name. Maps nest with ".", lists of maps with the index
// ("addresses.0.address"); a list of scalars stays one leaf, because one line
// "options = [rw relatime]" reads better than one per option.
func Flatten(name string, v any) []Leaf {
	var out []Leaf
	flatten(name, name == "", v, &out)
	return out
}

// flatten appends v's leaves. top is true for the unnamed root, whose
// children are named without a leading "." (a key "" below it is not).
func flatten(name string, top bool, v any, out *[]Leaf) {
	join := func(k string) string {
		if top {
			return k
		}
		return name + "." + k
	}
	if m, ok := asMap(v); ok {
		if len(m) == 0 {
			if !top { // an empty Facts has no leaves, not one nameless one
				*out = append(*out, Leaf{name, v})
			}
			return
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			flatten(join(k), false, m[k], out)
		}
		return
	}
	if l, ok := v.([]any); ok && slices.ContainsFunc(l, isContainer) {
		for i, e := range l {
			flatten(join(strconv.Itoa(i)), false, e, out)
		}
		return
	}
	*out = append(*out, Leaf{name, v})
}

func isContainer(v any) bool {
	switch v.(type) {
	case map[string]any, Facts, []any:
		return true
	}
	return false
}
