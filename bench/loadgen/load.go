package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/herdcm/herd/api/herdv1"
)

// call is one request of a throughput scenario, made by agent a; seq is
// unique across the run (for run ids). It returns the bytes received.
type call func(ctx context.Context, a *sim, seq int64) (int, error)

// result is one timed run of a throughput scenario.
type result struct {
	n, failed, overloaded int64
	bytes                 int64
	elapsed               time.Duration
	lat                   summary
	firstErr              error
}

func (r result) rate() float64 { return float64(r.n) / r.elapsed.Seconds() }

// load runs conc workers for dur (or until max calls), each worker cycling
// over its share of agents (worker w uses agents w, w+conc, …, so that no
// two workers share a connection when there are enough agents). A call
// refused with RESOURCE_EXHAUSTED counts as overloaded, not done.
func load(ctx context.Context, agents []*sim, conc int, dur time.Duration, max int64, fn call) result {
	// The end of the run is a flag checked between calls, not a deadline
	// on them: a call under way finishes and counts.
	var done atomic.Bool
	stop := time.AfterFunc(dur, func() { done.Store(true) })
	defer stop.Stop()
	var (
		n, failed, over, bytes atomic.Int64
		seq                    atomic.Int64
		lats                   latencies
		errOnce                sync.Once
		firstErr               error
		wg                     sync.WaitGroup
	)
	start := time.Now()
	for w := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mine := make([]time.Duration, 0, 4096)
			for i := w; !done.Load() && ctx.Err() == nil; i += conc {
				if n.Load() >= max {
					done.Store(true)
					break
				}
				a := agents[i%len(agents)]
				t0 := time.Now()
				b, err := fn(ctx, a, seq.Add(1))
				d := time.Since(t0)
				switch {
				case err == nil:
					n.Add(1)
					bytes.Add(int64(b))
					mine = append(mine, d)
				case ctx.Err() != nil:
					// The caller gave up: not a failure of the server.
				case status.Code(err) == codes.ResourceExhausted:
					over.Add(1)
				default:
					failed.Add(1)
					errOnce.Do(func() { firstErr = err })
				}
			}
			lats.merge(mine)
		}()
	}
	wg.Wait()
	return result{n: n.Load(), failed: failed.Load(), overloaded: over.Load(), bytes: bytes.Load(),
		elapsed: time.Since(start), lat: summarize(lats.all), firstErr: firstErr}
}

// checkinUnchanged is a check-in with known facts and the current etag.
func checkinUnchanged(ctx context.Context, a *sim, _ int64) (int, error) {
	resp, err := a.node.Checkin(ctx, &herdv1.CheckinRequest{FactsDigest: a.factsDigest, CatalogEtag: a.currentEtag(), AgentVersion: "loadgen"})
	if err != nil {
		return 0, err
	}
	if resp.Status != herdv1.CheckinResponse_UNCHANGED {
		return 0, fmt.Errorf("check-in of %s: %v, want UNCHANGED", a.name, resp.Status)
	}
	return 0, nil
}

// checkinFetch is a check-in without an etag: the server sends the whole
// signed catalog.
func checkinFetch(ctx context.Context, a *sim, _ int64) (int, error) {
	resp, err := a.node.Checkin(ctx, &herdv1.CheckinRequest{FactsDigest: a.factsDigest, AgentVersion: "loadgen"})
	if err != nil {
		return 0, err
	}
	if resp.Status != herdv1.CheckinResponse_NEW_CATALOG || len(resp.Catalog) == 0 {
		return 0, fmt.Errorf("fetch of %s: %v, want NEW_CATALOG", a.name, resp.Status)
	}
	return len(resp.Catalog) + len(resp.Signature), nil
}

