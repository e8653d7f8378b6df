package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// request is one write: fn runs inside the batch's transaction under its
// own savepoint, and its error (or the commit's) is sent on done once the
// batch is durable.
type request struct {
	fn   func(w *wtx) error
	done chan error // buffered: the writer never waits for a caller
	now  bool       // commit without waiting for the window to close (Flush)
}

// wtx is what a request's fn writes with: the writer's connection inside
// an open transaction, with statements prepared once and reused.
type wtx struct {
	conn  *sql.Conn
	d     dialect
	stmts map[string]*sql.Stmt
	// release is a savepoint PostgreSQL has still to release: it goes
	// with the next SAVEPOINT in one round trip, or with COMMIT.
	release bool
}

// The writer runs no statement under a caller's context: a request, once
// queued, is either committed with its batch or failed with it, never cut
// halfway. A background context also keeps the driver from starting a
// goroutine per statement to watch for cancellation.
var bg = context.Background()

func (w *wtx) stmt(query string) (*sql.Stmt, error) {
	if st, ok := w.stmts[query]; ok {
		return st, nil
	}
	st, err := w.conn.PrepareContext(bg, w.d.q(query))
	if err != nil {
		return nil, err
	}
	w.stmts[query] = st
	return st, nil
}

// exec runs one statement.
func (w *wtx) exec(query string, args ...any) (sql.Result, error) {
	st, err := w.stmt(query)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(bg, w.d.args(args)...)
}

// queryRow runs a query that returns at most one row.
func (w *wtx) queryRow(query string, args ...any) *sql.Row {
	st, err := w.stmt(query)
	if err != nil {
		// QueryRowContext on a closed statement would lose the error;
		// run the query unprepared so that the error reaches Scan.
		return w.conn.QueryRowContext(bg, w.d.q(query), w.d.args(args)...)
	}
	return st.QueryRowContext(bg, w.d.args(args)...)
}

// query runs a query.
func (w *wtx) query(query string, args ...any) (*sql.Rows, error) {
	st, err := w.stmt(query)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(bg, w.d.args(args)...)
}

func (w *wtx) close() {
	for _, st := range w.stmts {
		st.Close()
	}
}

// write queues fn and waits until the batch it joined is durable. When ctx
// ends first, write returns ctx.Err() at once, but a request already
// queued still runs and may commit: the caller cannot tell. Callers that
// must know (reports) make their writes idempotent and retry.
func (s *Store) write(ctx context.Context, fn func(w *wtx) error) error {
	return s.send(ctx, &request{fn: fn, done: make(chan error, 1)})
}

func (s *Store) send(ctx context.Context, r *request) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return ErrClosed
	}
	select {
	case s.reqs <- r:
	case <-ctx.Done():
		s.mu.RUnlock()
		return ctx.Err()
	}
	s.mu.RUnlock()
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Flush commits at once, without waiting for the batch window to close,
// and waits until everything written before it, check-ins included, is
// durable.
func (s *Store) Flush(ctx context.Context) error {
	r := &request{fn: func(*wtx) error { return nil }, done: make(chan error, 1), now: true}
	if err := s.send(ctx, r); err != nil {
		return fmt.Errorf("flushing store: %w", err)
	}
	return nil
}

// Stats are counters of the writer's work since Open, for metrics.
type Stats struct {
	Batches  int64 // transactions committed
	Requests int64 // write requests answered (committed or failed)
	Failed   int64 // requests answered with an error
	Checkins int64 // check-ins written
}

// Stats returns the writer's counters.
func (s *Store) Stats() Stats {
	return Stats{
		Batches:  s.stats.batches.Load(),
		Requests: s.stats.requests.Load(),
		Failed:   s.stats.failed.Load(),
		Checkins: s.stats.checkins.Load(),
	}
}

// run is the writer goroutine: the only code that writes to the file.
func (s *Store) run() {
	defer close(s.done)
	w := &wtx{conn: s.conn, d: s.d, stmts: map[string]*sql.Stmt{}}
	defer w.close()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	batch := make([]*request, 0, s.opts.BatchMax)
	for open := true; open; {
		batch = batch[:0]
		var first *request
		select {
		case first, open = <-s.reqs:
		case <-s.touches.wake:
			// Only check-ins are waiting: let more gather, unless a
			// request comes to carry them first.
			timer.Reset(s.opts.CheckinDelay)
			select {
			case first, open = <-s.reqs:
				timer.Stop()
			case <-timer.C:
			}
		}
		if first != nil {
			batch = append(batch, first)
			wait := s.opts.BatchDelay
			if first.now {
				wait = 0
			}
			batch, open = s.gather(batch, wait, timer)
		}
		s.commit(w, batch)
	}
}

// gather adds queued requests to batch until it is full, the queue is
// closed, or wait has passed (wait <= 0: only what is queued already).
// It reports whether the queue is still open.
func (s *Store) gather(batch []*request, wait time.Duration, timer *time.Timer) ([]*request, bool) {
	timing := false
	defer func() {
		if timing {
			timer.Stop()
		}
	}()
	for len(batch) < s.opts.BatchMax {
		select {
		case r, ok := <-s.reqs:
			if !ok {
				return batch, false
			}
			batch = append(batch, r)
			if r.now {
				return batch, true
			}
			continue
		default:
		}
		if wait <= 0 {
			return batch, true
		}
		if !timing {
			timer.Reset(wait)
			timing = true
		}
		select {
		case r, ok := <-s.reqs:
			if !ok {
				return batch, false
			}
			batch = append(batch, r)
			if r.now {
				return batch, true
			}
		case <-timer.C:
			timing = false
			return batch, true
		}
	}
	return batch, true
}

