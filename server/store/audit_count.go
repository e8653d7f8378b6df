package store

import (
	"cmp"
	"slices"
)

// byName is the states' codes in the order of their names, the order
// AuditSummary's query counts them in.
var byName = []int{3, 2, 4, 1} // error, fail, no-data, pass

// Summary is what AuditSummary(controls) answers, from the results the
// follower holds as of its last Follow: counted as each new row came
// rather than again over the whole fleet, so a view of 10,000 nodes × 50
// controls after a change costs the rows new since, not half a million.
// Its counts start over with the follower's (at its first Follow, after
// a purge or prune, or when the deactivated nodes changed), so they
// leave out the nodes deactivated at the last Follow, as AuditSummary
// does. TestAuditFollowerSummary holds the two to the same answer.
func (f *AuditFollower) Summary(controls []string) AuditSummary {
	var out AuditSummary
	known := make([]bool, len(f.controlNames))
	stale := false
	for _, c := range controls {
		if ci, ok := f.controls[c]; ok {
			known[ci] = true
		}
	}
	for ci, k := range known {
		if !k && f.byControl[ci] != ([5]int{}) {
			stale = true
		}
	}
	// Stale rows (of controls not asked for, between a site change and
	// the next evaluation) are rare: taken out pair by pair.
	var minus [][5]int
	if stale {
		minus = make([][5]int, len(f.nodeNames))
		for key, code := range f.pairs {
			if !known[key&0xffffffff] {
				minus[key>>32][code]++
			}
		}
	}
	order := make([]int, len(f.nodeNames))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return cmp.Compare(f.nodeNames[a], f.nodeNames[b]) })
	for _, ni := range order {
		for _, code := range byName {
			n := f.byNode[ni][code]
			if minus != nil {
				n -= minus[ni][code]
			}
			if n > 0 {
				out.Nodes = append(out.Nodes, AuditCount{Key: f.nodeNames[ni], State: auditStates[code], N: n})
			}
		}
	}
	for ci, name := range f.controlNames {
		if !known[ci] {
			continue
		}
		for _, code := range byName {
			if n := f.byControl[ci][code]; n > 0 {
				out.Controls = append(out.Controls, AuditCount{Key: name, State: auditStates[code], N: n})
			}
		}
	}
	slices.SortStableFunc(out.Controls, func(a, b AuditCount) int { return cmp.Compare(a.Key, b.Key) })
	for key, r := range f.failing {
		if known[key&0xffffffff] {
			out.Failing = append(out.Failing, r)
		}
	}
	slices.SortFunc(out.Failing, func(a, b AuditState) int {
		return cmp.Or(cmp.Compare(a.Node, b.Node), cmp.Compare(a.Control, b.Control))
	})
	return out
}
