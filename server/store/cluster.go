package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// What several servers sharing one PostgreSQL store need of it beside
// the tables: notifications between them (LISTEN/NOTIFY) and leases
// (session-level advisory locks). Both are scoped to the store's schema
// (its search_path), so that stores in other schemas of the same
// database, tests' included, never hear or block each other.

// MaxNotifyBytes bounds a notification's payload: PostgreSQL refuses one
// of 8000 bytes or more.
const MaxNotifyBytes = 7900

// ErrNotShared is returned by the notifications and leases of a sqlite
// store, which one server owns alone.
var ErrNotShared = errors.New("the store is sqlite, which one server owns alone")

// Postgres reports whether the store is a PostgreSQL database, which
// several servers may share.
func (s *Store) Postgres() bool { return s.d.pg }

// scoped names a channel or lock of this store: the hash of the schema
// and name, as PostgreSQL identifiers and advisory keys are database-wide.
func (s *Store) scoped(name string) [32]byte {
	return sha256.Sum256([]byte(s.pgcfg.RuntimeParams["search_path"] + "\x00" + name))
}

func (s *Store) channel(name string) string {
	h := s.scoped("channel:" + name)
	return fmt.Sprintf("herd_%x", h[:12])
}

// Notify sends payload (at most MaxNotifyBytes) on channel to every
// server listening on this store, this one included. PostgreSQL delivers
// it once the statement commits, in commit order.
func (s *Store) Notify(ctx context.Context, channel, payload string) error {
	if !s.d.pg {
		return ErrNotShared
	}
	if len(payload) > MaxNotifyBytes {
		return fmt.Errorf("notifying %s: payload of %d bytes, past %d", channel, len(payload), MaxNotifyBytes)
	}
	s.notifyOnce.Do(func() {
		cfg := s.pgcfg.Copy()
		cfg.RuntimeParams["application_name"] = "herd-notify"
		s.notifyDB = stdlib.OpenDB(*cfg)
		s.notifyDB.SetMaxOpenConns(2)
	})
	if s.notifyDB == nil {
		return fmt.Errorf("notifying %s: %w", channel, ErrClosed)
	}
	if _, err := s.notifyDB.ExecContext(ctx, `SELECT pg_notify($1, $2)`, s.channel(channel), payload); err != nil {
		return fmt.Errorf("notifying %s: %w", channel, err)
	}
	return nil
}

// listenRetry is how long Listen waits before connecting again.
const listenRetry = time.Second

// Listen hears channel until ctx ends, on a connection of its own: f is
// called with each payload, in order, on Listen's goroutine. ready is
// called each time the listening starts, the first time and after each
// reconnect, when notifications may have been missed: the caller re-reads
// what they would have told it. Failures are logged and retried.
func (s *Store) Listen(ctx context.Context, channel string, ready func(), f func(payload string)) error {
	if !s.d.pg {
		return ErrNotShared
	}
	name := s.channel(channel)
	for ctx.Err() == nil {
		err := s.listenOnce(ctx, name, ready, f)
		if ctx.Err() != nil {
			break
		}
		s.log.Warn("listening for other servers' notifications; connecting again", "channel", channel, "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(listenRetry):
		}
	}
	return nil
}

func (s *Store) listenOnce(ctx context.Context, name string, ready func(), f func(string)) error {
	cfg := s.pgcfg.Copy()
	cfg.RuntimeParams["application_name"] = "herd-listen"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("connecting: %w", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{name}.Sanitize()); err != nil {
		return fmt.Errorf("listening: %w", err)
	}
	if ready != nil {
		ready()
	}
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return fmt.Errorf("waiting for a notification: %w", err)
		}
		f(n.Payload)
	}
}

// Lease is one server's hold of a named lease: a session-level advisory
// lock on a connection of its own. PostgreSQL releases it when that
// connection ends, so a server that dies loses its leases within the
// time PostgreSQL takes to see its connection close.
type Lease struct {
	mu   sync.Mutex
	conn *pgx.Conn
	lost chan struct{}
	stop chan struct{}
	once sync.Once
}

// leasePing is how often a lease's connection is checked: a holder
// learns it lost the lease (the database restarted, an operator ended
// its session) within it.
const leasePing = time.Second

// TryLease tries to take the lease key for holder (an address others are
// shown by LeaseHolder), without waiting. ok is false when another
// session holds it.
func (s *Store) TryLease(ctx context.Context, key, holder string) (l *Lease, ok bool, err error) {
	if !s.d.pg {
		return nil, false, ErrNotShared
	}
	cfg := s.pgcfg.Copy()
	cfg.RuntimeParams["application_name"] = leaseApp(holder)
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, false, fmt.Errorf("taking lease %s: connecting: %w", key, err)
	}
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, s.leaseKey(key)).Scan(&ok); err != nil || !ok {
		conn.Close(context.Background())
		if err != nil {
			return nil, false, fmt.Errorf("taking lease %s: %w", key, err)
		}
		return nil, false, nil
	}
	l = &Lease{conn: conn, lost: make(chan struct{}), stop: make(chan struct{})}
	go l.watch()
	return l, true, nil
}

// leaseApp is the holder's session name, within PostgreSQL's 63 bytes.
func leaseApp(holder string) string {
	const prefix = "herd-lease "
	if len(prefix)+len(holder) > 63 {
		holder = holder[:63-len(prefix)]
	}
	return prefix + holder
}

func (s *Store) leaseKey(key string) int64 {
	h := s.scoped("lease:" + key)
	return int64(binary.BigEndian.Uint64(h[:8]))
}

func (l *Lease) watch() {
	t := time.NewTicker(leasePing)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		l.mu.Lock()
		ctx, cancel := context.WithTimeout(context.Background(), 5*leasePing)
		err := l.conn.Ping(ctx)
		cancel()
		l.mu.Unlock()
		if err != nil {
			l.Release()
			return
		}
	}
}

// Lost is closed when the lease is no longer held: released, or its
// connection failed.
func (l *Lease) Lost() <-chan struct{} { return l.lost }

// Release gives the lease up (closing its connection). Calls after the
// first do nothing.
func (l *Lease) Release() {
	l.once.Do(func() {
		close(l.stop)
		l.mu.Lock()
		l.conn.Close(context.Background())
		l.mu.Unlock()
		close(l.lost)
	})
}

// LeaseHolder returns the holder of lease key as TryLease was given it,
// and whether anyone holds it.
func (s *Store) LeaseHolder(ctx context.Context, key string) (string, bool, error) {
	if !s.d.pg {
		return "", false, ErrNotShared
	}
	k := uint64(s.leaseKey(key))
	var app string
	err := s.rdb.QueryRowContext(ctx, `SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
		WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
		AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
		AND l.classid::bigint = $1 AND l.objid::bigint = $2`, int64(k>>32), int64(k&0xffffffff)).Scan(&app)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("finding the holder of lease %s: %w", key, err)
	}
	const prefix = "herd-lease "
	if len(app) >= len(prefix) && app[:len(prefix)] == prefix {
		app = app[len(prefix):]
	}
	return app, true, nil
}
