package ca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// Errors callers branch on with errors.Is. The server maps them to gRPC
// codes: ErrInvalid (and so ErrInvalidName and ErrInvalidCSR) to
// InvalidArgument, ErrExists and ErrPendingOther to AlreadyExists,
// ErrNotFound to NotFound, ErrTooMany to ResourceExhausted, ErrFingerprint
// to FailedPrecondition.
var (
	// ErrInvalid means a request is malformed: a bad name, certificate
	// request, token pattern or lifetime. ErrInvalidName and ErrInvalidCSR
	// wrap it.
	ErrInvalid = errors.New("invalid request")
	// ErrExists means an unrevoked certificate exists for the name; an
	// admin must revoke it before the name can be issued again. Store
	// implementations return it from PutCert.
	ErrExists = errors.New("an unrevoked certificate exists for this name")
	// ErrNotFound means there is no pending request or no unrevoked
	// certificate of that name.
	ErrNotFound = errors.New("not found")
	// ErrPendingOther means a request with another key is already pending
	// for the name: the first request holds it until an operator rejects
	// it or it expires.
	ErrPendingOther = errors.New("a request with another key is pending for this name")
	// ErrTooMany means the CA holds as many pending requests as it may.
	ErrTooMany = errors.New("too many pending requests")
	// ErrFingerprint means the key of a pending request is not the one the
	// operator named.
	ErrFingerprint = errors.New("the pending request's key has another fingerprint")
	// ErrInvalidName means a name cannot be a node's or an admin's name.
	ErrInvalidName error = invalid("invalid name")
	// ErrInvalidCSR means a certificate request is malformed, its
	// self-signature does not verify, or its key type is not accepted.
	ErrInvalidCSR error = invalid("invalid certificate request")
)

// invalid is a kind of ErrInvalid with its own text, so that an error
// reads "invalid name: …" and still matches ErrInvalid.
type invalid string

func (e invalid) Error() string        { return string(e) }
func (e invalid) Is(target error) bool { return target == ErrInvalid }

// The files Open keeps in its directory.
const (
	caCertFile     = "ca.crt"      // the CA certificate, 0644
	caKeyFile      = "ca.key"      // the CA's private key, 0600
	signingKeyFile = "signing.key" // the catalog signing key (ed25519), 0600
	serverCertFile = "server.crt"  // the server's TLS certificate, 0644
	serverKeyFile  = "server.key"  // its private key, 0600
)

// caValidity is how long a CA created by Open is valid.
const caValidity = 10 * 365 * 24 * time.Hour

// backdate is how far before now issued certificates start, so that a
// host whose clock is a little behind the server's accepts them at once.
const backdate = 5 * time.Minute

// Options tunes a CA. The zero value is usable.
type Options struct {
	// CertFile and KeyFile name an existing CA certificate and its private
	// key (PEM) to issue from, instead of the CA that Open creates in its
	// directory on first start. Both or neither. They are read, never
	// written.
	CertFile, KeyFile string
	// NodeValidity is how long a node certificate is valid; 0 is 30 days.
	// Agents renew theirs (Renew) at two thirds of its life.
	NodeValidity time.Duration
	// AdminValidity is how long an admin certificate is valid; 0 is one year.
	AdminValidity time.Duration
	// ServerValidity is how long the server's TLS certificate is valid; 0
	// is one year. ServerCert renews it in its last 30 days.
	ServerValidity time.Duration
	// RetryAfter is what a pending enrollment is told to wait before
	// asking again; 0 is 30 seconds.
	RetryAfter time.Duration
	// PendingTTL is how long a pending request holds its name before it is
	// dropped (and the name is open to a new request); 0 is 7 days.
	PendingTTL time.Duration
	// MaxPending bounds the requests pending at once; past it a new one is
	// refused with ErrTooMany; 0 is 1,000.
	MaxPending int
	// MaxTokenTTL is the longest lifetime NewToken grants; 0 is 30 days.
	MaxTokenTTL time.Duration
	// Log receives issuance and revocation records; nil discards them.
	Log *slog.Logger
	// Now is the clock; nil is time.Now. Tests set it.
	Now func() time.Time
	// Shared says other servers revoke through the same store: every
	// VerifyClient then reads the certificate's revocation from the
	// store, so that a certificate another server revoked is refused
	// from its next call on, whether or not this server has heard of it
	// yet (Learn keeps the in-memory view, which ends streams and
	// connections, up to date).
	Shared bool
	// Announce, when set, is called after each revocation Revoke commits
	// (not those Learn finds), with the serials it revoked, so that the
	// other servers sharing the store are told.
	Announce func(name string, serials []string)
}

