package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
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

func auditTrend(ctx context.Context, tx *readTx, since time.Time, step time.Duration, n int) ([]AuditTrendPoint, error) {
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
	rows, err = tx.QueryContext(ctx, tx.d.pick(`SELECT node, control, state FROM (
		SELECT node, control, state, MAX(id) FROM audit_results WHERE at <= ? GROUP BY node, control)`,
		`SELECT DISTINCT ON (node, control) node, control, state FROM audit_results WHERE at <= ? ORDER BY node, control, id DESC`), ns(since))
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

// AuditFollower keeps the fleet's compliance trend up to date from the
// audit history without reading it all again: each Follow reads only the
// rows recorded since the last, and replays them onto the pairs' states
// it holds (by index, a few bytes a pair), noting the fleet's counts at
// each whole step. It starts over when rows were deleted (a purge, a
// prune) or the deactivated nodes changed, as AuditTrend leaves out the
// nodes deactivated now. A follower is used by one goroutine at a time.
type AuditFollower struct {
	// Step is the interval of the points kept (default an hour); Keep
	// how far back they are kept (default 31 days).
	Step, Keep time.Duration

	mark     AuditMark // as of the last Follow
	started  bool
	left     map[string]bool
	nodes    map[string]int
	controls map[string]int
	pairs    map[uint64]uint8
	counts   [][3]int // per node: results, judged, failing
	point    AuditTrendPoint
	// The results now, counted for Summary: by node and by control
	// (index) and state code, and the failing ones with their evidence.
	nodeNames, controlNames []string
	byNode, byControl       [][5]int
	failing                 map[uint64]AuditState
	// points are the counts at whole steps, oldest first; next is the
	// next step to note and firstAt the time of the first row replayed.
	points  []AuditTrendPoint
	next    time.Time
	firstAt time.Time
}

// auditStates numbers the states for the pairs' map (0: none).
var auditStates = []string{"", "pass", "fail", "error", "no-data"}

// Follow brings f up to the history as it is now.
func (s *Store) Follow(ctx context.Context, f *AuditFollower, now time.Time) error {
	tx, err := s.rdb.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("following the audit history: %w", err)
	}
	defer tx.Rollback() // read-only: nothing to keep
	if err := f.follow(ctx, tx, now); err != nil {
		return fmt.Errorf("following the audit history: %w", err)
	}
	return nil
}

