package resources

import (
	"bytes"
	"fmt"
	"strings"
	"unicode/utf8"
)

// diffContext is how many unchanged lines surround each change in a hunk,
// as in diff -u.
const diffContext = 3

// maxDiffBytes bounds the files whose content changes are shown as a
// diff; above it a change names only the two digests.
const maxDiffBytes = 1 << 20

// maxDiffEdits bounds the edit distance the diff searches for. Myers'
// algorithm costs time and memory that grow with it; past the bound the
// differing middle of the two texts is shown as removed and added whole,
// which is still a correct diff, only a longer one.
const maxDiffEdits = 1000

// diffable reports whether b is text worth showing as a diff: not too
// large, valid UTF-8 (reports are JSON) and free of NUL bytes (git's test
// for binary content).
func diffable(b []byte) bool {
	if len(b) > maxDiffBytes {
		return false
	}
	head := b
	if len(head) > 8000 {
		head = head[:8000]
	}
	return bytes.IndexByte(head, 0) < 0 && utf8.Valid(b)
}

// UnifiedDiff returns the differences between two texts as a unified diff
// of lines (diff -u), labelled oldName and newName, or "" when the texts
// are equal. A last line without a newline is marked "\ No newline at end
// of file", so that applying the hunks to old gives new exactly.
func UnifiedDiff(oldName, newName, old, new string) string {
	if old == new {
		return ""
	}
	a, b := splitLines(old), splitLines(new)
	ops := diffLines(a, b)

	var sb strings.Builder
	fmt.Fprintf(&sb, "--- %s\n+++ %s\n", oldName, newName)
	// Walk the edit script, cutting it into hunks: a hunk spans its changes
	// plus diffContext equal lines either side, and two hunks whose
	// contexts would touch become one.
	for i := 0; i < len(ops); {
		if ops[i].kind == opEqual {
			i++
			continue
		}
		start := max(i-diffContext, 0)
		end := i // one past the last change in the hunk
		for j := i; j < len(ops); j++ {
			if ops[j].kind != opEqual {
				end = j + 1
				continue
			}
			if j-end >= 2*diffContext {
				break
			}
		}
		stop := min(end+diffContext, len(ops))
		writeHunk(&sb, ops, start, stop)
		i = stop
	}
	return sb.String()
}

// writeHunk writes ops[start:stop] as one hunk with its header.
func writeHunk(sb *strings.Builder, ops []diffOp, start, stop int) {
	// Line numbers are 1-based: the hunk begins after every old (new) line
	// that precedes it.
	oldStart, newStart := 0, 0
	if start < len(ops) {
		oldStart, newStart = ops[start].a, ops[start].b
	}
	oldN, newN := 0, 0
	for _, op := range ops[start:stop] {
		if op.kind != opInsert {
			oldN++
		}
		if op.kind != opDelete {
			newN++
		}
	}
	fmt.Fprintf(sb, "@@ -%s +%s @@\n", hunkRange(oldStart, oldN), hunkRange(newStart, newN))
	for _, op := range ops[start:stop] {
		sb.WriteByte(" -+"[op.kind])
		sb.WriteString(op.line)
		if !strings.HasSuffix(op.line, "\n") {
			sb.WriteString("\n\\ No newline at end of file\n")
		}
	}
}

// hunkRange formats one side of a hunk header as diff -u does: "l,n",
// just "l" when n is 1, and the line before the hunk when n is 0.
func hunkRange(before, n int) string {
	switch n {
	case 0:
		return fmt.Sprintf("%d,0", before)
	case 1:
		return fmt.Sprintf("%d", before+1)
	}
	return fmt.Sprintf("%d,%d", before+1, n)
}

// splitLines cuts s after every newline; a last line without one is kept
// as it is.
func splitLines(s string) []string {
	if s == "" {
		return nil
	}
	lines := make([]string, 0, strings.Count(s, "\n")+1)
	for s != "" {
		i := strings.IndexByte(s, '\n')
		if i < 0 {
			lines = append(lines, s)
			break
		}
		lines = append(lines, s[:i+1])
		s = s[i+1:]
	}
	return lines
}

// The kinds of diffOp, indexing the prefix " -+".
const (
	opEqual = iota
	opDelete
	opInsert
)