// CA is the enrollment certificate authority of one server. Its methods
// are safe for concurrent use.
type CA struct {
	dir  string
	st   Store
	opts Options
	log  *slog.Logger

	// auth is the CAs: the one that issues, the one retiring after a
	// rotation, the retired. Replaced whole by Rotate and Retire, so that
	// VerifyClient, on every call, reads it with one atomic load.
	auth     atomic.Pointer[authorities]
	rotateMu sync.Mutex // serialises Rotate and Retire
	// given says the CA came from Options.CertFile and KeyFile, which
	// Herd never writes: it cannot rotate them.
	given   bool
	signKey ed25519.PrivateKey

	// names serialises the decision and the write for one name (check for
	// an unrevoked certificate, spend a token, store) within this process;
	// across processes the store's PutCert refusing with ErrExists is the
	// backstop. Striped so that unrelated names rarely wait on each other.
	names [64]sync.Mutex

	// revoked is the set of revoked serials, replaced whole on each
	// revocation so that IsRevoked, called on every RPC, is one atomic
	// load and a map lookup.
	revoked  atomic.Pointer[map[string]struct{}]
	revokeMu sync.Mutex // serialises writers of revoked, subs and the CRL
	subs     map[int]func(name, serial string)
	nextSub  int
	// crlNumber is the number of the CRL last written; noCRL says the CA
	// certificate may not sign CRLs (a given CA without the CRL-signing
	// usage), so revocations live in the store only.
	crlNumber *big.Int
	noCRL     bool

	serverMu   sync.Mutex
	serverCert *serverCert // cached by ServerCert

	verified verified   // VerifyClient's cache
	ticketMu sync.Mutex // serialises TicketKeys
}

// Open opens the CA kept in dir, creating dir, the CA (an ECDSA P-256
// self-signed root valid for ten years) and the catalog signing key on
// first start; with opts.CertFile and opts.KeyFile it issues from that CA
// instead. It loads the revoked serials from st.
func Open(ctx context.Context, dir string, st Store, opts Options) (*CA, error) {
	if st == nil {
		return nil, errors.New("opening CA: no store")
	}
	if opts.NodeValidity <= 0 {
		opts.NodeValidity = 30 * 24 * time.Hour
	}
	if opts.AdminValidity <= 0 {
		opts.AdminValidity = 365 * 24 * time.Hour
	}
	if opts.ServerValidity <= 0 {
		opts.ServerValidity = 365 * 24 * time.Hour
	}
	if opts.RetryAfter <= 0 {
		opts.RetryAfter = 30 * time.Second
	}
	if opts.PendingTTL <= 0 {
		opts.PendingTTL = 7 * 24 * time.Hour
	}
	if opts.MaxPending <= 0 {
		opts.MaxPending = 1000
	}
	if opts.MaxTokenTTL <= 0 {
		opts.MaxTokenTTL = 30 * 24 * time.Hour
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	c := &CA{dir: dir, st: st, opts: opts, log: log.With("component", "ca"), subs: map[int]func(string, string){}}

	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("opening CA: %w", err)
	}
	var err error
	a := &authorities{}
	switch {
	case opts.CertFile != "" || opts.KeyFile != "":
		if opts.CertFile == "" || opts.KeyFile == "" {
			return nil, errors.New("opening CA: give both a CA certificate and its key, or neither")
		}
		c.given = true
		a.cur, a.curKey, err = loadCA(opts.CertFile, opts.KeyFile, opts.Now())
	default:
		// A rotation cut short by a crash is finished before anything
		// is loaded, so that the files say one thing.
		if err := c.finishRotation(); err != nil {
			return nil, fmt.Errorf("opening CA: %w", err)
		}
		if a.cur, a.curKey, err = c.loadOrCreateCA(); err == nil {
			err = c.loadOthers(a)
		}
	}
	if err != nil {
		return nil, err
	}
	c.auth.Store(a.withPool())
	cert := a.cur

	if c.signKey, err = c.loadOrCreateSigningKey(); err != nil {
		return nil, err
	}

	serials, err := st.Revoked(ctx)
	if err != nil {
		return nil, fmt.Errorf("opening CA: loading revoked serials: %w", err)
	}
	set := make(map[string]struct{}, len(serials))
	for _, s := range serials {
		set[s] = struct{}{}
	}
	// The CRL beside the CA and the store each keep every revocation; a
	// serial in either stays revoked, so that a store emptied or restored
	// from an old backup un-revokes nothing.
	c.noCRL = cert.KeyUsage != 0 && cert.KeyUsage&x509.KeyUsageCRLSign == 0
	if c.noCRL {
		c.log.Warn("the CA certificate may not sign revocation lists: revocations are kept in the store only", "subject", cert.Subject.CommonName)
	} else {
		crlSerials, number, err := c.loadCRL()
		if err != nil {
			return nil, fmt.Errorf("opening CA: %w", err)
		}
		c.crlNumber = number
		onlyCRL := 0
		for _, s := range crlSerials {
			if _, ok := set[s]; !ok {
				set[s] = struct{}{}
				onlyCRL++
			}
		}
		if onlyCRL > 0 {
			c.log.Warn("revocations in the CA's revocation list are missing from the store; they stay revoked", "count", onlyCRL)
		}
		if len(set) != len(crlSerials) || number.Sign() == 0 {
			if err := c.writeCRL(set); err != nil {
				return nil, fmt.Errorf("opening CA: %w", err)
			}
		}
	}
	c.revoked.Store(&set)
	// At start, as hourly (the server's pruning), a retiring CA that no
	// valid certificate depends on any more retires.
	if _, err := c.Retire(ctx); err != nil {
		return nil, fmt.Errorf("opening CA: %w", err)
	}
	return c, nil
}

