package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// WebSession is a signed-in session on the HTTP port.
type WebSession struct {
	// ID is the hex SHA-256 of the session cookie's value: the store
	// never holds the cookie itself.
	ID      string
	Name    string
	Created time.Time
	Expires time.Time
}

// PutLogin stores, or replaces, the login name with the password hash
// (a PHC string the server made). Replacing a password ends the name's
// sessions: whoever knew the old one is signed out.
func (s *Store) PutLogin(ctx context.Context, name, hash string, at time.Time) error {
	err := s.write(ctx, func(w *wtx) error {
		if _, err := w.exec(`INSERT INTO web_logins (name, hash, created) VALUES (?, ?, ?)
			ON CONFLICT (name) DO UPDATE SET hash = excluded.hash, created = excluded.created`, name, hash, ns(at)); err != nil {
			return err
		}
		_, err := w.exec(`DELETE FROM web_sessions WHERE name = ?`, name)
		return err
	})
	if err != nil {
		return fmt.Errorf("storing login %s: %w", name, err)
	}
	return nil
}

// Login returns the password hash of the login name; ok is false when
// there is none.
func (s *Store) Login(ctx context.Context, name string) (hash string, ok bool, err error) {
	err = s.rdb.QueryRowContext(ctx, `SELECT hash FROM web_logins WHERE name = ?`, name).Scan(&hash)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("reading login %s: %w", name, err)
	}
	return hash, true, nil
}

// PutSession stores a new session, and drops the sessions that expired
// before it was made.
func (s *Store) PutSession(ctx context.Context, ws WebSession) error {
	err := s.write(ctx, func(w *wtx) error {
		if _, err := w.exec(`DELETE FROM web_sessions WHERE expires <= ?`, ns(ws.Created)); err != nil {
			return err
		}
		_, err := w.exec(`INSERT INTO web_sessions (id, name, created, expires) VALUES (?, ?, ?, ?)`,
			ws.ID, ws.Name, ns(ws.Created), ns(ws.Expires))
		return err
	})
	if err != nil {
		return fmt.Errorf("storing a session for %s: %w", ws.Name, err)
	}
	return nil
}

// Session returns the session with this id (the hash of its cookie),
// expired or not: the caller decides by its clock. ok is false when
// there is none.
func (s *Store) Session(ctx context.Context, id string) (ws WebSession, ok bool, err error) {
	var created, expires int64
	err = s.rdb.QueryRowContext(ctx, `SELECT name, created, expires FROM web_sessions WHERE id = ?`, id).Scan(&ws.Name, &created, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return WebSession{}, false, nil
	}
	if err != nil {
		return WebSession{}, false, fmt.Errorf("reading a session: %w", err)
	}
	ws.ID, ws.Created, ws.Expires = id, fromNS(created), fromNS(expires)
	return ws, true, nil
}

// DeleteSession ends the session with this id; ending none is no error.
func (s *Store) DeleteSession(ctx context.Context, id string) error {
	err := s.write(ctx, func(w *wtx) error {
		_, err := w.exec(`DELETE FROM web_sessions WHERE id = ?`, id)
		return err
	})
	if err != nil {
		return fmt.Errorf("ending a session: %w", err)
	}
	return nil
}
