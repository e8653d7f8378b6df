package ca

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"
	"time"
)

// ErrRevoked means a client certificate was revoked. The server tells
// the node so in words its agent recognises ("certificate revoked").
var ErrRevoked = errors.New("certificate revoked")

// ErrNotIssued means a client certificate chains to this CA but the CA
// has no record of issuing it: made with the CA key outside Herd, or
// replayed from elsewhere. It is refused like a forgery.
var ErrNotIssued = errors.New("certificate was not issued by this server")

// Caller is who a verified client certificate identifies.
type Caller struct {
	Name     string
	Admin    bool
	Serial   string
	NotAfter time.Time
}

// verified caches, by the sha256 of a leaf's DER, the leaves that passed
// VerifyClient's signature and issued-serial checks, so that the check
// on every call costs a hash and a map lookup. Only certificates this CA
// signed and recorded get in, so it is bounded by what the CA issued.
type verified struct {
	m sync.Map // [32]byte -> Caller
}

// VerifyClient decides whether a client's certificate is one this CA
// issued and still honours, whatever the TLS layer concluded: the server
// calls it at every handshake (a resumed session included) and on every
// call. It re-verifies the leaf's signature against the CA for client
// authentication at the CA's now, finds its serial among the certificates
// the CA recorded issuing (else ErrNotIssued), refuses it when revoked,
// and reads the name and kind from it. chain is the peer's certificates
// as sent, leaf first; the rest are ignored, since the CA issues leaves
// directly.
//
// A TLS session ticket carries the client's certificates, so whoever
// holds the ticket keys can present any certificate on a resumed session
// without its key: checking here refuses an unsigned or never-issued one,
// and keeping the ticket keys with the CA key and rotating them (the
// server's job) limits the rest.
func (c *CA) VerifyClient(ctx context.Context, chain []*x509.Certificate) (Caller, error) {
	if len(chain) == 0 || chain[0] == nil {
		return Caller{}, errors.New("no client certificate")
	}
	leaf := chain[0]
	now := c.now()
	key := sha256.Sum256(leaf.Raw)
	if v, ok := c.verified.m.Load(key); ok {
		id := v.(Caller)
		if now.After(id.NotAfter) {
			c.verified.m.Delete(key)
			return Caller{}, fmt.Errorf("certificate of %q expired at %s", id.Name, id.NotAfter.Format(time.RFC3339))
		}
		if c.IsRevoked(id.Serial) {
			return Caller{}, fmt.Errorf("%w: %q (serial %s)", ErrRevoked, id.Name, id.Serial)
		}
		if c.opts.Shared {
			// Another server may have revoked it a moment ago: the
			// store, not this server's view, decides.
			rec, ok, err := c.st.CertBySerial(ctx, id.Serial)
			if err != nil {
				return Caller{}, fmt.Errorf("checking whether the certificate of %q was revoked: %w", id.Name, err)
			}
			if ok && !rec.RevokedAt.IsZero() {
				c.learn(map[string]string{id.Serial: id.Name})
				return Caller{}, fmt.Errorf("%w: %q (serial %s)", ErrRevoked, id.Name, id.Serial)
			}
		}
		return id, nil
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots:       c.auth.Load().pool,
		CurrentTime: now,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return Caller{}, fmt.Errorf("certificate of %q does not verify against this server's CA: %w", leaf.Subject.CommonName, err)
	}
	serial := SerialHex(leaf)
	if c.IsRevoked(serial) {
		return Caller{}, fmt.Errorf("%w: %q (serial %s)", ErrRevoked, leaf.Subject.CommonName, serial)
	}
	rec, ok, err := c.st.CertBySerial(ctx, serial)
	if err != nil {
		return Caller{}, fmt.Errorf("checking certificate of %q: %w", leaf.Subject.CommonName, err)
	}
	if !ok || rec.Name != leaf.Subject.CommonName || string(rec.DER) != string(leaf.Raw) {
		c.log.Warn("refused a CA-signed certificate the CA has no record of issuing", "subject", leaf.Subject.CommonName, "serial", serial)
		return Caller{}, fmt.Errorf("certificate of %q (serial %s): %w", leaf.Subject.CommonName, serial, ErrNotIssued)
	}
	if !rec.RevokedAt.IsZero() {
		if c.opts.Shared {
			c.learn(map[string]string{serial: rec.Name})
		}
		return Caller{}, fmt.Errorf("%w: %q (serial %s)", ErrRevoked, rec.Name, serial)
	}
	name, admin, err := Identify(leaf)
	if err != nil {
		return Caller{}, err
	}
	if admin != rec.Admin {
		return Caller{}, fmt.Errorf("certificate of %q (serial %s): its kind differs from the CA's record: %w", name, serial, ErrNotIssued)
	}
	id := Caller{Name: name, Admin: admin, Serial: serial, NotAfter: leaf.NotAfter}
	c.verified.m.Store(key, id)
	return id, nil
}
