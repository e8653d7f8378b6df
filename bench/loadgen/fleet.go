package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/herdcm/herd/api/herdv1"
)

// fleet is many simulated agents, each holding a Watch stream on its own
// connection and fetching its catalog when the server names a new one,
// as the agent's watch loop does.
type fleet struct {
	t      *target
	agents []*sim
	// Per agent, unix nanoseconds: when its stream last opened, when it
	// last heard of a new catalog, when it last fetched one, and when the
	// server took the report of its run of it (with report set).
	opened, heard, fetched, reported []atomic.Int64
	// report makes each agent send the report of a good run of every
	// catalog it fetches, as a real agent does after converging: a
	// rollout's stage is healthy only on those.
	report       bool
	reportErrors atomic.Int64
	nFetched     atomic.Int64
	reconnects   atomic.Int64
	fetchRetries atomic.Int64
	wg           sync.WaitGroup
	cancel       context.CancelFunc
}

func newFleet(t *target, agents []*sim) *fleet {
	n := len(agents)
	return &fleet{t: t, agents: agents, opened: make([]atomic.Int64, n), heard: make([]atomic.Int64, n), fetched: make([]atomic.Int64, n), reported: make([]atomic.Int64, n)}
}

// start opens every agent's Watch loop.
func (f *fleet) start(ctx context.Context) {
	ctx, f.cancel = context.WithCancel(ctx)
	for i := range f.agents {
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			f.watchLoop(ctx, i)
		}()
	}
}

func (f *fleet) stop() {
	if f.cancel != nil {
		f.cancel()
		f.wg.Wait()
	}
}

// watchLoop keeps agent i's stream open, reconnecting with the agent's
// backoff, and fetches the catalog the server names.
func (f *fleet) watchLoop(ctx context.Context, i int) {
	a := f.agents[i]
	failures := 0
	for ctx.Err() == nil {
		began := time.Now()
		stream, err := a.node.Watch(ctx, &herdv1.WatchRequest{Etag: a.currentEtag()}, grpc.WaitForReady(true))
		if err == nil {
			f.opened[i].Store(time.Now().UnixNano())
			for {
				ev, err := stream.Recv()
				if err != nil {
					break
				}
				if ev.Etag == a.currentEtag() {
					continue
				}
				f.heard[i].Store(time.Now().UnixNano())
				if f.fetch(ctx, a) == nil {
					f.fetched[i].Store(time.Now().UnixNano())
					f.nFetched.Add(1)
					if f.report {
						f.sendRun(ctx, i, ev.Version)
					}
				}
			}
		}
		if ctx.Err() != nil {
			return
		}
		f.reconnects.Add(1)
		if time.Since(began) > time.Minute {
			failures = 0
		}
		failures++
		select {
		case <-ctx.Done():
		case <-time.After(watchBackoff(failures)):
		}
	}
}

// fetch is the agent's check-in after a Watch event: the etag it holds,
// facts by digest; it retries when the server is busy, after the wait the
// server asks for.
func (f *fleet) fetch(ctx context.Context, a *sim) error {
	first := true
	return retrying(ctx, func() error {
		if !first {
			f.fetchRetries.Add(1)
		}
		first = false
		var md metadata.MD
		resp, err := a.node.Checkin(ctx, &herdv1.CheckinRequest{FactsDigest: a.factsDigest, CatalogEtag: a.currentEtag(), AgentVersion: "loadgen"},
			grpc.Trailer(&md), grpc.WaitForReady(true))
		if err != nil {
			return withHint(err, md)
		}
		if resp.Status == herdv1.CheckinResponse_NEW_CATALOG {
			a.setEtag(resp.Etag)
			a.newCatalogs.Add(1)
		}
		return nil
	})
}

// sendRun reports agent i's good run of the catalog it holds: every
// resource in sync but the template's file, nothing failed.
func (f *fleet) sendRun(ctx context.Context, i int, version string) {
	a := f.agents[i]
	now := time.Now()
	r := &herdv1.Report{
		RunId: fmt.Sprintf("%016x%s", now.UnixNano(), a.name), Version: version, CatalogDigest: a.currentEtag(),
		StartedUnixNs: now.UnixNano(), DurationNs: int64(50 * time.Millisecond),
		Summary: &herdv1.Summary{Resources: 200, InSync: 199, Changed: 1},
	}
	if err := retrying(ctx, func() error { return sendReport(ctx, a, r) }); err != nil {
		f.reportErrors.Add(1)
		return
	}
	f.reported[i].Store(time.Now().UnixNano())
}

// awaitStreams waits until the server counts want open Watch streams.
func (f *fleet) awaitStreams(ctx context.Context, want int, limit time.Duration) (time.Duration, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		n, err := f.t.watchStreams(ctx)
		if err == nil && n >= want {
			return time.Since(start), nil
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("waiting for %d Watch streams: %d open after %s (%v)", want, n, limit, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// awaitAll waits until every agent's stamp in ts is at or after since.
func awaitAll(ctx context.Context, ts []atomic.Int64, since time.Time, limit time.Duration) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		done := 0
		for i := range ts {
			if ts[i].Load() >= since.UnixNano() {
				done++
			}
		}
		if done == len(ts) {
			return done, nil
		}
		select {
		case <-ctx.Done():
			return done, errors.New("timed out")
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// spread returns, for the stamps at or after since, the times since it:
// first, median, 99th percentile and last.
func spread(ts []atomic.Int64, since time.Time) summary {
	var d []time.Duration
	for i := range ts {
		if v := ts[i].Load(); v >= since.UnixNano() {
			d = append(d, time.Duration(v-since.UnixNano()))
		}
	}
	return summarize(d)
}

func first(ts []atomic.Int64, since time.Time) time.Duration {
	best := time.Duration(-1)
	for i := range ts {
		if v := ts[i].Load(); v >= since.UnixNano() {
			if d := time.Duration(v - since.UnixNano()); best < 0 || d < best {
				best = d
			}
		}
	}
	return best
}
