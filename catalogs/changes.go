package catalogs

import (
	"bufio"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// ChangeGroup is the nodes whose catalogs change in exactly the same way.
type ChangeGroup struct {
	Nodes  []string // sorted
	Change Change
}

// GroupChanges puts together the nodes whose changes are identical, so
// that 800 web nodes moving nginx from 1.24 to 1.26 read as one group.
// Nodes whose change is empty are left out. The biggest group comes first;
// groups of one size are ordered by their first node.
func GroupChanges(changes map[string]Change) []ChangeGroup {
	byKey := map[string]*ChangeGroup{}
	var groups []*ChangeGroup
	for node, ch := range changes {
		if ch.Empty() {
			continue
		}
		// A Change holds only JSON values (what catalogs hold), so its
		// encoding is a faithful key; an unencodable one stays alone.
		b, err := json.Marshal(ch)
		key := string(b)
		if err != nil {
			key = "\x00" + node
		}
		g, ok := byKey[key]
		if !ok {
			g = &ChangeGroup{Change: ch}
			byKey[key] = g
			groups = append(groups, g)
		}
		g.Nodes = append(g.Nodes, node)
	}
	out := make([]ChangeGroup, len(groups))
	for i, g := range groups {
		slices.Sort(g.Nodes)
		out[i] = *g
	}
	slices.SortFunc(out, func(a, b ChangeGroup) int {
		return cmp.Or(cmp.Compare(len(b.Nodes), len(a.Nodes)), cmp.Compare(a.Nodes[0], b.Nodes[0]))
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

// WriteChanges writes groups for a reader: a line naming each group's
// nodes, then one line per resource (sorted by id: "+" added, "-"
// removed, "~" changed with its attributes, "from → to"), and unified
// diffs of content indented under their attribute. Groups are separated by
// a blank line.
func WriteChanges(w io.Writer, groups []ChangeGroup, opts WriteOptions) error {
	bw := bufio.NewWriter(w)
	p := changePrinter{w: bw, color: opts.Color}
	for i, g := range groups {
		if i > 0 {
			bw.WriteByte('\n')
		}
		p.paint(ansiBold, nodeList(g.Nodes))
		bw.WriteByte('\n')
		type line struct {
			mark byte
			rc   ResourceChange
		}
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
		slices.SortStableFunc(lines, func(a, b line) int { return cmp.Compare(a.rc.ID, b.rc.ID) })
		for _, l := range lines {
			p.resource(l.mark, l.rc)
		}
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
	if a.From == nil && a.To == nil {
		// Both sides too long to keep and not text to diff.
		p.w.WriteString(printable(a.Name) + ": changed (too long to show)\n")
		return
	}
	fmt.Fprintf(p.w, "%s: %s → %s\n", printable(a.Name), showValue(a.From), showValue(a.To))
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
