package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// Node is what the store knows of one node: its last check-in, its
// current catalog, its last compile error and its newest run.
type Node struct {
	Name         string
	FirstSeen    time.Time
	LastCheckin  time.Time
	AgentVersion string
	NextCheckin  time.Time // as the server told the node at its last check-in

	CatalogEtag    string    // the catalog the node should run now; "" when none
	CatalogVersion string    // the site version of that catalog
	CatalogSaved   time.Time // when it became the node's current catalog
	PreviousEtag   string    // the current catalog before that one

	// CompileError is why the node's catalog failed to compile at
	// CompileVersion; "" when the last compile succeeded.
	CompileError   string
	CompileVersion string

	FactsDigest  string
	FactsUpdated time.Time

	// AppliedEtag is the catalog digest of the newest run that was not
	// noop: the catalog the host was last made to match.
	AppliedEtag string
	// AppliedVersion is the site version of that run.
	AppliedVersion string
	// The newest run by start time (a spooled older report that arrives
	// late does not replace it).
	LastRunID    string
	LastReport   time.Time // when the server received it
	LastStarted  time.Time
	LastNoop     bool
	LastExitCode int
	LastSummary  Summary

	// Deactivated is when the node was deactivated (see Deactivate);
	// zero while it is active.
	Deactivated time.Time
	// Drift is Summary.Drift of the newest report that checked the
	// node's own state: an audit run or a real (not noop) run.
	Drift int
}

// touch is one check-in waiting in memory to be written.
type touch struct {
	node         string
	at, next     time.Time
	agentVersion string
}

// touches holds check-ins between Checkin and the writer's flush: pending
// ones, and the ones the writer is committing now (so that readers still
// see them until they are in the file).
type touches struct {
	mu       sync.Mutex
	pending  map[string]touch
	flushing map[string]touch
	wake     chan struct{} // tells an idle writer there is something to flush
}

func (t *touches) init() {
	t.pending = map[string]touch{}
	t.wake = make(chan struct{}, 1)
}

func (t *touches) add(x touch) {
	t.mu.Lock()
	if old, ok := t.pending[x.node]; !ok || !old.at.After(x.at) {
		t.pending[x.node] = x
	}
	t.mu.Unlock()
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// take moves the pending check-ins to flushing and returns them.
func (t *touches) take() []touch {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.pending) == 0 {
		return nil
	}
	t.flushing, t.pending = t.pending, make(map[string]touch, len(t.pending))
	out := make([]touch, 0, len(t.flushing))
	for _, x := range t.flushing {
		out = append(out, x)
	}
	return out
}

// done forgets the check-ins the writer has committed.
func (t *touches) done() {
	t.mu.Lock()
	t.flushing = nil
	t.mu.Unlock()
}

// restore puts check-ins that failed to commit back, unless a newer one
// of the same node came meanwhile.
func (t *touches) restore() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for k, x := range t.flushing {
		if _, ok := t.pending[k]; !ok {
			t.pending[k] = x
		}
	}
	t.flushing = nil
}

// lookup returns the newest unwritten check-in of node.
func (t *touches) lookup(node string) (touch, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if x, ok := t.pending[node]; ok {
		return x, true
	}
	x, ok := t.flushing[node]
	return x, ok
}

// snapshot returns every unwritten check-in, the newest per node.
func (t *touches) snapshot() map[string]touch {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[string]touch, len(t.pending)+len(t.flushing))
	for k, x := range t.flushing {
		out[k] = x
	}
	for k, x := range t.pending {
		out[k] = x
	}
	return out
}

// touchConflict is how a check-in meets the node's row: a newer check-in
// wins, an older one (a late batch, or another server's) changes nothing,
// and a check-in after a deactivation ends it.
const touchConflict = `ON CONFLICT (name) DO UPDATE SET last_checkin = excluded.last_checkin, agent_version = excluded.agent_version, next_checkin = excluded.next_checkin,
		deactivated = CASE WHEN excluded.last_checkin > nodes.deactivated THEN 0 ELSE nodes.deactivated END
	WHERE excluded.last_checkin >= nodes.last_checkin`

