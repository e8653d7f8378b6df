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
// sign NAME`: a request sent again with the same key stays as it is, and
// one with a different key replaces it. Replacing means that whoever asks
// last for a name is what the operator signs, so an operator compares the
// key fingerprint the node shows with the one List shows before signing;
// the alternative, first request wins, would let anyone hold a name
// hostage by asking for it before the real node does.
func (c *CA) Enroll(ctx context.Context, name string, csrDER []byte, token string) (EnrollResult, error) {
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
	if ok && csrHasKey(old.CSR, pub) {
		return pending, nil
	}
	if err := c.st.PutPending(ctx, Pending{Name: name, CSR: csrDER, Requested: c.now()}); err != nil {
		return EnrollResult{}, fmt.Errorf("enrolling %q: storing pending request: %w", name, err)
	}
	fp, _ := Fingerprint(pub)
	c.log.Info("enrollment pending", "name", name, "key", fp, "reason", reason, "replaced", ok)
	return pending, nil
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
