package catalogs

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// ChangeGroup is resource changes that the same nodes make: every node of
// Nodes makes every change of Change, and no other node makes any of them.
type ChangeGroup struct {
	Nodes  []string // sorted
	Change Change   // Added, Removed and Changed each sorted by id
}

// GroupChanges regroups per-node changes by resource change, so that 800
// web nodes moving nginx from 1.24 to 1.26 read as one line even when each
// node's templated motd changes differently too. Each resource change
// (added, removed or changed, with its attribute changes and diffs) is
// keyed by its canonical encoding; the changes made by exactly the same
// set of nodes form one group: in that example, one group of 800 nodes
// with the nginx bump and 800 one-node groups with a motd diff each.
// Nodes whose change is empty are in no group. The biggest group comes
// first; groups of one size are ordered by their first node.
func GroupChanges(changes map[string]Change) []ChangeGroup {
	type entry struct {
		kind  byte // '+' added, '-' removed, '~' changed
		rc    ResourceChange
		nodes []string
	}
	byKey := map[string]*entry{}
	var entries []*entry
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	for node, ch := range changes {
		for _, part := range [...]struct {
			kind byte
			rcs  []ResourceChange
		}{{'+', ch.Added}, {'-', ch.Removed}, {'~', ch.Changed}} {
			for _, rc := range part.rcs {
				// A ResourceChange holds only JSON values (what catalogs
				// hold), and encoding/json writes maps with sorted keys,
				// so its encoding is a faithful key; an unencodable one
				// stays alone.
				buf.Reset()
				buf.WriteByte(part.kind)
				key := ""
				if err := enc.Encode(rc); err != nil {
					key = fmt.Sprintf("\x00%d", len(entries))
				} else {
					key = buf.String()
				}
				e, ok := byKey[key]
				if !ok {
					e = &entry{kind: part.kind, rc: rc}
					byKey[key] = e
					entries = append(entries, e)
				}
				// One node listing one change twice is still one node.
				if n := len(e.nodes); n == 0 || e.nodes[n-1] != node {
					e.nodes = append(e.nodes, node)
				}
			}
		}
	}
	bySet := map[string]*ChangeGroup{}
	var groups []*ChangeGroup
	for _, e := range entries {
		slices.Sort(e.nodes)
		// Length-prefixed names: no two node sets share a key, whatever
		// the names hold.
		var set strings.Builder
		for _, n := range e.nodes {
			set.WriteString(strconv.Itoa(len(n)))
			set.WriteByte(':')
			set.WriteString(n)
		}
		g, ok := bySet[set.String()]
		if !ok {
			g = &ChangeGroup{Nodes: e.nodes}
			bySet[set.String()] = g
			groups = append(groups, g)
		}
		switch e.kind {
		case '+':
			g.Change.Added = append(g.Change.Added, e.rc)
		case '-':
			g.Change.Removed = append(g.Change.Removed, e.rc)
		default:
			g.Change.Changed = append(g.Change.Changed, e.rc)
		}
	}
	byID := func(a, b ResourceChange) int { return cmp.Compare(a.ID, b.ID) }
	out := make([]ChangeGroup, len(groups))
	for i, g := range groups {
		slices.SortStableFunc(g.Change.Added, byID)
		slices.SortStableFunc(g.Change.Removed, byID)
		slices.SortStableFunc(g.Change.Changed, byID)
		out[i] = *g
	}
	slices.SortFunc(out, func(a, b ChangeGroup) int {
		return cmp.Or(cmp.Compare(len(b.Nodes), len(a.Nodes)), slices.Compare(a.Nodes, b.Nodes))
	})
	return out
}

// WriteOptions tune WriteChanges.
type WriteOptions struct {
	// Color marks additions green, removals red and changes yellow with
	// ANSI escapes, for a terminal.
	Color bool
}

const (
	ansiRed    = "\x1b[31m"
	ansiGreen  = "\x1b[32m"
	ansiYellow = "\x1b[33m"
	ansiCyan   = "\x1b[36m"
	ansiBold   = "\x1b[1m"
	ansiReset  = "\x1b[0m"
)

// FoldAfter is how many one-node groups making the same single resource
// change (the same mark and id, e.g. "~ file:/etc/motd" whose templated
// content differs on every node) WriteChanges prints in full; the rest it
// counts in one line at the end, naming a node to look at with --node.
// 800 nodes each with its own motd would otherwise bury the one line the
// whole fleet shares under 800 diffs.
const FoldAfter = 20

