package ca

import (
	"context"
	"fmt"
	"maps"
)

// ReloadRevocations reads the revoked serials in the store and in the CRL
// beside the CA again, and adds those it did not know (a second server on
// the same store revoked a certificate; an operator restored crl.pem).
// It never un-revokes: a serial missing from both stays revoked. It
// returns how many serials were new. The server calls it on SIGHUP; the
// interceptor refuses their next call.
func (c *CA) ReloadRevocations(ctx context.Context) (int, error) {
	serials, err := c.st.Revoked(ctx)
	if err != nil {
		return 0, fmt.Errorf("reloading revocations: %w", err)
	}
	if !c.noCRL {
		crl, _, err := c.loadCRL()
		if err != nil {
			return 0, fmt.Errorf("reloading revocations: %w", err)
		}
		serials = append(serials, crl...)
	}
	c.revokeMu.Lock()
	defer c.revokeMu.Unlock()
	cur := *c.revoked.Load()
	var next map[string]struct{}
	for _, s := range serials {
		if _, ok := cur[s]; ok {
			continue
		}
		if next == nil {
			next = maps.Clone(cur)
		}
		next[s] = struct{}{}
	}
	if next == nil {
		return 0, nil
	}
	c.revoked.Store(&next)
	return len(next) - len(cur), nil
}

// ForgetServerCert drops the server certificate kept in memory, so that
// the next handshake reads server.crt and server.key from the CA's
// directory again (an operator replaced them), or issues a new pair when
// they no longer fit.
func (c *CA) ForgetServerCert() {
	c.serverMu.Lock()
	c.serverCert = nil
	c.serverMu.Unlock()
}
