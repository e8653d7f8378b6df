package catalogs

import (
	"cmp"
	"reflect"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/aymanbagabas/go-udiff"
)

// ContentFunc returns the bytes of a static file by its digest
// ("sha256:<hex>"), and false when it does not have them. Diff uses it to
// show a unified diff of a file whose source changed.
type ContentFunc func(digest string) ([]byte, bool)

const (
	// maxShortValue is the longest string value a Change keeps beside a
	// unified diff of it: rollouts store every node's change, and a
	// config file's full text twice per node would bloat them.
	maxShortValue = 200
	// maxDiffText caps each side of a unified diff: past it the diff is
	// not worth its time (and its memory) to a reader.
	maxDiffText = 1 << 20
)

// Diff says how next differs from prev: the resources added, removed and
// changed, sorted by id, with each changed attribute (sorted by name). prev
// nil means everything is added. A resource whose source position alone
// moved is unchanged. Require and notify edges are compared as the
// attributes "require" and "notify". A changed string attribute named
// content (or any longer than 200 bytes) gets a unified diff in Diff, and
// keeps its values in From and To only when they are short; a file whose
// source digest changed gets a unified diff of the two files' bytes when
// content (which may be nil) has both and they are text.
func Diff(prev, next *Catalog, content ContentFunc) Change {
	return diff(prev, next, content, false)
}

// DiffBrief is Diff without the text of content: a changed content is
// named without its values (of any length) and other long values are left
// out, with no unified diff. A fleet's rollout keeps brief changes, for
// its gates and its store, and makes the text again from the two catalogs
// when someone asks to read it: unified diffs of every node's templated
// files cost more than compiling them, and even their short texts, twice
// per node, were two thirds of what a 10,000-node rollout wrote before it
// released its first node.
func DiffBrief(prev, next *Catalog) Change {
	return diff(prev, next, nil, true)
}

func diff(prev, next *Catalog, content ContentFunc, brief bool) Change {
	var ch Change
	a, b := byID(prev), byID(next)
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case j == len(b) || i < len(a) && a[i].ID < b[j].ID:
			ch.Removed = append(ch.Removed, wholeResource(a[i], false, brief))
			i++
		case i == len(a) || b[j].ID < a[i].ID:
			ch.Added = append(ch.Added, wholeResource(b[j], true, brief))
			j++
		default:
			ra, rb := a[i], b[j]
			i++
			j++
			if ra.Type != rb.Type || ra.Name != rb.Name {
				// Only a hand-made catalog can do this: the id is the
				// type and name. It is another resource, not a change.
				ch.Removed = append(ch.Removed, wholeResource(ra, false, brief))
				ch.Added = append(ch.Added, wholeResource(rb, true, brief))
				continue
			}
			if attrs := changedAttrs(ra, rb, content, brief); len(attrs) > 0 {
				ch.Changed = append(ch.Changed, ResourceChange{ID: rb.ID, Type: rb.Type, Name: rb.Name, Attrs: attrs})
			}
		}
	}
	return ch
}

// Empty reports whether nothing changes.
func (c Change) Empty() bool { return c.Count() == 0 }

// Count returns how many resources are added, removed or changed.
func (c Change) Count() int { return len(c.Added) + len(c.Removed) + len(c.Changed) }

// byID returns c's resources sorted by id, the first of any duplicate id
// only. A catalog from Compile or Decode of Encode's bytes is sorted
// already; one decoded from elsewhere need not be.
func byID(c *Catalog) []*Resource {
	if c == nil {
		return nil
	}
	out := make([]*Resource, len(c.Resources))
	sorted := true
	for i := range c.Resources {
		out[i] = &c.Resources[i]
		if i > 0 && c.Resources[i-1].ID >= c.Resources[i].ID {
			sorted = false
		}
	}
	if sorted {
		return out
	}
	slices.SortStableFunc(out, func(x, y *Resource) int { return cmp.Compare(x.ID, y.ID) })
	return slices.CompactFunc(out, func(x, y *Resource) bool { return x.ID == y.ID })
}

// wholeResource lists every attribute and edge of r, as "to" values when
// added, "from" values when removed; brief leaves content's value out.
func wholeResource(r *Resource, added, brief bool) ResourceChange {
	rc := ResourceChange{ID: r.ID, Type: r.Type, Name: r.Name}
	set := func(name string, v any) {
		if IsSensitive(v) || SensitiveAttr(r.Type, name) {
			v = SensitiveView(v)
		} else if s, ok := v.(string); ok && (len(s) > maxShortValue || brief && name == "content") {
			v = nil
		}
		ac := AttrChange{Name: name}
		if added {
			ac.To = v
		} else {
			ac.From = v
		}
		rc.Attrs = append(rc.Attrs, ac)
	}
	for _, k := range sortedAttrKeys(r.Attrs) {
		set(k, r.Attrs[k])
	}
	if len(r.Require) > 0 {
		set("require", r.Require)
	}
	if len(r.Notify) > 0 {
		set("notify", r.Notify)
	}
	slices.SortStableFunc(rc.Attrs, func(x, y AttrChange) int { return cmp.Compare(x.Name, y.Name) })
	return rc
}

