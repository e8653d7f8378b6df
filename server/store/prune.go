package store

import (
	"context"
	"fmt"
	"time"
)

// Pruned counts what Prune removed.
type Pruned struct {
	Reports        int64
	Events         int64
	FactsChanges   int64
	FactsBlobs     int64
	CatalogChanges int64
	Catalogs       int64
	Rollouts       int64
	RolloutNodes   int64
	// AuditResults counts the audit history rows no answer about a time
	// after before needs any longer.
	AuditResults int64
}

// pruneChunk is how many reports one prune write removes: small enough
// that the writer's other requests wait milliseconds, not seconds.
const pruneChunk = 1000

// Prune removes what is older than before: reports received before it
// (with their events), facts and catalog history rows from before it
// except each node's newest, and the facts and catalogs no node or
// remaining history row refers to. Nodes and CA records stay. Reports go
// in chunks, each its own write; if ctx ends, what was removed so far
// stays removed.
func (s *Store) Prune(ctx context.Context, before time.Time) (Pruned, error) {
	var p Pruned
	for {
		var reports, events int64
		err := s.write(ctx, func(w *wtx) error {
			var err error
			reports, events, err = pruneReports(w, ns(before))
			return err
		})
		if err != nil {
			return p, fmt.Errorf("pruning reports: %w", err)
		}
		p.Reports += reports
		p.Events += events
		if reports < pruneChunk {
			break
		}
	}
	var h Pruned
	err := s.write(ctx, func(w *wtx) error {
		steps := []struct {
			n      *int64
			before bool // the query takes before as ?1
			query  string
		}{
			{&h.FactsChanges, true, `DELETE FROM facts_history WHERE at < ?1
				AND at < (SELECT MAX(at) FROM facts_history h WHERE h.node = facts_history.node)`},
			{&h.FactsBlobs, false, `DELETE FROM facts_blobs WHERE digest NOT IN (SELECT digest FROM facts_latest)
				AND digest NOT IN (SELECT digest FROM facts_history)`},
			{&h.CatalogChanges, true, `DELETE FROM node_catalogs WHERE at < ?1
				AND at < (SELECT MAX(at) FROM node_catalogs h WHERE h.node = node_catalogs.node)`},
			// Rollouts last updated before it go, the newest excepted
			// (it is what the controller resumes), and with them the
			// candidates and previous catalogs only they named.
			{&h.RolloutNodes, true, `DELETE FROM rollout_nodes WHERE rollout IN (SELECT id FROM rollouts WHERE updated < ?1
				AND id < (SELECT MAX(id) FROM rollouts))`},
			{&h.Rollouts, true, `DELETE FROM rollouts WHERE updated < ?1 AND id < (SELECT MAX(id) FROM rollouts)`},
			{&h.AuditResults, true, pruneAuditSQL},
			{&h.Catalogs, false, `DELETE FROM catalogs WHERE etag NOT IN (SELECT catalog_etag FROM nodes)
				AND etag NOT IN (SELECT previous_etag FROM nodes) AND etag NOT IN (SELECT etag FROM node_catalogs)
				AND etag NOT IN (SELECT etag FROM rollout_nodes) AND etag NOT IN (SELECT previous_etag FROM rollout_nodes)`},
		}
		for _, st := range steps {
			var args []any
			if st.before {
				args = append(args, ns(before))
			}
			res, err := w.exec(st.query, args...)
			if err != nil {
				return err
			}
			if *st.n, err = res.RowsAffected(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return p, fmt.Errorf("pruning history: %w", err)
	}
	p.FactsChanges, p.FactsBlobs, p.CatalogChanges, p.Catalogs = h.FactsChanges, h.FactsBlobs, h.CatalogChanges, h.Catalogs
	p.Rollouts, p.RolloutNodes = h.Rollouts, h.RolloutNodes
	p.AuditResults = h.AuditResults
	return p, nil
}

// pruneReports removes up to pruneChunk reports received before before,
// and their events.
func pruneReports(w *wtx, before int64) (reports, events int64, err error) {
	// Only reports stored before migration 14 have rows in events.
	rows, err := w.query(`DELETE FROM reports WHERE id IN
		(SELECT id FROM reports WHERE received < ? ORDER BY received LIMIT ?)
		RETURNING id, events, CASE WHEN event_data IS NULL THEN events ELSE 0 END`, before, pruneChunk)
	if err != nil {
		return 0, 0, err
	}
	var withEvents []int64
	for rows.Next() {
		var id, n, rowsOf int64
		if err := rows.Scan(&id, &n, &rowsOf); err != nil {
			rows.Close()
			return 0, 0, err
		}
		reports++
		events += n
		if rowsOf > 0 {
			withEvents = append(withEvents, id)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, 0, err
	}
	for _, id := range withEvents {
		if _, err := w.exec(`DELETE FROM events WHERE id >= ? AND id < ?`, id<<eventBits, (id+1)<<eventBits); err != nil {
			return 0, 0, err
		}
	}
	return reports, events, nil
}
