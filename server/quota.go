package server

import (
	"context"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// nodeLimits is what one node may still take: calls at once in the work
// queue, and bytes of reports and of facts changes per hour. One noisy or
// hostile node then cannot take the whole queue, nor fill the disk the
// fleet shares.
type nodeLimits struct {
	inFlight atomic.Int32

	mu           sync.Mutex
	reports      bucket
	factsChanges bucket
}

// bucket is a token bucket of bytes refilled at perHour, holding at most
// perHour: a node may send an hour's worth at once, then at the rate.
type bucket struct {
	tokens float64
	at     time.Time
}

// take takes n bytes at now, or says how long until they are there.
func (b *bucket) take(n int, perHour int64, now time.Time) (ok bool, wait time.Duration) {
	rate := float64(perHour) / float64(time.Hour)
	if b.at.IsZero() {
		b.tokens, b.at = float64(perHour), now
	}
	b.tokens = min(float64(perHour), b.tokens+float64(now.Sub(b.at))*rate)
	b.at = now
	if float64(n) <= b.tokens {
		b.tokens -= float64(n)
		return true, 0
	}
	return false, time.Duration((float64(n) - b.tokens) / rate)
}

func (s *Server) limitsOf(node string) *nodeLimits {
	if l, ok := s.limits.Load(node); ok {
		return l.(*nodeLimits)
	}
	l, _ := s.limits.LoadOrStore(node, &nodeLimits{})
	return l.(*nodeLimits)
}

// admitWait is how long a call waits in line for a slot of a full work
// queue before it is sent away to retry. A stage of a rollout releases
// thousands of nodes at once, and each fetches its catalog at once: their
// calls are short, and waiting a moment for one of the 256 slots costs
// far less than coming back after the retry hint's second or two (15,126
// refusals, and most of a 10,000-node stage's time, when calls were sent
// away at once).
const admitWait = time.Second

// admit takes a slot of the bounded work queue for node, waiting up to
// admitWait for one, or answers RESOURCE_EXHAUSTED with a jittered retry
// hint in the "retry-after-ms" trailer, which agents honour. A node holds
// at most MaxCallsPerNode slots, so that the queue is shared fairly.
func (s *Server) admit(ctx context.Context, node string) (func(), error) {
	l := s.limitsOf(node)
	if l.inFlight.Add(1) > int32(s.opts.MaxCallsPerNode) {
		l.inFlight.Add(-1)
		s.metrics.overloaded.WithLabelValues("node").Inc()
		return nil, retryLater(ctx, 0, "node %s has %d calls in progress already", node, s.opts.MaxCallsPerNode)
	}
	release := func() { <-s.inFlight; l.inFlight.Add(-1) }
	select {
	case s.inFlight <- struct{}{}:
		return release, nil
	default:
	}
	t := time.NewTimer(admitWait)
	defer t.Stop()
	select {
	case s.inFlight <- struct{}{}:
		return release, nil
	case <-t.C:
	case <-ctx.Done():
	}
	l.inFlight.Add(-1)
	s.metrics.overloaded.WithLabelValues("server").Inc()
	return nil, retryLater(ctx, 0, "server busy")
}

// spend takes n bytes of node's quota of kind, or answers
// RESOURCE_EXHAUSTED with the time until they are there.
func (s *Server) spend(ctx context.Context, node string, kind string, n int) error {
	wait, err := s.take(node, kind, n)
	if wait > 0 {
		s.metrics.quotaRefused.WithLabelValues(kind).Inc()
		return retryLater(ctx, wait, "%s", status.Convert(err).Message())
	}
	return err
}

// take takes n bytes of node's quota of kind. Past the quota it returns
// the time until they are there with a RESOURCE_EXHAUSTED error; n larger
// than an hour's quota is INVALID_ARGUMENT, with no wait: it never fits.
func (s *Server) take(node string, kind string, n int) (time.Duration, error) {
	l := s.limitsOf(node)
	b, perHour := &l.reports, s.opts.ReportBytesPerHour
	if kind == "facts" {
		b, perHour = &l.factsChanges, s.opts.FactsBytesPerHour
	}
	if int64(n) > perHour {
		return 0, status.Errorf(codes.InvalidArgument, "%s of %d bytes are more than the %d bytes an hour this server takes from a node", kind, n, perHour)
	}
	l.mu.Lock()
	ok, wait := b.take(n, perHour, time.Now())
	l.mu.Unlock()
	if ok {
		return 0, nil
	}
	return max(wait, time.Millisecond), status.Errorf(codes.ResourceExhausted, "node %s sent more %s than the %d bytes an hour this server takes", node, kind, perHour)
}

// retryLater is RESOURCE_EXHAUSTED with a "retry-after-ms" trailer: at
// least wait, jittered.
func retryLater(ctx context.Context, wait time.Duration, format string, args ...any) error {
	retry := int(wait.Milliseconds()) + 500 + rand.IntN(2500)
	grpc.SetTrailer(ctx, metadata.Pairs("retry-after-ms", strconv.Itoa(retry)))
	return status.Errorf(codes.ResourceExhausted, format+": retry in %d ms", append(args, retry)...)
}
