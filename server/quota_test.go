package server

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/herdcm/herd/api/herdv1"
)

func TestBucket(t *testing.T) {
	t.Parallel()
	t0 := time.Unix(1_750_000_000, 0)
	var b bucket
	const perHour = 3600 // one byte a second
	for _, step := range []struct {
		at       time.Duration
		n        int
		ok       bool
		wantWait time.Duration
	}{
		{0, 3000, true, 0},
		{0, 600, true, 0},
		{0, 1, false, time.Second},
		{10 * time.Second, 10, true, 0},
		{10 * time.Second, 100, false, 100 * time.Second},
		{2 * time.Hour, 3600, true, 0}, // refilled, never past the hour
		{2 * time.Hour, 1, false, time.Second},
	} {
		ok, wait := b.take(step.n, perHour, t0.Add(step.at))
		if ok != step.ok || (!ok && (wait < step.wantWait-time.Millisecond || wait > step.wantWait+time.Millisecond)) {
			t.Errorf("take(%d) at +%s = %v, %s; want %v, %s", step.n, step.at, ok, wait, step.ok, step.wantWait)
		}
	}
}

// TestReportQuota: a node past its report bytes an hour is told to come
// back later, with the time in the trailer; another node is not affected.
func TestReportQuota(t *testing.T) {
	t.Parallel()
	s := startWith(t, func(o *Options) { o.ReportBytesPerHour = 1 << 20 })
	ctx := context.Background()
	send := func(nc herdv1.NodeClient, run string) (metadata.MD, error) {
		var trailer metadata.MD
		_, err := nc.SendReport(ctx, &herdv1.SendReportRequest{Report: &herdv1.Report{RunId: run,
			Events: []*herdv1.Event{{Id: "exec:x", Type: "exec", Status: "failed", Output: strings.Repeat("o", 300<<10)}}}}, grpc.Trailer(&trailer))
		return trailer, err
	}
	ca, cb := enroll(t, s, "a-01"), enroll(t, s, "b-01")
	a, b := herdv1.NewNodeClient(dial(t, s, &ca)), herdv1.NewNodeClient(dial(t, s, &cb))
	for i := range 3 {
		if _, err := send(a, "run-"+strconv.Itoa(i)); err != nil {
			t.Fatalf("report %d within the quota: %v", i, err)
		}
	}
	trailer, err := send(a, "run-3")
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("a report past the quota = %v, want RESOURCE_EXHAUSTED", err)
	}
	if ms, _ := strconv.Atoi(strings.Join(trailer.Get("retry-after-ms"), "")); ms < 60_000 {
		t.Errorf("retry-after-ms = %q, want at least the minute the quota needs to refill 300 KiB", trailer.Get("retry-after-ms"))
	}
	if _, err := send(b, "run-0"); err != nil {
		t.Errorf("another node's report = %v, want it stored", err)
	}
}

// TestFactsQuota: changed facts past the quota are refused; unchanged
// facts (by digest) still check in.
func TestFactsQuota(t *testing.T) {
	t.Parallel()
	s := startWith(t, func(o *Options) { o.FactsBytesPerHour = 10_000 })
	ctx := context.Background()
	c := enroll(t, s, "a-01")
	nc := herdv1.NewNodeClient(dial(t, s, &c))
	facts := func(i int) map[string]any { return map[string]any{"pad": strings.Repeat(strconv.Itoa(i), 4000)} }
	resp := checkin(t, nc, facts(1), "")
	checkin(t, nc, facts(2), resp.Etag)
	b, d := factsJSON(t, facts(3))
	if _, err := nc.Checkin(ctx, &herdv1.CheckinRequest{FactsJson: b, FactsDigest: d, CatalogEtag: resp.Etag}); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("a third facts change past the quota = %v, want RESOURCE_EXHAUSTED", err)
	}
	_, d2 := factsJSON(t, facts(2))
	if r, err := nc.Checkin(ctx, &herdv1.CheckinRequest{FactsDigest: d2, CatalogEtag: resp.Etag}); err != nil || r.Status != herdv1.CheckinResponse_UNCHANGED {
		t.Errorf("a check-in with the stored facts by digest = %v, %v; want UNCHANGED", r.GetStatus(), err)
	}
}

// TestFairAdmission: one node holds at most MaxCallsPerNode slots of the
// work queue; another node still gets in.
func TestFairAdmission(t *testing.T) {
	t.Parallel()
	s := startWith(t, func(o *Options) { o.MaxCallsPerNode = 2; o.MaxInFlight = 3 })
	ctx := context.Background()
	r1, err := s.admit(ctx, "noisy")
	if err != nil {
		t.Fatal(err)
	}
	r2, err := s.admit(ctx, "noisy")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.admit(ctx, "noisy"); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("a third call of one node = %v, want RESOURCE_EXHAUSTED", err)
	}
	r3, err := s.admit(ctx, "quiet")
	if err != nil {
		t.Fatalf("another node while the noisy one holds its share: %v", err)
	}
	if _, err := s.admit(ctx, "third"); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("a call past MaxInFlight = %v, want RESOURCE_EXHAUSTED", err)
	}
	// A call past MaxInFlight waits in line: a slot freed meanwhile is
	// its.
	waited := make(chan error, 1)
	go func() {
		r, err := s.admit(ctx, "patient")
		if err == nil {
			r()
		}
		waited <- err
	}()
	time.Sleep(50 * time.Millisecond)
	r3()
	if err := <-waited; err != nil {
		t.Errorf("a call in line when a slot freed = %v, want it admitted", err)
	}
	if r3, err = s.admit(ctx, "quiet"); err != nil {
		t.Fatal(err)
	}
	r1()
	r4, err := s.admit(ctx, "noisy")
	if err != nil {
		t.Errorf("a call after the node's earlier one ended: %v", err)
	}
	for _, r := range []func(){r2, r3, r4} {
		if r != nil {
			r()
		}
	}
	if n := s.limitsOf("noisy").inFlight.Load(); n != 0 {
		t.Errorf("noisy holds %d slots after every call ended", n)
	}
}