// WriteChanges writes groups for a reader: a line naming each group's
// nodes, then one line per resource (sorted by id: "+" added, "-"
// removed, "~" changed with its attributes, "from → to"), and unified
// diffs of content indented under their attribute. Groups are separated by
// a blank line. One-node groups of a single resource change past the
// FoldAfter-th of that resource are summed up at the end instead:
// "… and 780 more nodes change file:/etc/motd (content differs per node;
// --node web-021 to see one)".
func WriteChanges(w io.Writer, groups []ChangeGroup, opts WriteOptions) error {
	bw := bufio.NewWriter(w)
	p := changePrinter{w: bw, color: opts.Color}
	type line struct {
		mark byte
		rc   ResourceChange
	}
	type foldKey struct {
		mark byte
		id   string
	}
	type fold struct {
		shown, more int
		first       string          // the first node not shown
		attrs       map[string]bool // the attributes the folded changes change
	}
	folds := map[foldKey]*fold{}
	printed := 0
	for _, g := range groups {
		var lines []line
		for _, rc := range g.Change.Added {
			lines = append(lines, line{'+', rc})
		}
		for _, rc := range g.Change.Removed {
			lines = append(lines, line{'-', rc})
		}
		for _, rc := range g.Change.Changed {
			lines = append(lines, line{'~', rc})
		}
		if len(g.Nodes) == 1 && len(lines) == 1 {
			k := foldKey{lines[0].mark, lines[0].rc.ID}
			f := folds[k]
			if f == nil {
				f = &fold{attrs: map[string]bool{}}
				folds[k] = f
			}
			if f.shown >= FoldAfter {
				if f.more == 0 {
					f.first = g.Nodes[0]
				}
				f.more++
				for _, a := range lines[0].rc.Attrs {
					f.attrs[a.Name] = true
				}
				continue
			}
			f.shown++
		}
		if printed > 0 {
			bw.WriteByte('\n')
		}
		printed++
		p.paint(ansiBold, printable(nodeList(g.Nodes)))
		bw.WriteByte('\n')
		slices.SortStableFunc(lines, func(a, b line) int { return cmp.Compare(a.rc.ID, b.rc.ID) })
		for _, l := range lines {
			p.resource(l.mark, l.rc)
		}
	}
	keys := slices.Collect(maps.Keys(folds))
	slices.SortFunc(keys, func(a, b foldKey) int { return cmp.Or(cmp.Compare(a.id, b.id), cmp.Compare(a.mark, b.mark)) })
	for _, k := range keys {
		f := folds[k]
		if f.more == 0 {
			continue
		}
		verb := map[byte]string{'+': "add", '-': "remove", '~': "change"}[k.mark]
		who := fmt.Sprintf("%d more nodes %s", f.more, verb)
		if f.more == 1 {
			who = "1 more node " + verb + "s"
		}
		how := "differently on each node"
		if k.mark == '~' && len(f.attrs) > 0 {
			names := slices.Sorted(maps.Keys(f.attrs))
			for i, n := range names {
				names[i] = printable(n)
			}
			how = strings.Join(names, ", ") + " differs per node"
			if len(names) > 1 {
				how = strings.Join(names, ", ") + " differ per node"
			}
		}
		fmt.Fprintf(bw, "\n… and %s %s (%s; --node %s to see one)\n", who, printable(k.id), how, printable(f.first))
	}
	return bw.Flush()
}

// nodeList names a group's nodes: all of them when few, else the count and
// the first and last.
func nodeList(nodes []string) string {
	switch n := len(nodes); {
	case n == 1:
		return "1 node: " + nodes[0]
	case n <= 3:
		return fmt.Sprintf("%d nodes: %s", n, strings.Join(nodes, ", "))
	default:
		return fmt.Sprintf("%d nodes (%s … %s)", n, nodes[0], nodes[n-1])
	}
}

type changePrinter struct {
	w     *bufio.Writer
	color bool
}

func (p changePrinter) paint(code, s string) {
	if p.color && s != "" {
		p.w.WriteString(code + s + ansiReset)
		return
	}
	p.w.WriteString(s)
}

func (p changePrinter) resource(mark byte, rc ResourceChange) {
	code := map[byte]string{'+': ansiGreen, '-': ansiRed, '~': ansiYellow}[mark]
	p.w.WriteString("  ")
	p.paint(code, string(mark)+" "+printable(rc.ID))
	if mark != '~' {
		p.w.WriteByte('\n')
		return
	}
	// One attribute without a diff fits the resource's line.
	if len(rc.Attrs) == 1 && rc.Attrs[0].Diff == "" {
		p.w.WriteString("  ")
		p.attr(rc.Attrs[0])
		return
	}
	p.w.WriteByte('\n')
	for _, a := range rc.Attrs {
		p.w.WriteString("      ")
		p.attr(a)
	}
}