// noChangeReport is a run where every resource was in sync: the summary
// only, as the agent sends it.
func noChangeReport(a *sim, seq int64, started time.Time) *herdv1.Report {
	return &herdv1.Report{
		RunId: fmt.Sprintf("%016x%016x", started.UnixNano(), seq), Version: strings.Repeat("a", 40),
		CatalogDigest: a.currentEtag(), StartedUnixNs: started.UnixNano(), DurationNs: int64(900 * time.Millisecond),
		Summary: &herdv1.Summary{Resources: 200, InSync: 200},
	}
}

// changedEvents are the events of a run where 100 files changed, each
// with a small diff (the store benchmark's changedEvents).
var changedEvents = func() []*herdv1.Event {
	events := make([]*herdv1.Event, 100)
	for i := range events {
		events[i] = &herdv1.Event{Id: fmt.Sprintf("file:/etc/app/%d.conf", i), Type: "file", Status: "changed", DurationNs: int64(2 * time.Millisecond),
			Changes: []*herdv1.Change{{Attr: "content", From: "sha256:1111", To: "sha256:2222", Diff: "--- a\n+++ b\n@@ -1 +1 @@\n-workers = 2\n+workers = 4\n", Action: "update"}}}
	}
	return events
}()

func sendReport(ctx context.Context, a *sim, r *herdv1.Report) error {
	var md metadata.MD
	resp, err := a.node.SendReport(ctx, &herdv1.SendReportRequest{Report: r}, grpc.Trailer(&md))
	if err != nil {
		return withHint(err, md)
	}
	if resp.Duplicate {
		return fmt.Errorf("report %s of %s: stored as a duplicate", r.RunId, a.name)
	}
	return nil
}

// reportNoChange sends a summary-only report.
func reportNoChange(ctx context.Context, a *sim, seq int64) (int, error) {
	return 0, sendReport(ctx, a, noChangeReport(a, seq, time.Now()))
}

// report100 sends a report of 100 changed resources.
func report100(ctx context.Context, a *sim, seq int64) (int, error) {
	r := noChangeReport(a, seq, time.Now())
	r.Summary = &herdv1.Summary{Resources: 200, InSync: 100, Changed: 100}
	r.Events = changedEvents
	return 0, sendReport(ctx, a, r)
}

// sendBatch sends reports in one SendReports call; every one must be
// acknowledged as newly stored.
func sendBatch(ctx context.Context, a *sim, rs []*herdv1.Report) error {
	var md metadata.MD
	resp, err := a.node.SendReports(ctx, &herdv1.SendReportsRequest{Reports: rs}, grpc.Trailer(&md))
	if err != nil {
		return withHint(err, md)
	}
	if len(resp.Refused) > 0 {
		r := resp.Refused[0]
		return status.Errorf(codes.Code(r.Code), "report %s of %s refused: %s", r.RunId, a.name, r.Reason)
	}
	if len(resp.AckedRunIds) != len(rs) || len(resp.DuplicateRunIds) > 0 {
		return fmt.Errorf("batch of %d reports of %s: %d acknowledged, %d duplicates", len(rs), a.name, len(resp.AckedRunIds), len(resp.DuplicateRunIds))
	}
	return nil
}

// reportBatch returns a call that sends n reports at once, as an agent
// sends its spool; with events, each is a report of 100 changed
// resources.
func reportBatch(n int, events bool) call {
	return func(ctx context.Context, a *sim, seq int64) (int, error) {
		now := time.Now()
		rs := make([]*herdv1.Report, n)
		for i := range rs {
			// Run ids unique across calls: seq is, and i within it.
			r := noChangeReport(a, seq*int64(n)+int64(i), now)
			if events {
				r.Summary = &herdv1.Summary{Resources: 200, InSync: 100, Changed: 100}
				r.Events = changedEvents
			}
			rs[i] = r
		}
		return 0, sendBatch(ctx, a, rs)
	}
}

// medianResult returns the run with the median rate.
func medianResult(rs []result) result {
	s := slices.Clone(rs)
	slices.SortFunc(s, func(a, b result) int {
		switch {
		case a.rate() < b.rate():
			return -1
		case a.rate() > b.rate():
			return 1
		}
		return 0
	})
	return s[len(s)/2]
}
