package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/herdcm/herd/server/ca"
)

// The store keeps the CA's records.
var _ ca.Store = (*Store)(nil)

// PutCert stores an issued certificate. It fails with ca.ErrExists when
// c.Name has an unrevoked certificate; revoked records of the name stay,
// so that their serials stay refused, and Cert returns the newest.
func (s *Store) PutCert(ctx context.Context, c ca.Cert) error {
	err := s.write(ctx, func(w *wtx) error {
		if c.Supersedes != "" {
			res, err := w.exec(`UPDATE certs SET superseded_by = ? WHERE serial = ? AND name = ? AND revoked_at = 0 AND superseded_by = ''`,
				c.Serial, c.Supersedes, c.Name)
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err != nil {
				return err
			} else if n != 1 {
				return fmt.Errorf("no current certificate with serial %s: %w", c.Supersedes, ca.ErrNotFound)
			}
		}
		var one int
		err := w.queryRow(`SELECT 1 FROM certs WHERE name = ? AND revoked_at = 0 AND superseded_by = ''`, c.Name).Scan(&one)
		if err == nil {
			return ca.ErrExists
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		_, err = w.exec(`INSERT INTO certs (name, serial, der, admin, not_after, issued, revoked_at, supersedes) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			c.Name, c.Serial, c.DER, c.Admin, ns(c.NotAfter), ns(c.Issued), ns(c.RevokedAt), c.Supersedes)
		if err != nil && c.RevokedAt.IsZero() && isUnique(err, "certs_valid", "certs.name") {
			// Another writer (a second server on one PostgreSQL store)
			// stored a current certificate of the name between the
			// SELECT above and this INSERT: certs_valid refused it.
			return ca.ErrExists
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("storing certificate of %q: %w", c.Name, err)
	}
	return nil
}

const certColumns = `name, serial, der, admin, not_after, issued, revoked_at, supersedes, superseded_by FROM certs`

func scanCert(sc interface{ Scan(...any) error }) (ca.Cert, error) {
	var c ca.Cert
	var notAfter, issued, revoked int64
	err := sc.Scan(&c.Name, &c.Serial, &c.DER, &c.Admin, &notAfter, &issued, &revoked, &c.Supersedes, &c.SupersededBy)
	c.NotAfter, c.Issued, c.RevokedAt = fromNS(notAfter), fromNS(issued), fromNS(revoked)
	return c, err
}

// Cert returns the newest certificate record of name, revoked or not.
func (s *Store) Cert(ctx context.Context, name string) (ca.Cert, bool, error) {
	c, err := scanCert(s.rdb.QueryRowContext(ctx, `SELECT `+certColumns+` WHERE name = ? ORDER BY id DESC LIMIT 1`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return ca.Cert{}, false, nil
	}
	if err != nil {
		return ca.Cert{}, false, fmt.Errorf("reading certificate of %q: %w", name, err)
	}
	return c, true, nil
}

// CertBySerial returns the certificate record with this serial, revoked
// or not.
func (s *Store) CertBySerial(ctx context.Context, serial string) (ca.Cert, bool, error) {
	c, err := scanCert(s.rdb.QueryRowContext(ctx, `SELECT `+certColumns+` WHERE serial = ?`, serial))
	if errors.Is(err, sql.ErrNoRows) {
		return ca.Cert{}, false, nil
	}
	if err != nil {
		return ca.Cert{}, false, fmt.Errorf("reading certificate with serial %s: %w", serial, err)
	}
	return c, true, nil
}

// Certs returns every certificate record by name, newest first per name.
func (s *Store) Certs(ctx context.Context) ([]ca.Cert, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT `+certColumns+` ORDER BY name, id DESC`)
	if err != nil {
		return nil, fmt.Errorf("listing certificates: %w", err)
	}
	defer rows.Close()
	var out []ca.Cert
	for rows.Next() {
		c, err := scanCert(rows)
		if err != nil {
			return nil, fmt.Errorf("listing certificates: %w", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing certificates: %w", err)
	}
	return out, nil
}

// Revoke marks name's unrevoked certificates (the current one and those it
// superseded) revoked at at (now when at is
// zero). It fails with ca.ErrNotFound when name has none.
func (s *Store) Revoke(ctx context.Context, name string, at time.Time) error {
	if at.IsZero() {
		at = time.Now() // a zero time would read as "not revoked"
	}
	err := s.write(ctx, func(w *wtx) error {
		res, err := w.exec(`UPDATE certs SET revoked_at = ? WHERE name = ? AND revoked_at = 0`, ns(at), name)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return fmt.Errorf("no unrevoked certificate: %w", ca.ErrNotFound)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("revoking %q: %w", name, err)
	}
	return nil
}

// Revoked returns the serials of every revoked certificate, sorted.
func (s *Store) Revoked(ctx context.Context) ([]string, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT serial FROM certs WHERE revoked_at != 0 ORDER BY serial`)
	if err != nil {
		return nil, fmt.Errorf("listing revoked certificates: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var serial string
		if err := rows.Scan(&serial); err != nil {
			return nil, fmt.Errorf("listing revoked certificates: %w", err)
		}
		out = append(out, serial)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing revoked certificates: %w", err)
	}
	return out, nil
}

// PutPending stores, or replaces, the request of p.Name waiting for an
// operator.
func (s *Store) PutPending(ctx context.Context, p ca.Pending) error {
	err := s.write(ctx, func(w *wtx) error {
		_, err := w.exec(`INSERT INTO pending (name, csr, requested, source) VALUES (?, ?, ?, ?)
			ON CONFLICT (name) DO UPDATE SET csr = excluded.csr, requested = excluded.requested, source = excluded.source`,
			p.Name, p.CSR, ns(p.Requested), p.Source)
		return err
	})
	if err != nil {
		return fmt.Errorf("storing pending request of %q: %w", p.Name, err)
	}
	return nil
}

// Pending returns the pending request of name.
func (s *Store) Pending(ctx context.Context, name string) (ca.Pending, bool, error) {
	p := ca.Pending{Name: name}
	var requested int64
	err := s.rdb.QueryRowContext(ctx, `SELECT csr, requested, source FROM pending WHERE name = ?`, name).Scan(&p.CSR, &requested, &p.Source)
	if errors.Is(err, sql.ErrNoRows) {
		return ca.Pending{}, false, nil
	}
	if err != nil {
		return ca.Pending{}, false, fmt.Errorf("reading pending request of %q: %w", name, err)
	}
	p.Requested = fromNS(requested)
	return p, true, nil
}

// DeletePending removes name's pending request; removing none is no error.
func (s *Store) DeletePending(ctx context.Context, name string) error {
	err := s.write(ctx, func(w *wtx) error {
		_, err := w.exec(`DELETE FROM pending WHERE name = ?`, name)
		return err
	})
	if err != nil {
		return fmt.Errorf("deleting pending request of %q: %w", name, err)
	}
	return nil
}

// Pendings returns every pending request, by name.
func (s *Store) Pendings(ctx context.Context) ([]ca.Pending, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT name, csr, requested, source FROM pending ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("listing pending requests: %w", err)
	}
	defer rows.Close()
	var out []ca.Pending
	for rows.Next() {
		var p ca.Pending
		var requested int64
		if err := rows.Scan(&p.Name, &p.CSR, &requested, &p.Source); err != nil {
			return nil, fmt.Errorf("listing pending requests: %w", err)
		}
		p.Requested = fromNS(requested)
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing pending requests: %w", err)
	}
	return out, nil
}

// CountPending returns how many requests are pending.
func (s *Store) CountPending(ctx context.Context) (int, error) {
	var n int
	if err := s.rdb.QueryRowContext(ctx, `SELECT count(*) FROM pending`).Scan(&n); err != nil {
		return 0, fmt.Errorf("counting pending requests: %w", err)
	}
	return n, nil
}

// PrunePending removes the requests made before before.
func (s *Store) PrunePending(ctx context.Context, before time.Time) (int, error) {
	var n int64
	err := s.write(ctx, func(w *wtx) error {
		res, err := w.exec(`DELETE FROM pending WHERE requested < ?`, ns(before))
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("pruning pending requests: %w", err)
	}
	return int(n), nil
}

// PutToken stores, or replaces, a join token by the hash of its secret.
func (s *Store) PutToken(ctx context.Context, t ca.Token) error {
	err := s.write(ctx, func(w *wtx) error {
		_, err := w.exec(`INSERT INTO tokens (hash, name_pattern, expires, single_use, used_at, created) VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT (hash) DO UPDATE SET name_pattern = excluded.name_pattern, expires = excluded.expires,
				single_use = excluded.single_use, used_at = excluded.used_at, created = excluded.created`,
			t.Hash, t.NamePattern, ns(t.Expires), t.SingleUse, ns(t.UsedAt), ns(t.Created))
		return err
	})
	if err != nil {
		return fmt.Errorf("storing join token: %w", err)
	}
	return nil
}

// Tokens returns every join token, newest first.
func (s *Store) Tokens(ctx context.Context) ([]ca.Token, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT hash, name_pattern, expires, single_use, used_at, created FROM tokens ORDER BY created DESC, hash`)
	if err != nil {
		return nil, fmt.Errorf("listing join tokens: %w", err)
	}
	defer rows.Close()
	var out []ca.Token
	for rows.Next() {
		var t ca.Token
		var expires, used, created int64
		if err := rows.Scan(&t.Hash, &t.NamePattern, &expires, &t.SingleUse, &used, &created); err != nil {
			return nil, fmt.Errorf("listing join tokens: %w", err)
		}
		t.Expires, t.UsedAt, t.Created = fromNS(expires), fromNS(used), fromNS(created)
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing join tokens: %w", err)
	}
	return out, nil
}

// DeleteToken removes the join token with this hash; removing none is no
// error.
func (s *Store) DeleteToken(ctx context.Context, hash string) error {
	err := s.write(ctx, func(w *wtx) error {
		_, err := w.exec(`DELETE FROM tokens WHERE hash = ?`, hash)
		return err
	})
	if err != nil {
		return fmt.Errorf("deleting join token: %w", err)
	}
	return nil
}

// UseToken finds the token whose secret hashes to hash, asks accept
// whether this enrollment may use it (expiry, name pattern) and, when it
// may and the token is single-use, marks it used at at in the same write,
// so that of any number of concurrent callers exactly one gets it. ok is
// false when there is no such token, a single-use token was already used,
// or accept refused it.
func (s *Store) UseToken(ctx context.Context, hash string, at time.Time, accept func(ca.Token) bool) (ca.Token, bool, error) {
	if at.IsZero() {
		at = time.Now() // a zero time would read as "not used"
	}
	// The closure runs on the writer; when ctx ends first, write returns
	// while it may still run, so tok and ok are read only after a nil
	// error.
	var tok ca.Token
	var ok bool
	err := s.write(ctx, func(w *wtx) error {
		t := ca.Token{Hash: hash}
		var expires, used, created int64
		err := w.queryRow(`SELECT name_pattern, expires, single_use, used_at, created FROM tokens WHERE hash = ?`, hash).
			Scan(&t.NamePattern, &expires, &t.SingleUse, &used, &created)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		t.Expires, t.UsedAt, t.Created = fromNS(expires), fromNS(used), fromNS(created)
		if t.SingleUse && used != 0 || !accept(t) {
			return nil
		}
		if t.SingleUse {
			// Only if still unused: on a PostgreSQL store another
			// server may have used it since the SELECT, and its
			// committed use makes this UPDATE change nothing.
			res, err := w.exec(`UPDATE tokens SET used_at = ? WHERE hash = ? AND used_at = 0`, ns(at), hash)
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err != nil || n != 1 {
				return err
			}
			t.UsedAt = at
		}
		tok, ok = t, true
		return nil
	})
	if err != nil {
		return ca.Token{}, false, fmt.Errorf("using join token: %w", err)
	}
	return tok, ok, nil
}
