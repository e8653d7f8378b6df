package ca

import (
	"context"
	"time"
)

// Store keeps the CA's records. The server's sqlite store implements it;
// tests may use MemStore.
type Store interface {
	// PutCert stores an issued certificate; it replaces a revoked record
	// of the same name, and fails with ErrExists when an unrevoked one
	// exists. With c.Supersedes set, it marks that certificate (of the
	// same name, unrevoked, not yet superseded; else ErrNotFound) as
	// superseded by c in the same transaction, so that c may be stored:
	// a renewal, or a new certificate for a name whose last one expired.
	PutCert(ctx context.Context, c Cert) error
	// Cert returns the newest certificate record of name.
	Cert(ctx context.Context, name string) (Cert, bool, error)
	// Certs returns every certificate record, newest first per name.
	Certs(ctx context.Context) ([]Cert, error)
	// Revoke marks name's unrevoked certificates (the current one and any
	// it superseded) revoked at the given time.
	Revoke(ctx context.Context, name string, at time.Time) error
	// Revoked returns the serials of every revoked certificate (the server
	// keeps them in memory and checks each call against them).
	Revoked(ctx context.Context) ([]string, error)

	// CertBySerial returns the certificate record with this serial (as
	// SerialHex formats it), revoked or not: the server accepts only
	// certificates this CA recorded issuing.
	CertBySerial(ctx context.Context, serial string) (Cert, bool, error)

	// PutPending stores (or replaces) a request waiting for an operator.
	PutPending(ctx context.Context, p Pending) error
	// Pending returns the pending request of name.
	Pending(ctx context.Context, name string) (Pending, bool, error)
	// DeletePending removes name's pending request.
	DeletePending(ctx context.Context, name string) error
	// Pendings returns every pending request.
	Pendings(ctx context.Context) ([]Pending, error)
	// CountPending returns how many requests are pending.
	CountPending(ctx context.Context) (int, error)
	// PrunePending removes the requests made before before and says how
	// many it removed.
	PrunePending(ctx context.Context, before time.Time) (int, error)

	// PutToken stores a join token (by the sha256 of its secret).
	PutToken(ctx context.Context, t Token) error
	// UseToken finds the token whose secret hashes to hash and calls
	// accept with it, in the same transaction; only when accept returns
	// true is a single-use token marked used. ok is false when there is no
	// such token, a single-use token was already used, or accept refused
	// it: a token is spent only by an enrollment it lets through.
	UseToken(ctx context.Context, hash string, at time.Time, accept func(Token) bool) (t Token, ok bool, err error)
	// Tokens returns every join token, newest first.
	Tokens(ctx context.Context) ([]Token, error)
	// DeleteToken removes the token with this hash; removing none is no
	// error.
	DeleteToken(ctx context.Context, hash string) error
}

// Cert is an issued certificate.
type Cert struct {
	Name      string
	Serial    string // hex
	DER       []byte
	Admin     bool
	NotAfter  time.Time
	Issued    time.Time
	RevokedAt time.Time // zero when valid
	// Supersedes is the serial of the certificate this one renewed or
	// replaced after it expired; SupersededBy the serial of the one that
	// renewed this one. A superseded certificate stays valid until it
	// expires, so that connections made with it go on.
	Supersedes, SupersededBy string
}

// Pending is a certificate request waiting for `herd ca sign NAME`.
type Pending struct {
	Name      string
	CSR       []byte // DER
	Requested time.Time
	// Source is the network address the request came from, for the
	// operator deciding whether to sign it.
	Source string
}

// Token is a join token: a secret that lets a node enroll without an
// operator signing its request.
type Token struct {
	Hash        string    // hex sha256 of the secret; the secret itself is never stored
	NamePattern string    // path.Match glob the name must match; "" is any
	Expires     time.Time // zero: never
	SingleUse   bool
	UsedAt      time.Time // zero: not used
	Created     time.Time
}
