package ca_test

import (
	"context"
	"testing"

	"github.com/herdcm/herd/server/ca"
)

// TestReloadRevocations: a revocation another CA on the same store and
// directory made (a second server; an operator's restored CRL) is taken
// on reload, and a reload never un-revokes.
func TestReloadRevocations(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	node := f.mustIssue(t, "web-01")
	other := f.open(t) // the same directory and store: another server
	if err := other.Revoke(ctx, "web-01"); err != nil {
		t.Fatal(err)
	}
	serial := ca.SerialHex(node)
	if f.ca.IsRevoked(serial) {
		t.Fatal("IsRevoked before the reload: the test proves nothing")
	}
	n, err := f.ca.ReloadRevocations(ctx)
	if err != nil || n != 1 {
		t.Fatalf("ReloadRevocations = %d, %v; want 1, nil", n, err)
	}
	if !f.ca.IsRevoked(serial) {
		t.Error("IsRevoked = false after ReloadRevocations")
	}
	if n, err := f.ca.ReloadRevocations(ctx); err != nil || n != 0 {
		t.Errorf("a second ReloadRevocations = %d, %v; want 0, nil", n, err)
	}
}