func (p changePrinter) attr(a AttrChange) {
	if a.Diff != "" {
		p.w.WriteString(printable(a.Name) + ":\n")
		for _, l := range strings.SplitAfter(strings.TrimSuffix(a.Diff, "\n"), "\n") {
			p.w.WriteString("        ")
			l = printable(strings.TrimSuffix(l, "\n"))
			switch {
			case strings.HasPrefix(l, "+++"), strings.HasPrefix(l, "---"):
				p.paint(ansiBold, l)
			case strings.HasPrefix(l, "+"):
				p.paint(ansiGreen, l)
			case strings.HasPrefix(l, "-"):
				p.paint(ansiRed, l)
			case strings.HasPrefix(l, "@@"):
				p.paint(ansiCyan, l)
			default:
				p.w.WriteString(l)
			}
			p.w.WriteByte('\n')
		}
		return
	}
	if _, ok := IsSensitiveView(a.To); ok || isSensitiveFrom(a) {
		p.w.WriteString(printable(a.Name) + ": " + sensitiveChange(a) + "\n")
		return
	}
	if a.From == nil && a.To == nil {
		// Both sides too long to keep and not text to diff.
		p.w.WriteString(printable(a.Name) + ": changed (too long to show)\n")
		return
	}
	fmt.Fprintf(p.w, "%s: %s → %s\n", printable(a.Name), showValue(a.From), showValue(a.To))
}

func isSensitiveFrom(a AttrChange) bool {
	_, ok := IsSensitiveView(a.From)
	return ok
}

// sensitiveChange says how a sensitive attribute changed, from the
// digests alone: "(sensitive) changed", "(sensitive) re-sealed, value
// unchanged" (the node's key changed), "(unset) → (sensitive)".
func sensitiveChange(a AttrChange) string {
	df, okF := IsSensitiveView(a.From)
	dt, okT := IsSensitiveView(a.To)
	switch {
	case a.From == nil:
		return "(unset) → " + SensitiveText
	case a.To == nil:
		return SensitiveText + " → (unset)"
	case okF && okT && df != "" && df == dt:
		return SensitiveText + " re-sealed, value unchanged"
	}
	return SensitiveText + " changed"
}

// showValue writes an attribute value on one line: a plain word as is,
// anything with spaces, quotes or control characters quoted, lists in
// brackets, tables in braces; unset as "(unset)".
func showValue(v any) string {
	switch v := v.(type) {
	case nil:
		return "(unset)"
	case string:
		return word(v)
	case []string:
		q := make([]string, len(v))
		for i, s := range v {
			q[i] = word(s)
		}
		return "[" + strings.Join(q, " ") + "]"
	case []any:
		q := make([]string, len(v))
		for i, e := range v {
			q[i] = showValue(e)
		}
		return "[" + strings.Join(q, " ") + "]"
	case map[string]string:
		q := make([]string, 0, len(v))
		for _, k := range sortedAttrKeys(v) {
			q = append(q, word(k)+"="+word(v[k]))
		}
		return "{" + strings.Join(q, " ") + "}"
	case map[string]any:
		if _, ok := IsSensitiveView(v); ok {
			return SensitiveText
		}
		q := make([]string, 0, len(v))
		for _, k := range sortedAttrKeys(v) {
			q = append(q, word(k)+"="+showValue(v[k]))
		}
		return "{" + strings.Join(q, " ") + "}"
	}
	return fmt.Sprint(v)
}

// word quotes s unless it is a plain, printable, space-free word (a
// quoted one never lets a value forge a line of the output).
func word(s string) string {
	if s == "" || strings.ContainsFunc(s, func(r rune) bool {
		return r <= ' ' || r == '"' || r == '\\' || r == 0x7f || r == '→' || r == '[' || r == ']' || r == '{' || r == '}' || r == '='
	}) {
		return fmt.Sprintf("%q", s)
	}
	return s
}

// printable escapes control characters (a tab excepted), so that text from
// a catalog cannot move the terminal's cursor, recolor it or forge a line.
func printable(s string) string {
	if !strings.ContainsFunc(s, isControl) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if isControl(r) {
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func isControl(r rune) bool {
	return r != '\t' && (r < ' ' || r == 0x7f || r >= 0x80 && r < 0xa0 || r == utf8.RuneError)
}
