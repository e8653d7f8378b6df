package ca

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/x509"
	"fmt"
	"time"
)

// maxCSR bounds the certificate requests Enroll parses; Herd's own are
// a few hundred bytes.
const maxCSR = 16 << 10

// State is where a name stands with the CA: its certificate is issued or
// revoked, or its request is pending. The strings are the wire's.
type State string

// The states of a name.
const (
	StateIssued  State = "issued"
	StatePending State = "pending"
	StateRevoked State = "revoked"
	// StateSuperseded is a certificate its node renewed; it is valid
	// until it expires.
	StateSuperseded State = "superseded"
)

// EnrollResult is the CA's answer to an enrollment.
type EnrollResult struct {
	// State is StateIssued or StatePending.
	State State
	// Cert is the issued certificate, when State is StateIssued.
	Cert Cert
	// RetryAfter is how long a pending requester should wait before
	// asking again.
	RetryAfter time.Duration
	// Reason says, when pending, why no certificate was issued at once
	// ("no join token", "join token expired", …), for the server's log.
	Reason string
}

// Enroll asks for a node certificate for name, with the public key of a
// DER certificate request and an optional join token.
//
// The name must pass CheckName (else ErrInvalidName) and the request must
// parse and carry a valid self-signature over an ECDSA P-256/P-384 or
// ed25519 key (else ErrInvalidCSR). Only the request's public key is used:
// its subject, SANs and extensions are ignored.
//
// When name has an unrevoked certificate, Enroll fails with ErrExists,
// unless that certificate is for the same public key: then it is returned
// again, so that a node whose request an operator signed, or whose answer
// was lost, gets its certificate by asking again (a certificate is public;
// only the holder of the key can use it).
//
// A valid join token (unexpired, its pattern matching name) issues the
// certificate at once. Otherwise the request is kept pending for `herd ca
// sign NAME`, with source (the requester's address) for the operator to
// see. The first request for a name holds it: the same key asking again
// is told to wait, another key is refused with ErrPendingOther until an
// operator rejects the request (`herd ca reject NAME`) or it is older
// than Options.PendingTTL. Letting the last request win instead would let
// anyone replace a waiting node's key with their own just before the
// operator signs. At most Options.MaxPending requests wait at once; past
// that, after dropping expired ones, a new one fails with ErrTooMany.
func (c *CA) Enroll(ctx context.Context, name string, csrDER []byte, token, source string) (EnrollResult, error) {
	if err := CheckName(name); err != nil {
		return EnrollResult{}, fmt.Errorf("enrolling: %w", err)
	}
	pub, err := parseCSR(csrDER)
	if err != nil {
		return EnrollResult{}, fmt.Errorf("enrolling %q: %w", name, err)
	}
	defer c.lock(name)()

	if cur, ok, err := c.unrevoked(ctx, name); err != nil {
		return EnrollResult{}, fmt.Errorf("enrolling %q: %w", name, err)
	} else if ok {
		if !cur.Admin && certHasKey(cur.DER, pub) {
			return EnrollResult{State: StateIssued, Cert: cur}, nil
		}
		return EnrollResult{}, fmt.Errorf("enrolling %q: %w", name, ErrExists)
	}

	reason := "no join token"
	if token != "" {
		var ok bool
		if ok, reason, err = c.useToken(ctx, name, token); err != nil {
			return EnrollResult{}, fmt.Errorf("enrolling %q: %w", name, err)
		}
		if ok {
			cert, err := c.issueAndStore(ctx, pub, name, false, "join token")
			if err != nil {
				return EnrollResult{}, fmt.Errorf("enrolling %q: %w", name, err)
			}
			if err := c.dropPending(ctx, name); err != nil {
				return EnrollResult{}, fmt.Errorf("enrolling %q: %w", name, err)
			}
			return EnrollResult{State: StateIssued, Cert: cert}, nil
		}
	}

	pending := EnrollResult{State: StatePending, RetryAfter: c.opts.RetryAfter, Reason: reason}
	old, ok, err := c.st.Pending(ctx, name)
	if err != nil {
		return EnrollResult{}, fmt.Errorf("enrolling %q: reading pending request: %w", name, err)
	}
	if ok && !c.pendingExpired(old) {
		if csrHasKey(old.CSR, pub) {
			return pending, nil
		}
		oldFP := ""
		if csr, err := x509.ParseCertificateRequest(old.CSR); err == nil {
			oldFP, _ = Fingerprint(csr.PublicKey)
		}
		c.log.Warn("enrollment refused: another key's request is pending", "name", name, "source", source, "pending_key", oldFP)
		return EnrollResult{}, fmt.Errorf("enrolling %q: %w (key %s); if that is not this node's key, an operator runs: herd ca reject %s", name, ErrPendingOther, oldFP, name)
	}
	if !ok {
		if err := c.roomForPending(ctx); err != nil {
			return EnrollResult{}, fmt.Errorf("enrolling %q: %w", name, err)
		}
	}
	if err := c.st.PutPending(ctx, Pending{Name: name, CSR: csrDER, Requested: c.now(), Source: source}); err != nil {
		return EnrollResult{}, fmt.Errorf("enrolling %q: storing pending request: %w", name, err)
	}
	fp, _ := Fingerprint(pub)
	c.log.Info("enrollment pending", "name", name, "key", fp, "source", source, "reason", reason, "replaced_expired", ok)
	return pending, nil
}

