package store

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"
)

// AuditRecord is one audit control's state on one node, as the server
// judged it at a site version.
type AuditRecord struct {
	Node    string
	Control string
	// At is when the state (or its evidence) last changed.
	At      time.Time
	Version string
	// State is pass, fail, error or no-data.
	State string
	// Evidence is the server's JSON of the violations (fail) or the error
	// text (error); the store keeps it as it is and compares it bytewise.
	Evidence []byte
}

// SaveAudit records the whole result set of each node in sets (node →
// one record per control; Node and At of the records are ignored), judged
// at version at time at: a history row for each (node, control) whose
// state or evidence changed, and a "gone" row for each control a node had
// that its set no longer holds (a control removed from the site), so that
// AuditResults at any time answers as the server judged then. A set equal
// to the stored one writes nothing. It returns how many rows of history
// it added.
func (s *Store) SaveAudit(ctx context.Context, version string, at time.Time, sets map[string][]AuditRecord) (int, error) {
	changed := 0
	nodes := slices.Sorted(maps.Keys(sets))
	err := s.write(ctx, func(w *wtx) error {
		changed = 0
		for _, node := range nodes {
			n, err := saveAuditNode(w, node, version, ns(at), sets[node])
			if err != nil {
				return fmt.Errorf("node %s: %w", node, err)
			}
			changed += n
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("saving audit results: %w", err)
	}
	return changed, nil
}

func saveAuditNode(w *wtx, node, version string, at int64, recs []AuditRecord) (int, error) {
	type cur struct {
		state    string
		evidence []byte
	}
	have := map[string]cur{}
	rows, err := w.query(`SELECT control, state, evidence FROM audit_current WHERE node = ?`, node)
	if err != nil {
		return 0, err
	}
	for rows.Next() {
		var c string
		var v cur
		if err := rows.Scan(&c, &v.state, &v.evidence); err != nil {
			rows.Close()
			return 0, err
		}
		have[c] = v
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	changed := 0
	put := func(control, state string, evidence []byte) error {
		if evidence == nil {
			evidence = []byte{}
		}
		if _, err := w.exec(`INSERT INTO audit_results (node, control, at, version, state, evidence) VALUES (?, ?, ?, ?, ?, ?)`,
			node, control, at, version, state, evidence); err != nil {
			return err
		}
		changed++
		if state == "" {
			_, err := w.exec(`DELETE FROM audit_current WHERE node = ? AND control = ?`, node, control)
			return err
		}
		_, err := w.exec(`INSERT INTO audit_current (node, control, at, version, state, evidence) VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT (node, control) DO UPDATE SET at = excluded.at, version = excluded.version, state = excluded.state, evidence = excluded.evidence`,
			node, control, at, version, state, evidence)
		return err
	}
	seen := map[string]bool{}
	for _, r := range recs {
		if r.Control == "" || r.State == "" {
			return 0, fmt.Errorf("an audit record needs a control and a state, got %q %q", r.Control, r.State)
		}
		seen[r.Control] = true
		if h, ok := have[r.Control]; ok && h.state == r.State && bytes.Equal(h.evidence, r.Evidence) {
			continue
		}
		if err := put(r.Control, r.State, r.Evidence); err != nil {
			return 0, err
		}
	}
	for _, c := range slices.Sorted(maps.Keys(have)) {
		if !seen[c] {
			if err := put(c, "", nil); err != nil {
				return 0, err
			}
		}
	}
	return changed, nil
}

// AuditQuery selects audit results for AuditResults.
type AuditQuery struct {
	// Node and Control narrow to one node, one control ("" for all).
	Node    string
	Control string
	// At is the time the results are wanted for: each pair's newest row
	// at or before it. Zero is now.
	At time.Time
	// Inactive includes deactivated nodes, which audits leave out.
	Inactive bool
}

// AuditResults returns the audit results q selects, sorted by node, then
// control: as they are now, or as they stood at q.At.
func (s *Store) AuditResults(ctx context.Context, q AuditQuery) ([]AuditRecord, error) {
	var query string
	var args []any
	if q.At.IsZero() {
		query = `SELECT node, control, at, version, state, evidence FROM audit_current r WHERE TRUE`
	} else {
		// sqlite gives the bare columns of the row holding MAX(id), and
		// PostgreSQL the first row of each DISTINCT ON group: each pair's
		// newest row at or before At (ids grow with time).
		query = s.d.pick(`SELECT node, control, at, version, state, evidence FROM (
			SELECT node, control, at, version, state, evidence, MAX(id) FROM audit_results WHERE at <= ?
			GROUP BY node, control) r WHERE state != ''`, `SELECT node, control, at, version, state, evidence FROM (
			SELECT DISTINCT ON (node, control) node, control, at, version, state, evidence FROM audit_results WHERE at <= ?
			ORDER BY node, control, id DESC) r WHERE state != ''`)
		args = append(args, ns(q.At))
	}
	if q.Node != "" {
		query += ` AND r.node = ?`
		args = append(args, q.Node)
	}
	if q.Control != "" {
		query += ` AND r.control = ?`
		args = append(args, q.Control)
	}
	if !q.Inactive {
		query += ` AND r.node NOT IN (SELECT name FROM nodes WHERE deactivated != 0)`
	}
	rows, err := s.rdb.QueryContext(ctx, query+` ORDER BY r.node, r.control`, args...)
	if err != nil {
		return nil, fmt.Errorf("reading audit results: %w", err)
	}
	defer rows.Close()
	var out []AuditRecord
	for rows.Next() {
		var r AuditRecord
		var at int64
		if err := rows.Scan(&r.Node, &r.Control, &at, &r.Version, &r.State, &r.Evidence); err != nil {
			return nil, fmt.Errorf("reading audit results: %w", err)
		}
		r.At = fromNS(at)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading audit results: %w", err)
	}
	return out, nil
}

// PutAuditControls records the metadata of controls (id → the server's
// JSON of it), replacing what an id had: a control gone from the site
// keeps its last metadata for the answers about the past.
func (s *Store) PutAuditControls(ctx context.Context, controls map[string][]byte) error {
	err := s.write(ctx, func(w *wtx) error {
		for _, id := range slices.Sorted(maps.Keys(controls)) {
			if _, err := w.exec(`INSERT INTO audit_controls (id, meta) VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET meta = excluded.meta`,
				id, controls[id]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("saving audit controls: %w", err)
	}
	return nil
}

// AuditControls returns every control's metadata as PutAuditControls
// last saved it, by id.
func (s *Store) AuditControls(ctx context.Context) (map[string][]byte, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT id, meta FROM audit_controls`)
	if err != nil {
		return nil, fmt.Errorf("reading audit controls: %w", err)
	}
	defer rows.Close()
	out := map[string][]byte{}
	for rows.Next() {
		var id string
		var meta []byte
		if err := rows.Scan(&id, &meta); err != nil {
			return nil, fmt.Errorf("reading audit controls: %w", err)
		}
		out[id] = meta
	}
	return out, rows.Err()
}

// pruneAuditSQL removes the audit history rows older than ?1 that no
// answer at or after ?1 needs: a row followed by another at or before
// ?1 (that one answers), and a "gone" row (no row answers the same).
const pruneAuditSQL = `DELETE FROM audit_results WHERE at < ?1 AND (state = '' OR EXISTS (
	SELECT 1 FROM audit_results n WHERE n.node = audit_results.node AND n.control = audit_results.control
	AND n.id > audit_results.id AND n.at <= ?1))`

// AuditReports returns what the audit controls read of node's reports:
// its last real (not noop) run, and its newest report that checked its
// own state (a real run or an audit run), each with its stored events;
// nil when there is none.
func (s *Store) AuditReports(ctx context.Context, node string) (last, check *Report, err error) {
	tx, err := s.rdb.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, nil, fmt.Errorf("reading the reports of %s: %w", node, err)
	}
	defer tx.Rollback() // read-only: nothing to keep
	one := func(where string) (*Report, error) {
		var r Report
		var id, received, started, duration int64
		var events int
		var eventData []byte
		sm := &r.Summary
		err := tx.QueryRowContext(ctx, `SELECT id, node, run_id, received, version, catalog_digest, noop, audit, started, duration,
			resources, in_sync, changed, failed, skipped, unknown, refreshed, drift, events, event_data FROM reports
			WHERE node = ? AND partial = 0 AND `+where+` ORDER BY started DESC, id DESC LIMIT 1`, node).Scan(&id, &r.Node, &r.RunID, &received, &r.Version, &r.CatalogDigest, &r.Noop, &r.Audit, &started, &duration,
			&sm.Resources, &sm.InSync, &sm.Changed, &sm.Failed, &sm.Skipped, &sm.Unknown, &sm.Refreshed, &sm.Drift, &events, &eventData)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		r.Received, r.Started, r.Duration = fromNS(received), fromNS(started), time.Duration(duration)
		if r.Events, err = reportEvents(ctx, tx, id, events, eventData); err != nil {
			return nil, err
		}
		return &r, nil
	}
	if last, err = one(`noop = 0`); err != nil {
		return nil, nil, fmt.Errorf("reading the last run of %s: %w", node, err)
	}
	if check, err = one(`(noop = 0 OR audit != 0)`); err != nil {
		return nil, nil, fmt.Errorf("reading the last check of %s: %w", node, err)
	}
	return last, check, nil
}
