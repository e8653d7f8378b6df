package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// FactsChange is one change of a node's facts: from At on, its facts had
// Digest.
type FactsChange struct {
	Digest string
	At     time.Time
}

// SaveFacts records that node sent facts with digest at at. The JSON is
// stored once per digest however many nodes or check-ins send it, and the
// history gets a row only when the node's digest changes. The digest is
// the caller's (the store does not recompute it); factsJSON is ignored
// when the store already holds that digest.
func (s *Store) SaveFacts(ctx context.Context, node, digest string, factsJSON []byte, at time.Time) error {
	if node == "" || digest == "" {
		return fmt.Errorf("saving facts of %q: empty node name or digest", node)
	}
	err := s.write(ctx, func(w *wtx) error {
		var current string
		err := w.queryRow(`SELECT digest FROM facts_latest WHERE node = ?`, node).Scan(&current)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if current == digest {
			_, err := w.exec(`UPDATE facts_latest SET received = ? WHERE node = ?`, ns(at), node)
			return err
		}
		if _, err := w.exec(`INSERT INTO facts_blobs (digest, json) VALUES (?, ?) ON CONFLICT (digest) DO NOTHING`, digest, factsJSON); err != nil {
			return err
		}
		if _, err := w.exec(`INSERT INTO facts_history (node, at, digest) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`, node, ns(at), digest); err != nil {
			return err
		}
		if _, err := w.exec(`INSERT INTO facts_latest (node, digest, received) VALUES (?, ?, ?)
			ON CONFLICT (node) DO UPDATE SET digest = excluded.digest, received = excluded.received`, node, digest, ns(at)); err != nil {
			return err
		}
		return ensureNode(w, node, at)
	})
	if err != nil {
		return fmt.Errorf("saving facts of %s: %w", node, err)
	}
	return nil
}

// Facts returns node's latest facts: their digest, JSON, and when the node
// last sent them. ok is false when the node never sent facts.
func (s *Store) Facts(ctx context.Context, node string) (digest string, factsJSON []byte, updated time.Time, ok bool, err error) {
	var received int64
	err = s.rdb.QueryRowContext(ctx, `SELECT l.digest, b.json, l.received FROM facts_latest l JOIN facts_blobs b ON b.digest = l.digest WHERE l.node = ?`, node).
		Scan(&digest, &factsJSON, &received)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil, time.Time{}, false, nil
	}
	if err != nil {
		return "", nil, time.Time{}, false, fmt.Errorf("reading facts of %s: %w", node, err)
	}
	return digest, factsJSON, fromNS(received), true, nil
}

// FactsByDigest returns the facts JSON stored under digest.
func (s *Store) FactsByDigest(ctx context.Context, digest string) (factsJSON []byte, ok bool, err error) {
	err = s.rdb.QueryRowContext(ctx, `SELECT json FROM facts_blobs WHERE digest = ?`, digest).Scan(&factsJSON)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("reading facts %s: %w", digest, err)
	}
	return factsJSON, true, nil
}

// FactsDigests returns every node's latest facts digest, for the server to
// warm its cache at start (and so answer a check-in whose digest it knows
// without asking for the facts again).
func (s *Store) FactsDigests(ctx context.Context) (map[string]string, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT node, digest FROM facts_latest`)
	if err != nil {
		return nil, fmt.Errorf("listing facts digests: %w", err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var node, digest string
		if err := rows.Scan(&node, &digest); err != nil {
			return nil, fmt.Errorf("listing facts digests: %w", err)
		}
		out[node] = digest
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing facts digests: %w", err)
	}
	return out, nil
}

// DefaultHistoryLimit is how many rows a history or report listing returns
// when the caller's limit is not positive.
const DefaultHistoryLimit = 100

// FactsHistory returns the changes of node's facts, newest first, at most
// limit (DefaultHistoryLimit when limit <= 0).
func (s *Store) FactsHistory(ctx context.Context, node string, limit int) ([]FactsChange, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT digest, at FROM facts_history WHERE node = ? ORDER BY at DESC LIMIT ?`,
		node, limitOr(limit, DefaultHistoryLimit))
	if err != nil {
		return nil, fmt.Errorf("reading facts history of %s: %w", node, err)
	}
	defer rows.Close()
	var out []FactsChange
	for rows.Next() {
		var c FactsChange
		var at int64
		if err := rows.Scan(&c.Digest, &at); err != nil {
			return nil, fmt.Errorf("reading facts history of %s: %w", node, err)
		}
		c.At = fromNS(at)
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading facts history of %s: %w", node, err)
	}
	return out, nil
}
