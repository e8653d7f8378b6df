package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// AuditMark says whether the audit results changed between two reads: it
// differs after any result was recorded, a node's history was purged, or
// a node was deactivated or brought back. Readers that keep a view of the
// results (the dashboard's) rebuild it when the mark moves. It reads two
// indexes and the nodes table, not the results.
type AuditMark struct {
	LastID, LastAt, Rows int64
	Deactivated          int64 // how many nodes are deactivated
	DeactivatedSum       int64 // the sum of their deactivation times
}

// AuditMark returns the current mark of the audit results.
func (s *Store) AuditMark(ctx context.Context) (AuditMark, error) {
	var m AuditMark
	err := s.rdb.QueryRowContext(ctx, `SELECT
		(SELECT COALESCE(MAX(id), 0) FROM audit_results),
		(SELECT COALESCE(MAX(at), 0) FROM audit_results),
		(SELECT COUNT(*) FROM audit_results),
		(SELECT COUNT(*) FROM nodes WHERE deactivated != 0),
		(SELECT COALESCE(SUM(deactivated), 0) FROM nodes WHERE deactivated != 0)`).
		Scan(&m.LastID, &m.LastAt, &m.Rows, &m.Deactivated, &m.DeactivatedSum)
	if err != nil {
		return AuditMark{}, fmt.Errorf("reading the audit mark: %w", err)
	}
	return m, nil
}

// AuditTrendPoint is the fleet's compliance as it stood at End: what
// AuditResults{At: End} holds, counted. A node complies when at least one
// control judged it (pass, fail or error) and none failed or erred; it
// does not when one failed or erred; it has no data when none judged it.
type AuditTrendPoint struct {
	End                                  time.Time
	Pass, Fail, Error, NoData            int // results
	Compliant, NonCompliant, NodesNoData int // nodes
}

// AuditTrend returns the compliance at the end of each of n buckets of
// step from since, oldest first, leaving out the nodes deactivated now
// (as AuditResults does). It reads the history once: the state at since,
// then each change after it in order.
func (s *Store) AuditTrend(ctx context.Context, since time.Time, step time.Duration, n int) ([]AuditTrendPoint, error) {
	if step <= 0 || n <= 0 || n > 10000 {
		return nil, fmt.Errorf("audit trend: want a positive step and 1 to 10000 buckets, got %v and %d", step, n)
	}
	tx, err := s.rdb.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("reading the audit trend: %w", err)
	}
	defer tx.Rollback() // read-only: nothing to keep
	out, err := auditTrend(ctx, tx, since, step, n)
	if err != nil {
		return nil, fmt.Errorf("reading the audit trend: %w", err)
	}
	return out, nil
}

func auditTrend(ctx context.Context, tx *sql.Tx, since time.Time, step time.Duration, n int) ([]AuditTrendPoint, error) {
	left := map[string]bool{}
	rows, err := tx.QueryContext(ctx, `SELECT name FROM nodes WHERE deactivated != 0`)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			rows.Close()
			return nil, err
		}
		left[name] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	t := newTrendTally()
	// The state at since: each pair's newest row at or before it, as
	// AuditResults at a time reads it.
	rows, err = tx.QueryContext(ctx, `SELECT node, control, state FROM (
		SELECT node, control, state, MAX(id) FROM audit_results WHERE at <= ? GROUP BY node, control)`, ns(since))
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var node, control, state string
		if err := rows.Scan(&node, &control, &state); err != nil {
			rows.Close()
			return nil, err
		}
		if !left[node] {
			t.set(node, control, state)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	end := since.Add(time.Duration(n) * step)
	rows, err = tx.QueryContext(ctx, `SELECT node, control, at, state FROM audit_results WHERE at > ? AND at <= ? ORDER BY at, id`,
		ns(since), ns(end))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make([]AuditTrendPoint, 0, n)
	next := since.Add(step)
	emit := func() {
		p := t.point
		p.End = next
		out = append(out, p)
		next = next.Add(step)
	}
	for rows.Next() {
		var node, control, state string
		var at int64
		if err := rows.Scan(&node, &control, &at, &state); err != nil {
			return nil, err
		}
		// A bucket holds the changes up to and including its end.
		for ns(next) < at && len(out) < n {
			emit()
		}
		if !left[node] {
			t.set(node, control, state)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for len(out) < n {
		emit()
	}
	return out, nil
}

// trendTally keeps each pair's state and each node's counts, and the
// fleet's totals in point, as changes are replayed.
type trendTally struct {
	pairs map[[2]string]string
	nodes map[string]*[3]int // results, judged, failing
	point AuditTrendPoint
}

func newTrendTally() *trendTally {
	return &trendTally{pairs: map[[2]string]string{}, nodes: map[string]*[3]int{}}
}

// set records that control's state on node is now state ("" when the
// control is gone).
func (t *trendTally) set(node, control, state string) {
	key := [2]string{node, control}
	old, had := t.pairs[key]
	if had && old == state || !had && state == "" {
		return
	}
	nc := t.nodes[node]
	if nc == nil {
		nc = &[3]int{}
		t.nodes[node] = nc
	}
	t.nodeClass(nc, -1)
	if had {
		t.result(nc, old, -1)
	}
	if state == "" {
		delete(t.pairs, key)
	} else {
		t.pairs[key] = state
		t.result(nc, state, 1)
	}
	t.nodeClass(nc, 1)
}

// result counts one result of state in or out of the totals and its
// node's counts.
func (t *trendTally) result(nc *[3]int, state string, d int) {
	nc[0] += d
	switch state {
	case "pass":
		t.point.Pass += d
		nc[1] += d
	case "fail":
		t.point.Fail += d
		nc[1] += d
		nc[2] += d
	case "error":
		t.point.Error += d
		nc[1] += d
		nc[2] += d
	case "no-data":
		t.point.NoData += d
	}
}

// nodeClass counts a node's class in or out of the node totals; a node
// without results is in none.
func (t *trendTally) nodeClass(nc *[3]int, d int) {
	switch {
	case nc[0] == 0:
	case nc[2] > 0:
		t.point.NonCompliant += d
	case nc[1] > 0:
		t.point.Compliant += d
	default:
		t.point.NodesNoData += d
	}
}
