package agent

import (
	"context"
	"errors"
	"testing"
)

// TestRevokedNodeAppliesNothing: once the server says the certificate is
// revoked, every run fails with ErrRevoked, and neither a check-in run
// nor a drift run applies the cached catalog.
func TestRevokedNodeAppliesNothing(t *testing.T) {
	t.Parallel()
	fs := newFakeServer(t)
	fs.publish(testCatalog("web-01", "v1", fileRes("/etc/motd", "managed\n")), nil, false)
	a := newTestAgent(t, fs)
	ctx := context.Background()
	if _, out := a.d.cycle(ctx, TriggerManual); out.err != nil {
		t.Fatalf("first run: %v", out.err)
	}
	fs.mu.Lock()
	fs.revoked = true
	fs.mu.Unlock()
	for _, why := range []Trigger{TriggerManual, TriggerDrift, TriggerTimer, TriggerDrift} {
		a.write(t, "etc/motd", "edited\n")
		if _, out := a.d.cycle(ctx, why); !errors.Is(out.err, ErrRevoked) {
			t.Errorf("%s run after revocation: err = %v, want ErrRevoked", why, out.err)
		}
		if got := a.read(t, "etc/motd"); got != "edited\n" {
			t.Errorf("%s run after revocation applied the cached catalog: etc/motd = %q", why, got)
		}
	}
}