func writeTouches(w *wtx, ts []touch) error {
	if w.d.pg {
		// One statement for the whole batch: on PostgreSQL each
		// statement is a round trip, and a fleet checks in by
		// thousands. ts holds each node once, as one upsert must.
		names, versions := make([]string, len(ts)), make([]string, len(ts))
		ats, nexts := make([]int64, len(ts)), make([]int64, len(ts))
		for i, x := range ts {
			names[i], versions[i], ats[i], nexts[i] = x.node, x.agentVersion, ns(x.at), ns(x.next)
		}
		_, err := w.exec(`INSERT INTO nodes (name, first_seen, last_checkin, agent_version, next_checkin)
			SELECT n, a, a, v, x FROM unnest(?::text[], ?::bigint[], ?::text[], ?::bigint[]) AS t (n, a, v, x) `+touchConflict,
			names, ats, versions, nexts)
		if err != nil {
			return fmt.Errorf("%d nodes: %w", len(ts), err)
		}
		return nil
	}
	for _, x := range ts {
		_, err := w.exec(`INSERT INTO nodes (name, first_seen, last_checkin, agent_version, next_checkin) VALUES (?, ?, ?, ?, ?) `+touchConflict,
			x.node, ns(x.at), ns(x.at), x.agentVersion, ns(x.next))
		if err != nil {
			return fmt.Errorf("node %s: %w", x.node, err)
		}
	}
	return nil
}

// ensureNode creates node's row when it has none.
func ensureNode(w *wtx, node string, at time.Time) error {
	_, err := w.exec(`INSERT INTO nodes (name, first_seen) VALUES (?, ?) ON CONFLICT (name) DO NOTHING`, node, ns(at))
	return err
}

// Checkin records that node checked in at at, running agentVersion, and
// was told to come back at next.
//
// A check-in is not individually durable: it is kept in memory (the newest
// per node wins) and written with the writer's next batch, or after
// Options.CheckinDelay when nothing else is written, so that a fleet
// checking in costs no transaction each. A crash loses at most that
// window of check-ins, which each node's next check-in repairs. Node and
// Nodes see check-ins not yet written; Flush waits for them.
func (s *Store) Checkin(ctx context.Context, node string, at time.Time, agentVersion string, next time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if node == "" {
		return errors.New("recording check-in: empty node name")
	}
	// Under the read lock, so that Close's last flush sees every touch
	// added before it.
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return fmt.Errorf("recording check-in of %s: %w", node, ErrClosed)
	}
	s.touches.add(touch{node: node, at: at, next: next, agentVersion: agentVersion})
	return nil
}

const nodeColumns = `n.name, n.first_seen, n.last_checkin, n.agent_version, n.next_checkin,
	n.catalog_etag, COALESCE(c.version, ''), n.catalog_saved, n.previous_etag,
	n.compile_error, n.compile_version, COALESCE(f.digest, ''), COALESCE(f.received, 0),
	n.applied_etag, n.applied_version, n.last_run_id, n.last_received, n.last_started, n.last_noop, n.last_exit_code,
	n.last_resources, n.last_in_sync, n.last_changed, n.last_failed, n.last_skipped, n.last_unknown, n.last_refreshed,
	n.deactivated, n.drift
	FROM nodes n
	LEFT JOIN catalogs c ON c.etag = n.catalog_etag
	LEFT JOIN facts_latest f ON f.node = n.name`

