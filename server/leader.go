package server

import (
	"context"
	"sync/atomic"
	"time"
)

// leaderRetry is how often a server that does not hold a lease tries to
// take it: the longest a dead leader's work waits, beyond the time
// PostgreSQL takes to see its connection close.
const leaderRetry = 2 * time.Second

// leadership is whether this server holds one of the leases that give a
// single server among those sharing a PostgreSQL store a job (the
// audits, the rollouts). On sqlite one server owns the store and always
// leads.
type leadership struct {
	key     string
	leading atomic.Bool
	// won is poked each time the lease is taken, for the job to catch
	// up on what it missed while another server led, or none did.
	won chan struct{}
	// lost is poked each time the lease is lost, for the job to let go
	// of what it drove.
	lost chan struct{}
}

func (l *leadership) init(key string) {
	l.key = key
	l.won = make(chan struct{}, 1)
	l.lost = make(chan struct{}, 1)
}

// Leading reports whether this server holds the lease now.
func (l *leadership) Leading() bool { return l.leading.Load() }

// lead keeps trying to hold l's lease until ctx ends: the holder keeps
// it while its connection to the store lives; the others try again
// every leaderRetry.
func (s *Server) lead(ctx context.Context, l *leadership) {
	if !s.st.Postgres() {
		l.leading.Store(true)
		return
	}
	t := time.NewTicker(leaderRetry)
	defer t.Stop()
	for {
		lease, ok, err := s.st.TryLease(ctx, l.key, s.Addr)
		if err != nil && ctx.Err() == nil {
			s.log.Warn("trying to take a lease", "lease", l.key, "err", err)
		}
		if ok {
			s.log.Info("leading", "lease", l.key)
			l.leading.Store(true)
			select {
			case l.won <- struct{}{}:
			default:
			}
			select {
			case <-ctx.Done():
			case <-lease.Lost():
				s.log.Warn("lost a lease; another server takes it over", "lease", l.key)
			}
			l.leading.Store(false)
			select {
			case l.lost <- struct{}{}:
			default:
			}
			lease.Release()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