// diffOp is one line of an edit script. a and b count the old and new
// lines before it.
type diffOp struct {
	kind int
	line string
	a, b int
}

// diffLines returns an edit script turning a into b: the common prefix and
// suffix as they are, and the middle by Myers' O(ND) algorithm.
func diffLines(a, b []string) []diffOp {
	pre := 0
	for pre < len(a) && pre < len(b) && a[pre] == b[pre] {
		pre++
	}
	suf := 0
	for suf < len(a)-pre && suf < len(b)-pre && a[len(a)-1-suf] == b[len(b)-1-suf] {
		suf++
	}
	ops := make([]diffOp, 0, len(a)+len(b)-pre-suf)
	for i := 0; i < pre; i++ {
		ops = append(ops, diffOp{opEqual, a[i], i, i})
	}
	ma, mb := a[pre:len(a)-suf], b[pre:len(b)-suf]
	mid, ok := myers(ma, mb)
	if !ok {
		// Too different to search: remove the old middle, add the new one.
		mid = mid[:0]
		for _, l := range ma {
			mid = append(mid, diffOp{kind: opDelete, line: l})
		}
		for _, l := range mb {
			mid = append(mid, diffOp{kind: opInsert, line: l})
		}
	}
	ai, bi := pre, pre
	for _, op := range mid {
		op.a, op.b = ai, bi
		ops = append(ops, op)
		if op.kind != opInsert {
			ai++
		}
		if op.kind != opDelete {
			bi++
		}
	}
	for i := 0; i < suf; i++ {
		ops = append(ops, diffOp{opEqual, a[ai+i], ai + i, bi + i})
	}
	return ops
}

// myers finds a shortest edit script from a to b (Myers 1986, the greedy
// forward search with the frontier kept per step for the way back). It
// gives up, returning false, past maxDiffEdits edits.
func myers(a, b []string) ([]diffOp, bool) {
	n, m := len(a), len(b)
	if n == 0 && m == 0 {
		return nil, true
	}
	// Compare small integers, not strings, in the inner loop.
	ids := make(map[string]int32, n+m)
	intern := func(ls []string) []int32 {
		out := make([]int32, len(ls))
		for i, l := range ls {
			id, ok := ids[l]
			if !ok {
				id = int32(len(ids))
				ids[l] = id
			}
			out[i] = id
		}
		return out
	}
	ia, ib := intern(a), intern(b)

	limit := min(n+m, maxDiffEdits)
	off := limit + 1
	v := make([]int, 2*limit+3)
	// trace[d] is the frontier before step d, for diagonals -d-1..d+1.
	var trace [][]int
	found := -1
	for d := 0; d <= limit && found < 0; d++ {
		trace = append(trace, append([]int(nil), v[off-d-1:off+d+2]...))
		for k := -d; k <= d; k += 2 {
			var x int
			if k == -d || (k != d && v[off+k-1] < v[off+k+1]) {
				x = v[off+k+1] // down: insert b[y]
			} else {
				x = v[off+k-1] + 1 // right: delete a[x]
			}
			y := x - k
			for x < n && y < m && ia[x] == ib[y] {
				x++
				y++
			}
			v[off+k] = x
			if x >= n && y >= m {
				found = d
				break
			}
		}
	}
	if found < 0 {
		return nil, false
	}

	// Walk back from (n, m), collecting the script in reverse.
	rev := make([]diffOp, 0, n+m)
	x, y := n, m
	for d := found; d >= 0; d-- {
		tv := trace[d]
		at := func(k int) int { return tv[k+d+1] }
		k := x - y
		var pk int
		if k == -d || (k != d && at(k-1) < at(k+1)) {
			pk = k + 1
		} else {
			pk = k - 1
		}
		px := at(pk)
		py := px - pk
		for x > px && y > py {
			x--
			y--
			rev = append(rev, diffOp{kind: opEqual, line: a[x]})
		}
		if d == 0 {
			break
		}
		if x == px {
			y--
			rev = append(rev, diffOp{kind: opInsert, line: b[y]})
		} else {
			x--
			rev = append(rev, diffOp{kind: opDelete, line: a[x]})
		}
	}
	for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
		rev[i], rev[j] = rev[j], rev[i]
	}
	return rev, true
}