// pendingExpired reports whether a pending request is past PendingTTL.
func (c *CA) pendingExpired(p Pending) bool {
	return !c.now().Before(p.Requested.Add(c.opts.PendingTTL))
}

// roomForPending makes sure one more request may be kept: below the cap,
// or below it after dropping the expired ones. Concurrent enrollments of
// different names may each see room and overshoot the cap by a few, which
// bounds nothing less: the cap is about thousands, not one.
func (c *CA) roomForPending(ctx context.Context) error {
	n, err := c.st.CountPending(ctx)
	if err != nil {
		return fmt.Errorf("counting pending requests: %w", err)
	}
	if n < c.opts.MaxPending {
		return nil
	}
	if _, err := c.PrunePending(ctx); err != nil {
		return err
	}
	if n, err = c.st.CountPending(ctx); err != nil {
		return fmt.Errorf("counting pending requests: %w", err)
	}
	if n >= c.opts.MaxPending {
		return fmt.Errorf("%w: %d waiting for an operator (sign or reject them, or enroll with a join token)", ErrTooMany, n)
	}
	return nil
}

// PrunePending drops the pending requests older than Options.PendingTTL
// and says how many it dropped. Enroll and List call it; the server also
// calls it periodically.
func (c *CA) PrunePending(ctx context.Context) (int, error) {
	n, err := c.st.PrunePending(ctx, c.now().Add(-c.opts.PendingTTL))
	if err != nil {
		return 0, fmt.Errorf("dropping expired pending requests: %w", err)
	}
	if n > 0 {
		c.log.Info("dropped expired pending requests", "count", n, "ttl", c.opts.PendingTTL)
	}
	return n, nil
}

// dropPending removes name's pending request, if it has one.
func (c *CA) dropPending(ctx context.Context, name string) error {
	_, ok, err := c.st.Pending(ctx, name)
	if err == nil && ok {
		err = c.st.DeletePending(ctx, name)
	}
	if err != nil {
		return fmt.Errorf("removing pending request: %w", err)
	}
	return nil
}

// parseCSR checks a DER certificate request and returns its public key,
// the only part of it the CA uses. Errors wrap ErrInvalidCSR.
func parseCSR(der []byte) (crypto.PublicKey, error) {
	if len(der) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrInvalidCSR)
	}
	if len(der) > maxCSR {
		return nil, fmt.Errorf("%w: %d bytes, want at most %d", ErrInvalidCSR, len(der), maxCSR)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidCSR, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidCSR, err)
	}
	// A short list of strong key types keeps weak and huge (slow to
	// verify) keys out; Herd's agents make P-256 keys.
	switch k := csr.PublicKey.(type) {
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P256() || k.Curve == elliptic.P384() {
			return k, nil
		}
	case ed25519.PublicKey:
		return k, nil
	}
	return nil, fmt.Errorf("%w: %s key not accepted (want ECDSA P-256 or P-384, or ed25519)", ErrInvalidCSR, csr.PublicKeyAlgorithm)
}

// certHasKey reports whether the DER certificate is for pub.
func certHasKey(certDER []byte, pub crypto.PublicKey) bool {
	cert, err := x509.ParseCertificate(certDER)
	return err == nil && keysEqual(cert.PublicKey, pub)
}

// csrHasKey reports whether the DER certificate request is for pub.
func csrHasKey(csrDER []byte, pub crypto.PublicKey) bool {
	csr, err := x509.ParseCertificateRequest(csrDER)
	return err == nil && keysEqual(csr.PublicKey, pub)
}

// keysEqual reports whether two public keys are the same key.
func keysEqual(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}