// loadOrCreateCA loads the CA kept in c.dir, or creates it when neither of
// its files exists. One file without the other is an error rather than a
// reason to create a new CA, which would orphan every issued certificate.
func (c *CA) loadOrCreateCA() (*x509.Certificate, crypto.Signer, error) {
	certPath, keyPath := filepath.Join(c.dir, caCertFile), filepath.Join(c.dir, caKeyFile)
	_, certErr := os.Stat(certPath)
	_, keyErr := os.Stat(keyPath)
	switch {
	case certErr == nil && keyErr == nil:
		return loadCA(certPath, keyPath, c.opts.Now())
	case errors.Is(certErr, os.ErrNotExist) && errors.Is(keyErr, os.ErrNotExist):
	case certErr == nil:
		return nil, nil, fmt.Errorf("opening CA: %s exists but %s does not; restore the key or remove both to start a new CA", certPath, keyPath)
	case keyErr == nil:
		return nil, nil, fmt.Errorf("opening CA: %s exists but %s does not; restore the certificate or remove both to start a new CA", keyPath, certPath)
	default:
		return nil, nil, fmt.Errorf("opening CA: %w", errors.Join(certErr, keyErr))
	}

	return c.createCA(certPath, keyPath)
}

// createCA makes a new CA, an ECDSA P-256 self-signed root valid for ten
// years, and writes its key and certificate to keyPath and certPath,
// neither of which may exist.
func (c *CA) createCA(certPath, keyPath string) (*x509.Certificate, crypto.Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("creating CA: generating key: %w", err)
	}
	now := c.opts.Now()
	tmpl := &x509.Certificate{
		SerialNumber: newSerial(),
		// A random suffix tells apart the CAs of several Herd servers,
		// which would otherwise share one subject.
		Subject:               pkix.Name{CommonName: "Herd CA " + hex.EncodeToString(randomBytes(4)), Organization: []string{"Herd"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(caValidity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, fmt.Errorf("creating CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("creating CA: parsing own certificate: %w", err)
	}
	keyPEM, err := marshalKeyPEM(key)
	if err != nil {
		return nil, nil, fmt.Errorf("creating CA: %w", err)
	}
	// The key first: a crash between the two leaves a key without a
	// certificate, which the next start reports instead of overwriting.
	if err := writeNew(keyPath, keyPEM, 0o600); err != nil {
		return nil, nil, fmt.Errorf("creating CA: %w", err)
	}
	if err := writeNew(certPath, CertPEM(der), 0o644); err != nil {
		return nil, nil, fmt.Errorf("creating CA: %w", err)
	}
	c.log.Info("created CA", "subject", cert.Subject.CommonName, "not_after", cert.NotAfter, "path", certPath)
	return cert, key, nil
}

// loadCA reads a CA certificate and its key and checks that they belong
// together and can issue certificates at now (the zero time: whatever
// their age, for a retiring CA).
func loadCA(certPath, keyPath string, now time.Time) (*x509.Certificate, crypto.Signer, error) {
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, nil, fmt.Errorf("loading CA certificate: %w", err)
	}
	cert, err := ParseCertPEM(certPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("loading CA certificate %s: %w", certPath, err)
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, nil, fmt.Errorf("loading CA key: %w", err)
	}
	key, err := parseKeyPEM(keyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("loading CA key %s: %w", keyPath, err)
	}
	if !cert.IsCA || !cert.BasicConstraintsValid {
		return nil, nil, fmt.Errorf("loading CA certificate %s: it is not a CA certificate", certPath)
	}
	if cert.KeyUsage != 0 && cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, nil, fmt.Errorf("loading CA certificate %s: its key usage does not allow signing certificates", certPath)
	}
	if pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(cert.PublicKey) {
		return nil, nil, fmt.Errorf("loading CA: key %s does not belong to certificate %s", keyPath, certPath)
	}
	if !now.IsZero() && now.After(cert.NotAfter) {
		return nil, nil, fmt.Errorf("loading CA certificate %s: it expired at %s", certPath, cert.NotAfter.Format(time.RFC3339))
	}
	return cert, key, nil
}

// loadOrCreateSigningKey loads the catalog signing key, creating it on
// first start.
func (c *CA) loadOrCreateSigningKey() (ed25519.PrivateKey, error) {
	path := filepath.Join(c.dir, signingKeyFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		_, key, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("creating signing key: %w", err)
		}
		keyPEM, err := marshalKeyPEM(key)
		if err != nil {
			return nil, fmt.Errorf("creating signing key: %w", err)
		}
		if err := writeNew(path, keyPEM, 0o600); err != nil {
			return nil, fmt.Errorf("creating signing key: %w", err)
		}
		c.log.Info("created catalog signing key", "path", path)
		return key, nil
	}
	if err != nil {
		return nil, fmt.Errorf("loading signing key: %w", err)
	}
	key, err := parseKeyPEM(data)
	if err != nil {
		return nil, fmt.Errorf("loading signing key %s: %w", path, err)
	}
	ed, ok := key.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("loading signing key %s: a %T, want ed25519", path, key)
	}
	return ed, nil
}