// changedAttrs compares two versions of one resource.
func changedAttrs(a, b *Resource, content ContentFunc, brief bool) []AttrChange {
	// Most resources of a new version are unchanged: say so without
	// sorting or allocating.
	if sameAttrs(a.Attrs, b.Attrs) && slices.Equal(a.Require, b.Require) && slices.Equal(a.Notify, b.Notify) {
		return nil
	}
	var out []AttrChange
	keys := sortedAttrKeys(a.Attrs)
	for _, k := range sortedAttrKeys(b.Attrs) {
		if _, ok := a.Attrs[k]; !ok {
			keys = append(keys, k)
		}
	}
	for _, k := range keys {
		va, inA := a.Attrs[k]
		vb, inB := b.Attrs[k]
		if inA && inB && ValueEqual(va, vb) {
			continue
		}
		out = append(out, attrChange(b, k, va, vb, content, brief))
	}
	for _, e := range []struct {
		name string
		a, b []string
	}{{"require", a.Require, b.Require}, {"notify", a.Notify, b.Notify}} {
		if slices.Equal(e.a, e.b) {
			continue
		}
		ac := AttrChange{Name: e.name}
		if len(e.a) > 0 {
			ac.From = e.a
		}
		if len(e.b) > 0 {
			ac.To = e.b
		}
		out = append(out, ac)
	}
	slices.SortStableFunc(out, func(x, y AttrChange) int { return cmp.Compare(x.Name, y.Name) })
	return out
}

// sameAttrs reports whether two attribute maps hold the same values.
func sameAttrs(a, b map[string]any) bool {
	if len(a) != len(b) {
		return false
	}
	for k, va := range a {
		vb, ok := b[k]
		if !ok || !ValueEqual(va, vb) {
			return false
		}
	}
	return true
}

// ValueEqual reports whether two attribute values are equal: directly for
// the shapes a catalog holds, through reflection for anything else.
func ValueEqual(a, b any) bool {
	switch a := a.(type) {
	case string:
		b, ok := b.(string)
		return ok && a == b
	case int64:
		b, ok := b.(int64)
		return ok && a == b
	case bool:
		b, ok := b.(bool)
		return ok && a == b
	case []string:
		b, ok := b.([]string)
		return ok && slices.Equal(a, b) && (a == nil) == (b == nil)
	case Sealed:
		b, ok := b.(Sealed)
		return ok && a == b
	case map[string]string:
		b, ok := b.(map[string]string)
		if !ok || len(a) != len(b) || (a == nil) != (b == nil) {
			return false
		}
		for k, v := range a {
			if w, ok := b[k]; !ok || w != v {
				return false
			}
		}
		return true
	}
	return reflect.DeepEqual(a, b)
}

// attrChange builds the change of attribute k of r from va to vb (either
// may be nil: unset).
func attrChange(r *Resource, k string, va, vb any, content ContentFunc, brief bool) AttrChange {
	if IsSensitive(va) || IsSensitive(vb) || SensitiveAttr(r.Type, k) {
		// Never a value or a diff: the digests say whether the value
		// changed (a box alone changes when the node's key does).
		ac := AttrChange{Name: k}
		if va != nil {
			ac.From = SensitiveView(va)
		}
		if vb != nil {
			ac.To = SensitiveView(vb)
		}
		return ac
	}
	ac := AttrChange{Name: k, From: va, To: vb}
	sa, aStr := va.(string)
	sb, bStr := vb.(string)
	switch {
	case k == "digest" && r.Type == "file" && content != nil && aStr && bStr:
		before, okA := content(sa)
		after, okB := content(sb)
		if okA && okB {
			ac.Diff = unified(r, string(before), string(after))
		}
	case (aStr || va == nil) && (bStr || vb == nil) && (k == "content" || len(sa) > maxShortValue || len(sb) > maxShortValue):
		if !brief {
			ac.Diff = unified(r, sa, sb)
		}
		if len(sa) > maxShortValue || brief && k == "content" {
			ac.From = nil
		}
		if len(sb) > maxShortValue || brief && k == "content" {
			ac.To = nil
		}
	}
	return ac
}

// unified returns a unified diff of before and after, or "" when either is too
// large or not text.
func unified(r *Resource, before, after string) string {
	if !isText(before) || !isText(after) {
		return ""
	}
	label := r.ID
	if r.Type == "file" {
		label = strings.TrimPrefix(r.Name, "/")
	}
	// A name with a newline would forge lines of the diff.
	label = printable(label)
	edits := udiff.Lines(before, after)
	out, err := udiff.ToUnified("a/"+label, "b/"+label, before, edits, udiff.DefaultContextLines)
	if err != nil {
		// The edits come from the same two texts; an error is a bug
		// in the library, and the values still show the change.
		return ""
	}
	return out
}

// isText reports whether s is worth showing as lines: not too large, valid
// UTF-8, no NUL byte.
func isText(s string) bool {
	return len(s) <= maxDiffText && utf8.ValidString(s) && strings.IndexByte(s, 0) < 0
}
