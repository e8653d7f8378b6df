package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// PutNodeKey records node's X25519 public key, the one compile seals its
// catalog's sensitive values to, replacing the one before. changed says
// the key differs from the recorded one (or none was).
func (s *Store) PutNodeKey(ctx context.Context, node string, key []byte, at time.Time) (changed bool, err error) {
	err = s.write(ctx, func(w *wtx) error {
		var old []byte
		switch err := w.queryRow(`SELECT key FROM node_keys WHERE name = ?`, node).Scan(&old); {
		case err == nil:
			if string(old) == string(key) {
				return nil
			}
		case !errors.Is(err, sql.ErrNoRows):
			return err
		}
		changed = true
		_, err := w.exec(`INSERT INTO node_keys (name, key, updated) VALUES (?, ?, ?)
			ON CONFLICT (name) DO UPDATE SET key = excluded.key, updated = excluded.updated`, node, key, ns(at))
		return err
	})
	if err != nil {
		return false, fmt.Errorf("recording the sealing key of %s: %w", node, err)
	}
	return changed, nil
}

// NodeKeys returns every node's recorded X25519 public key, by node.
func (s *Store) NodeKeys(ctx context.Context) (map[string][]byte, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT name, key FROM node_keys`)
	if err != nil {
		return nil, fmt.Errorf("reading the nodes' sealing keys: %w", err)
	}
	defer rows.Close()
	out := map[string][]byte{}
	for rows.Next() {
		var name string
		var key []byte
		if err := rows.Scan(&name, &key); err != nil {
			return nil, fmt.Errorf("reading the nodes' sealing keys: %w", err)
		}
		out[name] = key
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading the nodes' sealing keys: %w", err)
	}
	return out, nil
}
