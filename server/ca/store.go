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
	// exists.
	PutCert(ctx context.Context, c Cert) error
	// Cert returns the newest certificate record of name.
	Cert(ctx context.Context, name string) (Cert, bool, error)
	// Certs returns every certificate record, newest first per name.
	Certs(ctx context.Context) ([]Cert, error)
	// Revoke marks name's unrevoked certificate revoked at the given time.
	Revoke(ctx context.Context, name string, at time.Time) error
	// Revoked returns the serials of every revoked certificate (the server
	// keeps them in memory and checks each call against them).
	Revoked(ctx context.Context) ([]string, error)

	// PutPending stores (or replaces) a request waiting for an operator.
	PutPending(ctx context.Context, p Pending) error
	// Pending returns the pending request of name.
	Pending(ctx context.Context, name string) (Pending, bool, error)
	// DeletePending removes name's pending request.
	DeletePending(ctx context.Context, name string) error
	// Pendings returns every pending request.
	Pendings(ctx context.Context) ([]Pending, error)

	// PutToken stores a join token (by the sha256 of its secret).
	PutToken(ctx context.Context, t Token) error
	// UseToken finds the token whose secret hashes to hash and, when it is
	// single-use, marks it used in the same transaction; ok is false when
	// there is no such token or a single-use token was already used.
	UseToken(ctx context.Context, hash string, at time.Time) (t Token, ok bool, err error)
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
}

// Pending is a certificate request waiting for `herd ca sign NAME`.
type Pending struct {
	Name      string
	CSR       []byte // DER
	Requested time.Time
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