func (f *AuditFollower) follow(ctx context.Context, tx *readTx, now time.Time) error {
	if f.Step <= 0 {
		f.Step = time.Hour
	}
	if f.Keep <= 0 {
		f.Keep = 31 * 24 * time.Hour
	}
	var m AuditMark
	if err := tx.QueryRowContext(ctx, `SELECT
		(SELECT COALESCE(MAX(id), 0) FROM audit_results),
		(SELECT COALESCE(MAX(at), 0) FROM audit_results),
		(SELECT COUNT(*) FROM audit_results),
		(SELECT COUNT(*) FROM nodes WHERE deactivated != 0),
		(SELECT COALESCE(SUM(deactivated), 0) FROM nodes WHERE deactivated != 0)`).
		Scan(&m.LastID, &m.LastAt, &m.Rows, &m.Deactivated, &m.DeactivatedSum); err != nil {
		return err
	}
	if f.started && m == f.mark {
		f.catchUp(now)
		return nil
	}
	var added int64
	if f.started && m.Deactivated == f.mark.Deactivated && m.DeactivatedSum == f.mark.DeactivatedSum && m.LastID >= f.mark.LastID {
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM audit_results WHERE id > ?`, f.mark.LastID).Scan(&added); err != nil {
			return err
		}
	}
	if !f.started || f.mark.Rows+added != m.Rows || m.Deactivated != f.mark.Deactivated || m.DeactivatedSum != f.mark.DeactivatedSum {
		// Rows went (or the nodes left out changed): from the start.
		if err := f.reset(ctx, tx); err != nil {
			return err
		}
	}
	rows, err := tx.QueryContext(ctx, `SELECT id, node, control, at, version, state, evidence FROM audit_results WHERE id > ? AND id <= ? ORDER BY id`, f.mark.LastID, m.LastID)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var id, at int64
		var node, control, version, state string
		var evidence []byte
		if err := rows.Scan(&id, &node, &control, &at, &version, &state, &evidence); err != nil {
			return err
		}
		// A step's point holds the rows up to and including its end.
		// Rows come in id order, which is the order the auditor wrote
		// them, by pass, each pass stamped with its start.
		f.noteUntil(fromNS(at), now)
		if f.firstAt.IsZero() {
			f.firstAt = fromNS(at)
		}
		if !f.left[node] {
			f.set(AuditState{Node: node, Control: control, State: state, Version: version, At: fromNS(at), Evidence: evidence})
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	f.mark = m
	f.catchUp(now)
	return nil
}

func (f *AuditFollower) reset(ctx context.Context, tx *readTx) error {
	*f = AuditFollower{Step: f.Step, Keep: f.Keep, started: true, left: map[string]bool{}, nodes: map[string]int{},
		controls: map[string]int{}, pairs: map[uint64]uint8{}, failing: map[uint64]AuditState{}}
	rows, err := tx.QueryContext(ctx, `SELECT name FROM nodes WHERE deactivated != 0`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return err
		}
		f.left[name] = true
	}
	return rows.Err()
}

// noteUntil notes the counts at each whole step before t that is not
// noted yet (only those within Keep of now).
func (f *AuditFollower) noteUntil(t, now time.Time) {
	if f.next.IsZero() {
		f.next = t.Truncate(f.Step)
		if oldest := now.Add(-f.Keep).Truncate(f.Step); f.next.Before(oldest) {
			f.next = oldest
		}
	}
	for f.next.Before(t) {
		if !f.next.Before(now.Add(-f.Keep)) {
			p := f.point
			p.End = f.next
			f.points = append(f.points, p)
		}
		f.next = f.next.Add(f.Step)
	}
}

// followGrace is how long before now a step must have ended for a
// follower to note it without a newer row: the auditor stamps a whole
// pass with its start and writes it over a minute or more, so a step
// that ended a moment ago may still get rows.
const followGrace = 10 * time.Minute

// catchUp notes the steps that passed since the newest row (but the
// last followGrace), and drops the points older than Keep.
func (f *AuditFollower) catchUp(now time.Time) {
	if !f.next.IsZero() {
		f.noteUntil(now.Add(-followGrace), now)
	}
	cut := 0
	for cut < len(f.points) && f.points[cut].End.Before(now.Add(-f.Keep)) {
		cut++
	}
	f.points = f.points[cut:]
}

// Points returns the counts at the end of each of n buckets of step from
// since, as AuditTrend does: since and step must be whole steps of f's.
// A bucket ending after the newest step noted has the counts now; one
// ending before the history kept has none.
func (f *AuditFollower) Points(since time.Time, step time.Duration, n int) []AuditTrendPoint {
	out := make([]AuditTrendPoint, n)
	for i := range out {
		end := since.Add(time.Duration(i+1) * step)
		out[i].End = end
		j, found := slices.BinarySearchFunc(f.points, end, func(p AuditTrendPoint, t time.Time) int { return p.End.Compare(t) })
		switch {
		case found:
			out[i] = f.points[j]
		case end.Before(f.firstAt):
			// Before the history: nothing.
		case j == len(f.points):
			out[i] = f.point
			out[i].End = end
		}
	}
	return out
}

// set records r as its pair's result now (State "" when the control is
// gone), as trendTally.set does, and keeps Summary's counts.
func (f *AuditFollower) set(r AuditState) {
	node, control, state := r.Node, r.Control, r.State
	ni, ok := f.nodes[node]
	if !ok {
		ni = len(f.nodes)
		f.nodes[node] = ni
		f.counts = append(f.counts, [3]int{})
		f.nodeNames = append(f.nodeNames, node)
		f.byNode = append(f.byNode, [5]int{})
	}
	ci, ok := f.controls[control]
	if !ok {
		ci = len(f.controls)
		f.controls[control] = ci
		f.controlNames = append(f.controlNames, control)
		f.byControl = append(f.byControl, [5]int{})
	}
	key := uint64(ni)<<32 | uint64(ci)
	code := uint8(slices.Index(auditStates, state))
	if code == 255 {
		return
	}
	// A failing result's evidence (or version) may change with its
	// state staying.
	delete(f.failing, key)
	if state == "fail" || state == "error" {
		f.failing[key] = r
	}
	old := f.pairs[key]
	if old == code {
		return
	}
	f.byNode[ni][old]--
	f.byControl[ci][old]--
	f.byNode[ni][code]++
	f.byControl[ci][code]++
	nc := &f.counts[ni]
	f.nodeClass(nc, -1)
	if old != 0 {
		f.result(nc, auditStates[old], -1)
	}
	if code == 0 {
		delete(f.pairs, key)
	} else {
		f.pairs[key] = code
		f.result(nc, state, 1)
	}
	f.nodeClass(nc, 1)
}

func (f *AuditFollower) result(nc *[3]int, state string, d int) {
	t := trendTally{point: f.point}
	t.result(nc, state, d)
	f.point = t.point
}

func (f *AuditFollower) nodeClass(nc *[3]int, d int) {
	t := trendTally{point: f.point}
	t.nodeClass(nc, d)
	f.point = t.point
}

// AuditState is one (node, control) result with its evidence.
type AuditState struct {
	Node, Control, State, Version string
	At                            time.Time
	Evidence                      []byte
}

// AuditCount is how many results of one node (or one control) are in
// one state.
type AuditCount struct {
	Key, State string
	N          int
}

// AuditSummary is the results now counted, as AuditResults{} holds them
// (deactivated nodes left out), over the given controls only.
type AuditSummary struct {
	// Nodes counts by node and state, sorted by node; Controls by
	// control and state.
	Nodes, Controls []AuditCount
	// Failing are the results that fail or are in error, sorted by
	// node then control, with their evidence.
	Failing []AuditState
}

// AuditSummary counts the results of controls now, in the database
// rather than row by row: a whole-fleet view of 10,000 nodes × 50
// controls reads thousands of rows instead of half a million. The counts
// are taken over every row, then the rows of deactivated nodes and of
// other controls (stale rows, between a site change and the next
// evaluation) are taken out: filtering every row in the query costs
// twice as much as the rare correction.
func (s *Store) AuditSummary(ctx context.Context, controls []string) (AuditSummary, error) {
	var out AuditSummary
	tx, err := s.rdb.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return out, fmt.Errorf("counting audit results: %w", err)
	}
	defer tx.Rollback() // read-only: nothing to keep
	known := map[string]bool{}
	for _, c := range controls {
		known[c] = true
	}
	counts := func(query string, args ...any) ([]AuditCount, error) {
		rows, err := tx.QueryContext(ctx, query, args...)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		var cs []AuditCount
		for rows.Next() {
			var c AuditCount
			if err := rows.Scan(&c.Key, &c.State, &c.N); err != nil {
				return nil, err
			}
			cs = append(cs, c)
		}
		return cs, rows.Err()
	}
	byNode, err := counts(`SELECT node, state, COUNT(*) FROM audit_current GROUP BY node, state ORDER BY node`)
	if err != nil {
		return out, fmt.Errorf("counting audit results: %w", err)
	}
	byControl, err := counts(`SELECT control, state, COUNT(*) FROM audit_current GROUP BY control, state ORDER BY control`)
	if err != nil {
		return out, fmt.Errorf("counting audit results: %w", err)
	}
	// What to take out: the rows of deactivated nodes (few, by the
	// primary key) and of controls not asked for.
	var stale []string
	for _, c := range byControl {
		if !known[c.Key] && !slices.Contains(stale, c.Key) {
			stale = append(stale, c.Key)
		}
	}
	staleJSON, err := json.Marshal(stale)
	if err != nil {
		return out, err
	}
	type pair struct{ key, state string }
	minus := map[pair]int{}
	left := map[string]bool{}
	rows, err := tx.QueryContext(ctx, `SELECT name FROM nodes WHERE deactivated != 0`)
	if err != nil {
		return out, fmt.Errorf("counting audit results: %w", err)
	}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			rows.Close()
			return out, fmt.Errorf("counting audit results: %w", err)
		}
		left[name] = true
	}
	rows.Close()
	if len(stale) > 0 {
		// Stale rows of active nodes, by node; a deactivated node's rows
		// go whole below.
		cs, err := counts(tx.d.pick(`SELECT node, state, COUNT(*) FROM audit_current WHERE control IN (SELECT value FROM json_each(?)) GROUP BY node, state`,
			`SELECT node, state, COUNT(*) FROM audit_current WHERE control IN (SELECT jsonb_array_elements_text(?::jsonb)) GROUP BY node, state`), string(staleJSON))
		if err != nil {
			return out, fmt.Errorf("counting audit results: %w", err)
		}
		for _, c := range cs {
			if !left[c.Key] {
				minus[pair{"n:" + c.Key, c.State}] += c.N
			}
		}
	}
	if len(left) > 0 {
		cs, err := counts(`SELECT control, state, COUNT(*) FROM audit_current WHERE node IN (SELECT name FROM nodes WHERE deactivated != 0) GROUP BY control, state`)
		if err != nil {
			return out, fmt.Errorf("counting audit results: %w", err)
		}
		for _, c := range cs {
			minus[pair{"c:" + c.Key, c.State}] += c.N
		}
	}
	for _, c := range byNode {
		if left[c.Key] {
			continue
		}
		if c.N -= minus[pair{"n:" + c.Key, c.State}]; c.N > 0 {
			out.Nodes = append(out.Nodes, c)
		}
	}
	for _, c := range byControl {
		if !known[c.Key] {
			continue
		}
		if c.N -= minus[pair{"c:" + c.Key, c.State}]; c.N > 0 {
			out.Controls = append(out.Controls, c)
		}
	}
	rows, err = tx.QueryContext(ctx, `SELECT node, control, state, version, at, evidence FROM audit_current
		WHERE state IN ('fail', 'error') ORDER BY node, control`)
	if err != nil {
		return out, fmt.Errorf("reading failing audit results: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var r AuditState
		var at int64
		if err := rows.Scan(&r.Node, &r.Control, &r.State, &r.Version, &at, &r.Evidence); err != nil {
			return out, fmt.Errorf("reading failing audit results: %w", err)
		}
		if left[r.Node] || !known[r.Control] {
			continue
		}
		r.At = fromNS(at)
		out.Failing = append(out.Failing, r)
	}
	if err := rows.Err(); err != nil {
		return out, fmt.Errorf("reading failing audit results: %w", err)
	}
	return out, nil
}

// AuditControlIDs returns the controls that have results now.
func (s *Store) AuditControlIDs(ctx context.Context) ([]string, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT DISTINCT control FROM audit_current ORDER BY control`)
	if err != nil {
		return nil, fmt.Errorf("listing audit controls: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("listing audit controls: %w", err)
		}
		out = append(out, id)
	}
	return out, rows.Err()
}