func scanNode(sc interface{ Scan(...any) error }) (Node, error) {
	var n Node
	var first, checkin, next, saved, facts, received, started, deactivated int64
	err := sc.Scan(&n.Name, &first, &checkin, &n.AgentVersion, &next,
		&n.CatalogEtag, &n.CatalogVersion, &saved, &n.PreviousEtag,
		&n.CompileError, &n.CompileVersion, &n.FactsDigest, &facts,
		&n.AppliedEtag, &n.AppliedVersion, &n.LastRunID, &received, &started, &n.LastNoop, &n.LastExitCode,
		&n.LastSummary.Resources, &n.LastSummary.InSync, &n.LastSummary.Changed, &n.LastSummary.Failed,
		&n.LastSummary.Skipped, &n.LastSummary.Unknown, &n.LastSummary.Refreshed,
		&deactivated, &n.Drift)
	n.FirstSeen, n.LastCheckin, n.NextCheckin = fromNS(first), fromNS(checkin), fromNS(next)
	n.CatalogSaved, n.FactsUpdated = fromNS(saved), fromNS(facts)
	n.LastReport, n.LastStarted = fromNS(received), fromNS(started)
	n.Deactivated = fromNS(deactivated)
	return n, err
}

// apply lays an unwritten check-in over what the file says.
func (x touch) apply(n *Node) {
	if x.at.Before(n.LastCheckin) {
		return
	}
	n.LastCheckin, n.AgentVersion, n.NextCheckin = x.at, x.agentVersion, x.next
	// As writeTouches does: a check-in after the deactivation ends it.
	if x.at.After(n.Deactivated) {
		n.Deactivated = time.Time{}
	}
	if n.FirstSeen.IsZero() {
		n.FirstSeen = x.at
	}
}

// Node returns what the store knows of name; ok is false when nothing.
func (s *Store) Node(ctx context.Context, name string) (n Node, ok bool, err error) {
	// Look at the unwritten check-ins before reading the file: one the
	// writer commits in between is then in one or the other.
	x, found := s.touches.lookup(name)
	n, err = scanNode(s.rdb.QueryRowContext(ctx, `SELECT `+nodeColumns+` WHERE n.name = ?`, name))
	switch {
	case errors.Is(err, sql.ErrNoRows):
		n = Node{Name: name}
	case err != nil:
		return Node{}, false, fmt.Errorf("reading node %s: %w", name, err)
	default:
		ok = true
	}
	if found {
		x.apply(&n)
		ok = true
	}
	return n, ok, nil
}

// Nodes returns every node, sorted by name.
func (s *Store) Nodes(ctx context.Context) ([]Node, error) {
	return s.NodesAfter(ctx, "", 0)
}

// NodesAfter returns the nodes named after after, sorted by name: at
// most limit of them (every one when limit <= 0). A list call pages
// through the fleet with it, the last name of one page being the next
// page's after.
func (s *Store) NodesAfter(ctx context.Context, after string, limit int) ([]Node, error) {
	// Before the read, as in Node.
	pending := s.touches.snapshot()
	q, args := `SELECT `+nodeColumns+` WHERE n.name > ? ORDER BY n.name`, []any{after}
	if limit > 0 {
		q += ` LIMIT ?`
		args = append(args, limit)
	}
	rows, err := s.rdb.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("listing nodes: %w", err)
	}
	defer rows.Close()
	var out []Node
	for rows.Next() {
		n, err := scanNode(rows)
		if err != nil {
			return nil, fmt.Errorf("listing nodes: %w", err)
		}
		if x, ok := pending[n.Name]; ok {
			x.apply(&n)
			delete(pending, n.Name)
		}
		out = append(out, n)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing nodes: %w", err)
	}
	// Nodes seen only by a check-in not yet written: those in this page's
	// range (after the cursor and, on a full page, before its last name).
	added := false
	for _, x := range pending {
		if x.node <= after {
			continue
		}
		if limit > 0 && len(out) == limit && x.node > out[len(out)-1].Name {
			continue
		}
		n := Node{Name: x.node}
		x.apply(&n)
		out = append(out, n)
		added = true
	}
	if added {
		slices.SortFunc(out, func(a, b Node) int { return strings.Compare(a.Name, b.Name) })
		if limit > 0 && len(out) > limit {
			out = out[:limit]
		}
	}
	return out, nil
}