// Pool returns a pool holding the trusted CA certificates (the one that
// issues and, during a rotation, the one retiring), for a tls.Config's
// ClientCAs (the server) or RootCAs (agents and the CLI). Each call
// returns a new pool, so callers may add to it.
func (c *CA) Pool() *x509.CertPool { return c.auth.Load().pool.Clone() }

// ClientPool returns the pool of trusted CAs itself, for a server's
// tls.Config ClientCAs: callers must not change it. Rotate and Retire
// replace it with a new pool, so a caller holding one can tell, by
// comparing pointers, that the CAs changed.
func (c *CA) ClientPool() *x509.CertPool { return c.auth.Load().pool }

// CACertDER returns the certificate of the CA that issues now,
// DER-encoded. What nodes and admins must trust is BundleDER.
func (c *CA) CACertDER() []byte { return bytes.Clone(c.auth.Load().cur.Raw) }

// SigningKey returns the ed25519 key the server signs catalogs with.
func (c *CA) SigningKey() ed25519.PrivateKey { return c.signKey }

// SigningPublicKey returns the public half of SigningKey, which agents pin
// at enrollment and verify every catalog with.
func (c *CA) SigningPublicKey() ed25519.PublicKey {
	return c.signKey.Public().(ed25519.PublicKey)
}

// now is the CA's clock.
func (c *CA) now() time.Time { return c.opts.Now() }

// marshalKeyPEM encodes a private key as PKCS #8 PEM.
func marshalKeyPEM(key crypto.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encoding private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// parseKeyPEM decodes the first private key in data: PKCS #8, or the
// older SEC 1 ("EC PRIVATE KEY") and PKCS #1 ("RSA PRIVATE KEY") forms a
// given CA key may come in.
func parseKeyPEM(data []byte) (crypto.Signer, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, errors.New("no private key PEM block")
		}
		var key any
		var err error
		switch block.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("parsing %s: %w", block.Type, err)
		}
		switch k := key.(type) {
		case *ecdsa.PrivateKey, ed25519.PrivateKey, *rsa.PrivateKey:
			return k.(crypto.Signer), nil
		}
		return nil, fmt.Errorf("unsupported private key type %T", key)
	}
}

// writeNew writes data to path with mode perm, failing when path exists:
// the CA and signing keys are never overwritten. It writes a temporary
// file and links it into place, so path is either whole or absent.
func writeNew(path string, data []byte, perm os.FileMode) error {
	tmp, err := writeTemp(path, data, perm)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return syncDir(filepath.Dir(path))
}

// writeReplace writes data to path with mode perm, replacing it whole.
func writeReplace(path string, data []byte, perm os.FileMode) error {
	tmp, err := writeTemp(path, data, perm)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return syncDir(filepath.Dir(path))
}

// writeTemp writes data to a new file beside path, synced and with mode
// perm whatever the umask, and returns its name.
func writeTemp(path string, data []byte, perm os.FileMode) (string, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return "", fmt.Errorf("writing %s: %w", path, err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("writing %s: %w", path, err)
	}
	return f.Name(), nil
}

// syncDir makes a rename or link in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	return nil
}