// commit runs batch and the pending check-ins in one transaction and
// answers each request once the commit is durable.
func (s *Store) commit(w *wtx, batch []*request) {
	touched := s.touches.take()
	if len(batch) == 0 && len(touched) == 0 {
		return
	}
	start := time.Now()
	errs := make([]error, len(batch))
	touchErr, err := s.runBatch(w, batch, touched, errs)
	switch {
	case err != nil:
		// The transaction is gone: nothing of it was written. There may
		// be no transaction left to roll back, hence no error check.
		_, _ = w.exec(`ROLLBACK`)
		w.release = false
		for i := range errs {
			errs[i] = err
		}
		s.touches.restore()
		s.log.Error("store write failed", "requests", len(batch), "checkins", len(touched), "err", err)
		if s.d.pg {
			s.reconnect(w)
		}
	case touchErr != nil:
		// The requests committed; the check-ins wait for the next batch.
		s.touches.restore()
		s.log.Error("recording check-ins", "checkins", len(touched), "err", touchErr)
	default:
		s.touches.done()
		s.stats.checkins.Add(int64(len(touched)))
	}
	if err == nil {
		s.stats.batches.Add(1)
	}
	s.stats.requests.Add(int64(len(batch)))
	for i, r := range batch {
		if errs[i] != nil {
			s.stats.failed.Add(1)
		}
		r.done <- errs[i]
	}
	if d := time.Since(start); d > time.Second {
		s.log.Warn("slow store batch", "requests", len(batch), "checkins", len(touched), "took", d)
	}
}

// reconnect replaces the writer's PostgreSQL connection when it is gone
// (the database restarted, the network dropped it, an administrator
// ended it): the sqlite file never goes away, but without this a lost
// connection would fail every later write until the server restarts.
// The batch that found it lost has failed already; its callers retry.
func (s *Store) reconnect(w *wtx) {
	if s.conn.PingContext(bg) == nil {
		return
	}
	w.close()
	w.stmts = map[string]*sql.Stmt{}
	w.release = false
	_ = s.conn.Close() // gone already: its error says nothing new
	ctx, cancel := context.WithTimeout(bg, pgOpenTimeout)
	defer cancel()
	conn, err := s.wdb.Conn(ctx)
	if err != nil {
		// The next failed batch tries again.
		s.log.Error("reconnecting the store's writer", "err", err)
		return
	}
	s.conn, w.conn = conn, conn
	s.log.Warn("the store's writer reconnected to PostgreSQL")
}

// runBatch returns err only when the whole transaction is lost. A
// request's own failure goes to errs and the check-ins' to touchErr, each
// rolled back to its savepoint so that the rest still commits.
func (s *Store) runBatch(w *wtx, batch []*request, touched []touch, errs []error) (touchErr, err error) {
	// sqlite's IMMEDIATE takes the write lock at once; PostgreSQL locks
	// rows as they are written.
	if _, err := w.exec(w.d.pick(`BEGIN IMMEDIATE`, `BEGIN`)); err != nil {
		return nil, fmt.Errorf("beginning a write: %w", err)
	}
	// The check-ins first: they were taken before the requests ran, so
	// a request that deletes a node (Purge) must come after them, or
	// they would bring the node back.
	if len(touched) > 0 {
		if err := savepoint(w, func(w *wtx) error { return writeTouches(w, touched) }, &touchErr); err != nil {
			return nil, err
		}
	}
	for i, r := range batch {
		if err := savepoint(w, r.fn, &errs[i]); err != nil {
			return nil, err
		}
	}
	// COMMIT releases a savepoint left to release.
	w.release = false
	if _, err := w.exec(`COMMIT`); err != nil {
		return nil, fmt.Errorf("committing: %w", err)
	}
	return touchErr, nil
}

// savepoint runs fn under a savepoint and puts its error in *fnErr, undoing
// whatever fn wrote when it failed. The error savepoint returns means the
// transaction itself is lost.
func savepoint(w *wtx, fn func(w *wtx) error, fnErr *error) error {
	var err error
	if w.release {
		// PostgreSQL: the last request's RELEASE and this SAVEPOINT in
		// one round trip (a statement without arguments goes by the
		// simple protocol, which takes several). Each round trip is a
		// good part of a small request's cost there.
		_, err = w.conn.ExecContext(bg, `RELEASE req; SAVEPOINT req`)
		w.release = false
	} else {
		_, err = w.exec(`SAVEPOINT req`)
	}
	if err != nil {
		return fmt.Errorf("writing: %w", err)
	}
	if *fnErr = callSafely(fn, w); *fnErr != nil {
		if _, err := w.exec(`ROLLBACK TO req`); err != nil {
			// sqlite rolled the whole transaction back (disk full, I/O
			// error): every request of the batch is lost.
			return fmt.Errorf("writing: %w", errors.Join(*fnErr, err))
		}
	}
	if w.d.pg {
		w.release = true
		return nil
	}
	if _, err := w.exec(`RELEASE req`); err != nil {
		return fmt.Errorf("writing: %w", err)
	}
	return nil
}

// callSafely turns a panic in fn into its error: a bug in one request
// must not take down the writer, and with it every later write.
func callSafely(fn func(w *wtx) error, w *wtx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("store write panicked: %v", p)
		}
	}()
	return fn(w)
}
