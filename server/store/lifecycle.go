package store

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Deactivate marks node deactivated at at: it stays in the store, with
// its history, but leaves the fleet views and new rollouts until it
// checks in again (a check-in after at ends the deactivation) or is
// activated. A node deactivated already keeps its first deactivation
// time. ok is false when the store knows no such node.
func (s *Store) Deactivate(ctx context.Context, node string, at time.Time) (ok bool, err error) {
	if node == "" || at.IsZero() {
		return false, errors.New("deactivating a node: empty node name or time")
	}
	err = s.write(ctx, func(w *wtx) error {
		// A node seen only by a check-in not yet written gets its row
		// now, so that the deactivation has somewhere to go.
		if x, pending := s.touches.lookup(node); pending {
			if err := ensureNode(w, node, x.at); err != nil {
				return err
			}
		}
		res, err := w.exec(`UPDATE nodes SET deactivated = CASE WHEN deactivated = 0 THEN ? ELSE deactivated END WHERE name = ?`, ns(at), node)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		ok = n > 0
		return err
	})
	if err != nil {
		return false, fmt.Errorf("deactivating %s: %w", node, err)
	}
	return ok, nil
}

// Activate ends node's deactivation. ok is false when the store knows no
// such node.
func (s *Store) Activate(ctx context.Context, node string) (ok bool, err error) {
	if node == "" {
		return false, errors.New("activating a node: empty node name")
	}
	err = s.write(ctx, func(w *wtx) error {
		res, err := w.exec(`UPDATE nodes SET deactivated = 0 WHERE name = ?`, node)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		_, pending := s.touches.lookup(node)
		ok = n > 0 || pending
		return err
	})
	if err != nil {
		return false, fmt.Errorf("activating %s: %w", node, err)
	}
	return ok, nil
}

// Deactivated returns the deactivated nodes and when each was
// deactivated: those deactivated before before, or every one when before
// is zero. A node with a check-in after its deactivation that is not
// written yet is active again, and left out.
func (s *Store) Deactivated(ctx context.Context, before time.Time) (map[string]time.Time, error) {
	q, args := `SELECT name, deactivated FROM nodes WHERE deactivated != 0`, []any{}
	if !before.IsZero() {
		q += ` AND deactivated < ?`
		args = append(args, ns(before))
	}
	rows, err := s.rdb.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("listing deactivated nodes: %w", err)
	}
	defer rows.Close()
	out := map[string]time.Time{}
	for rows.Next() {
		var name string
		var at int64
		if err := rows.Scan(&name, &at); err != nil {
			return nil, fmt.Errorf("listing deactivated nodes: %w", err)
		}
		if x, ok := s.touches.lookup(name); ok && x.at.After(fromNS(at)) {
			continue
		}
		out[name] = fromNS(at)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing deactivated nodes: %w", err)
	}
	return out, nil
}

// Idle returns the active nodes that have not checked in since before
// (a node that never checked in counts from when it was first seen),
// sorted by name: node_ttl deactivates them.
func (s *Store) Idle(ctx context.Context, before time.Time) ([]string, error) {
	rows, err := s.rdb.QueryContext(ctx, s.d.pick(`SELECT name FROM nodes WHERE deactivated = 0 AND max(last_checkin, first_seen) < ? ORDER BY name`,
		`SELECT name FROM nodes WHERE deactivated = 0 AND GREATEST(last_checkin, first_seen) < ? ORDER BY name`), ns(before))
	if err != nil {
		return nil, fmt.Errorf("listing idle nodes: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return nil, fmt.Errorf("listing idle nodes: %w", err)
		}
		// A check-in the writer has not written yet still counts.
		if x, ok := s.touches.lookup(name); ok && !x.at.Before(before) {
			continue
		}
		out = append(out, name)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing idle nodes: %w", err)
	}
	return out, nil
}

// Purge deletes everything the store holds of node, in one transaction:
// its row, facts and facts history (and the facts blobs no other node
// refers to), reports and their events, catalog history, the rows of
// every rollout that named it, a pending enrollment under its name, and
// the sealing key it sent (a node enrolled again sends a new one).
// Its certificates stay: a revoked serial must stay refused. Catalogs
// only it used go with the next Prune. ok is false when the store knew
// nothing of node.
func (s *Store) Purge(ctx context.Context, node string) (ok bool, err error) {
	if node == "" {
		return false, errors.New("purging a node: empty node name")
	}
	err = s.write(ctx, func(w *wtx) error {
		// Check-ins not written yet would bring the row back: the
		// writer writes the ones it took for this batch before the
		// requests (runBatch), so forgetting the rest is enough.
		if s.touches.forget(node) {
			ok = true
		}
		var digests []string
		rows, err := w.query(`SELECT digest FROM facts_latest WHERE node = ?1 UNION SELECT digest FROM facts_history WHERE node = ?1`, node)
		if err != nil {
			return err
		}
		for rows.Next() {
			var d string
			if err := rows.Scan(&d); err != nil {
				rows.Close()
				return err
			}
			digests = append(digests, d)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if err := purgeReports(w, node); err != nil {
			return err
		}
		for _, q := range []string{
			`DELETE FROM facts_latest WHERE node = ?`,
			`DELETE FROM facts_history WHERE node = ?`,
			`DELETE FROM node_catalogs WHERE node = ?`,
			`DELETE FROM audit_results WHERE node = ?`,
			`DELETE FROM audit_current WHERE node = ?`,
			`DELETE FROM rollout_nodes WHERE node = ?`,
			`DELETE FROM pending WHERE name = ?`,
			`DELETE FROM node_keys WHERE name = ?`,
			`DELETE FROM nodes WHERE name = ?`,
		} {
			res, err := w.exec(q, node)
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err != nil {
				return err
			} else if n > 0 {
				ok = true
			}
		}
		for _, d := range digests {
			if _, err := w.exec(`DELETE FROM facts_blobs WHERE digest = ?1
				AND NOT EXISTS (SELECT 1 FROM facts_latest WHERE digest = ?1)
				AND NOT EXISTS (SELECT 1 FROM facts_history WHERE digest = ?1)`, d); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("purging %s: %w", node, err)
	}
	return ok, nil
}

// purgeReports deletes node's reports and their events.
func purgeReports(w *wtx, node string) error {
	// Only reports stored before migration 14 have rows in events.
	rows, err := w.query(`DELETE FROM reports WHERE node = ? RETURNING id, CASE WHEN event_data IS NULL THEN events ELSE 0 END`, node)
	if err != nil {
		return err
	}
	var withEvents []int64
	for rows.Next() {
		var id, n int64
		if err := rows.Scan(&id, &n); err != nil {
			rows.Close()
			return err
		}
		if n > 0 {
			withEvents = append(withEvents, id)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, id := range withEvents {
		if _, err := w.exec(`DELETE FROM events WHERE id >= ? AND id < ?`, id<<eventBits, (id+1)<<eventBits); err != nil {
			return err
		}
	}
	return nil
}

// forget drops node's check-ins not yet written, and reports whether
// there were any.
func (t *touches) forget(node string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, a := t.pending[node]
	_, b := t.flushing[node]
	delete(t.pending, node)
	delete(t.flushing, node)
	return a || b
}
