package store

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/herdcm/herd/testkit"
)

// TestNotifyReachesListeners: a notification sent by one store handle
// reaches a listener on another handle of the same schema, and not one on
// another schema of the same database.
func TestNotifyReachesListeners(t *testing.T) {
	t.Parallel()
	dsn := testkit.Postgres(t)
	a, b := openAt(t, dsn, Options{}), openAt(t, dsn, Options{})
	other := openAt(t, testkit.Postgres(t), Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got, gotOther := make(chan string, 4), make(chan string, 4)
	ready, readyOther := make(chan struct{}, 4), make(chan struct{}, 4)
	go b.Listen(ctx, "test", func() { ready <- struct{}{} }, func(p string) { got <- p })
	go other.Listen(ctx, "test", func() { readyOther <- struct{}{} }, func(p string) { gotOther <- p })
	<-ready
	<-readyOther
	if err := a.Notify(ctx, "test", "hello"); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-got:
		if p != "hello" {
			t.Errorf("heard %q, want hello", p)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the listener heard nothing")
	}
	// Sent after "hello" on the same schema's channel: once heard, the
	// other schema would have heard the first by now.
	if err := other.Notify(ctx, "test", "own"); err != nil {
		t.Fatal(err)
	}
	if p := <-gotOther; p != "own" {
		t.Errorf("a store in another schema heard %q", p)
	}
	if err := a.Notify(ctx, "test", strings.Repeat("x", MaxNotifyBytes+1)); err == nil {
		t.Error("Notify past MaxNotifyBytes = nil error")
	}
}

// TestLeaseIsExclusive: one holder at a time; LeaseHolder names it; a
// released lease is taken by the next.
func TestLeaseIsExclusive(t *testing.T) {
	t.Parallel()
	dsn := testkit.Postgres(t)
	a, b := openAt(t, dsn, Options{}), openAt(t, dsn, Options{})
	ctx := context.Background()
	la, ok, err := a.TryLease(ctx, "audit", "server-a:8140")
	if err != nil || !ok {
		t.Fatalf("TryLease on a free lease = %v, %v", ok, err)
	}
	if _, ok, err := b.TryLease(ctx, "audit", "server-b:8140"); err != nil || ok {
		t.Fatalf("TryLease on a held lease = %v, %v; want false", ok, err)
	}
	if lb, ok, err := b.TryLease(ctx, "rollout:production", "server-b:8140"); err != nil || !ok {
		t.Fatalf("TryLease on another key = %v, %v", ok, err)
	} else {
		lb.Release()
	}
	if h, ok, err := b.LeaseHolder(ctx, "audit"); err != nil || !ok || h != "server-a:8140" {
		t.Errorf("LeaseHolder = %q, %v, %v; want server-a:8140", h, ok, err)
	}
	la.Release()
	<-la.Lost()
	lb, ok, err := b.TryLease(ctx, "audit", "server-b:8140")
	if err != nil || !ok {
		t.Fatalf("TryLease after release = %v, %v", ok, err)
	}
	defer lb.Release()
	if h, _, _ := a.LeaseHolder(ctx, "audit"); h != "server-b:8140" {
		t.Errorf("LeaseHolder after the handover = %q", h)
	}
}

func TestSqliteIsNotShared(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	if s.Postgres() {
		t.Error("a sqlite store says Postgres")
	}
	if err := s.Notify(context.Background(), "x", "y"); !errors.Is(err, ErrNotShared) {
		t.Errorf("Notify on sqlite = %v", err)
	}
	if _, _, err := s.TryLease(context.Background(), "x", "y"); !errors.Is(err, ErrNotShared) {
		t.Errorf("TryLease on sqlite = %v", err)
	}
}
