package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/herdcm/herd/api/herdv1"
	"github.com/herdcm/herd/catalogs"
)

// The files of a node's identity, in its certificate directory.
const (
	keyFile     = "key.pem"     // the node's private key, 0600
	certFile    = "cert.pem"    // its certificate; present only once enrolled
	caFile      = "ca.pem"      // the CA bundle: the only roots the agent trusts
	signingFile = "signing.pub" // the server's ed25519 catalog signing key, pinned
)

// EnrollOptions configure enrollment.
//
// Trust on first contact: an agent that is given neither CAFile nor
// CAFingerprint cannot verify the server the first time it calls it, so
// that one Enroll call is made over TLS without verification (trust on
// first use, like ssh's first connection). The CA bundle the server returns
// must then verify the certificate the server presented in that same
// handshake, and from then on it is the only trust root: every later call
// verifies the server with it. The risk is confined to that first call: a
// machine in the middle of it would see the join token and could hand the
// node its own CA. Where that matters, pin the CA: CAFile (a bundle
// distributed with the image), or CAFingerprint (the sha256 of the CA
// certificate, as `herd ca fingerprint` prints it), which is checked inside
// the handshake, before the join token is sent.
type EnrollOptions struct {
	// Server is host:port of the server, or of several separated by
	// commas (ParseServers), tried in order as the daemon does.
	Server string
	// ServerName is the name to verify in every server's certificate;
	// default the host part of each address.
	ServerName string
	Name       string // the node name to ask for (the certificate's CN)
	// JoinToken lets the server issue the certificate at once; without
	// one the request waits for an operator (`herd ca sign NAME`).
	JoinToken string
	// Dir receives key.pem (0600), cert.pem, ca.pem and signing.pub.
	Dir string
	// CAFile is a PEM bundle to verify the server with from the first
	// call on.
	CAFile string
	// CAFingerprint is "sha256:<hex>" (or the hex alone, colons allowed)
	// of the CA certificate's DER: the server must present that CA in its
	// TLS chain.
	CAFingerprint string
	Log           *slog.Logger
	// Waiting, when set, hears each time the server says the request is
	// still pending: the key's fingerprint the operator compares, how
	// long until the next ask, and how long the node has waited so far.
	// herd agent shows it as a status line on a terminal.
	Waiting func(fingerprint string, next, waited time.Duration)
}

// Identity is an enrolled node's: its name (its certificate's CN, the only
// source of the node's name), its key pair, the CA bundle it trusts and
// the server key it verifies catalogs with.
type Identity struct {
	Node        string
	Certificate tls.Certificate
	// CAs is the CA bundle as loaded; a renewal during a CA rotation
	// may replace it (roots returns the one in force).
	CAs        *x509.CertPool
	SigningKey ed25519.PublicKey
	NotBefore  time.Time
	NotAfter   time.Time

	// current is the certificate connections present, replaced when the
	// agent renews it (renew.go), so that the next connection uses it.
	current atomic.Pointer[tls.Certificate]
	// trust is the CA bundle connections verify the server with,
	// replaced when a renewal brings a new one (a CA rotation), so that
	// the next handshake uses it.
	trust atomic.Pointer[x509.CertPool]
}

// roots returns the CA bundle in force: the one a renewal brought, or
// the one loaded.
func (id *Identity) roots() *x509.CertPool {
	if p := id.trust.Load(); p != nil {
		return p
	}
	return id.CAs
}

// clientCertificate is tls.Config.GetClientCertificate: the current
// certificate, renewed or not.
func (id *Identity) clientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	if c := id.current.Load(); c != nil {
		return c, nil
	}
	return &id.Certificate, nil
}

// ErrNotEnrolled is returned by LoadIdentity when the directory holds no
// certificate yet.
var ErrNotEnrolled = errors.New("this node is not enrolled (run herd agent enroll)")

// LoadIdentity reads the identity Enroll wrote to dir.
func LoadIdentity(dir string) (*Identity, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, certFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: no %s", ErrNotEnrolled, filepath.Join(dir, certFile))
	}
	if err != nil {
		return nil, fmt.Errorf("loading identity: %w", err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, keyFile))
	if err != nil {
		return nil, fmt.Errorf("loading identity: %w", err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("loading identity from %s: %w", dir, err)
	}
	leaf := pair.Leaf
	caPEM, err := os.ReadFile(filepath.Join(dir, caFile))
	if err != nil {
		return nil, fmt.Errorf("loading identity: %w", err)
	}
	cas := x509.NewCertPool()
	if !cas.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("loading identity: no certificate in %s", filepath.Join(dir, caFile))
	}
	sigPEM, err := os.ReadFile(filepath.Join(dir, signingFile))
	if err != nil {
		return nil, fmt.Errorf("loading identity: %w", err)
	}
	key, err := parseSigningKey(sigPEM)
	if err != nil {
		return nil, fmt.Errorf("loading identity: %s: %w", filepath.Join(dir, signingFile), err)
	}
	if err := catalogs.ValidNodeName(leaf.Subject.CommonName); err != nil {
		return nil, fmt.Errorf("loading identity: the certificate's name: %w", err)
	}
	return &Identity{Node: leaf.Subject.CommonName, Certificate: pair, CAs: cas, SigningKey: key, NotBefore: leaf.NotBefore, NotAfter: leaf.NotAfter}, nil
}

func parseSigningKey(b []byte) (ed25519.PublicKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PUBLIC KEY" {
		return nil, errors.New("no PUBLIC KEY block")
	}
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, err
	}
	ek, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("the signing key is %T, want ed25519", k)
	}
	return ek, nil
}

// Enroll makes this node known to the server, once: when Dir already holds
// a certificate it only loads it. Otherwise it creates (or reuses, after an
// interrupted enrollment) an ECDSA P-256 key, asks for a certificate with
// a CSR naming the node, and writes the certificate, the CA bundle and the
// server's signing key. A PENDING answer is asked again, after the
// server's retry_after with jitter, until an operator signs or ctx ends.
func Enroll(ctx context.Context, o EnrollOptions) (*Identity, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Dir == "" {
		return nil, errors.New("enrolling: no certificate directory")
	}
	if id, err := LoadIdentity(o.Dir); err == nil {
		if o.Name != "" && o.Name != id.Node {
			return nil, fmt.Errorf("enrolling as %s: already enrolled as %s (%s)", o.Name, id.Node, o.Dir)
		}
		return id, nil
	} else if !errors.Is(err, ErrNotEnrolled) {
		return nil, err
	}
	if err := catalogs.ValidNodeName(o.Name); err != nil {
		return nil, fmt.Errorf("enrolling: %w", err)
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("enrolling: %w", err)
	}
	key, err := loadOrCreateKey(filepath.Join(o.Dir, keyFile))
	if err != nil {
		return nil, fmt.Errorf("enrolling: %w", err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: o.Name}}, key)
	if err != nil {
		return nil, fmt.Errorf("enrolling: creating the request: %w", err)
	}

	tc, err := newBootstrapTLS(o)
	if err != nil {
		return nil, err
	}
	if o.CAFile == "" && o.CAFingerprint == "" {
		o.Log.Warn("no CA pinned (--ca-file or --ca-fingerprint): trusting the server on first use for enrollment; every later call verifies it with the CA it returns", "server", o.Server)
	}
	conn, err := dialServers(o.Server, o.ServerName, tc.config, o.Log)
	if err != nil {
		return nil, fmt.Errorf("enrolling with %s: %w", o.Server, err)
	}
	defer conn.Close()
	client := herdv1.NewEnrollClient(conn)
	seal, err := LoadSealKey(o.Dir)
	if err != nil {
		return nil, fmt.Errorf("enrolling: %w", err)
	}
	req := &herdv1.EnrollRequest{Name: o.Name, CsrDer: csr, JoinToken: o.JoinToken, SealPublicKey: seal.PublicKey().Bytes()}

	sched := Schedule{MinBackoff: time.Second, MaxBackoff: time.Minute}
	failures, announced, squatted := 0, false, false
	var pendingSince time.Time
	for {
		var trailer metadata.MD
		callCtx, cancel := context.WithTimeout(ctx, rpcTimeout)
		resp, err := client.Enroll(callCtx, req, grpc.Trailer(&trailer))
		cancel()
		var wait time.Duration
		switch {
		case err != nil && ctx.Err() != nil:
			// The caller gave up during the call: say that, not the
			// call's Canceled status.
			return nil, fmt.Errorf("enrolling %s: %w", o.Name, ctx.Err())
		case err != nil:
			if verr := tc.verifyErr(); verr != nil {
				return nil, fmt.Errorf("enrolling with %s: %w", o.Server, verr)
			}
			if s, _ := status.FromError(err); s.Code() == codes.AlreadyExists && strings.Contains(s.Message(), pendingOtherMark) {
				// Someone asked first for this name with another key. The
				// operator rejects that request (herd ca reject) and this
				// node's is taken on a later try: keep asking.
				if !squatted {
					o.Log.Warn("enrollment blocked: another key's request for this name is pending; an operator who sees it is not this node's runs: herd ca reject "+o.Name,
						"node", o.Name, "fingerprint", keyFingerprint(key), "server_says", s.Message())
					squatted = true
				}
				failures++
				wait = sched.Backoff(failures, retryAfter(trailer), mrand.Float64())
				break
			}
			if c := status.Code(err); c != codes.Unavailable && c != codes.ResourceExhausted && c != codes.DeadlineExceeded {
				return nil, rpcError("enrolling with "+o.Server, err, trailer)
			}
			// The server may not be up yet (a fleet booting together):
			// keep asking, spread out.
			failures++
			wait = sched.Backoff(failures, retryAfter(trailer), mrand.Float64())
			wait = wait.Round(time.Millisecond)
			o.Log.Warn(serverTrouble(o.Server, rpcError("enrolling", err, trailer))+"; asking again in "+wait.String(),
				"server", o.Server, "retry_in", wait)
		case resp.Status == herdv1.EnrollResponse_ISSUED:
			return finishEnroll(o, tc, key, resp)
		case resp.Status == herdv1.EnrollResponse_PENDING:
			failures = 0
			wait = time.Duration(resp.RetryAfterMs) * time.Millisecond
			if wait <= 0 {
				wait = 30 * time.Second
			}
			every := wait // how often this node asks, before the jitter
			wait += scale(wait/4, mrand.Float64())
			fp := keyFingerprint(key)
			if !announced {
				o.Log.Info("enrollment pending: waiting for an operator to compare this key's fingerprint and run: herd ca sign "+o.Name+" --fingerprint "+fp,
					"node", o.Name, "server", o.Server, "fingerprint", fp, "polls_every", every)
				announced = true
				pendingSince = time.Now()
			} else {
				o.Log.Debug("enrollment still pending", "node", o.Name, "retry_in", wait)
			}
			if o.Waiting != nil {
				o.Waiting(fp, wait, time.Since(pendingSince))
			}
		default:
			return nil, fmt.Errorf("enrolling with %s: unexpected answer %v", o.Server, resp.Status)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("enrolling %s: %w", o.Name, ctx.Err())
		case <-t.C:
		}
	}
}

// pendingOtherMark is what the server says when another key's request
// holds the name.
const pendingOtherMark = "a request with another key is pending"

// keyFingerprint names the node's key as `herd ca list` shows it: "sha256:"
// and the hex sha256 of its DER SubjectPublicKeyInfo.
func keyFingerprint(key *ecdsa.PrivateKey) string {
	der, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return "unknown"
	}
	sum := sha256.Sum256(der)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// finishEnroll checks an issued certificate and writes the identity. The
// certificate must carry this node's key and name, chain to the returned
// CA for client authentication, and that CA must verify the server the
// agent talked to; the certificate file is written last, so that its
// presence means the identity is complete.
func finishEnroll(o EnrollOptions, tc *bootstrapTLS, key *ecdsa.PrivateKey, resp *herdv1.EnrollResponse) (*Identity, error) {
	fail := func(format string, args ...any) (*Identity, error) {
		return nil, fmt.Errorf("enrolling with %s: refusing the answer: "+format, append([]any{o.Server}, args...)...)
	}
	cas, err := x509.ParseCertificates(resp.CaCertificateDer)
	if err != nil || len(cas) == 0 {
		return fail("no CA certificate (%v)", err)
	}
	pool := x509.NewCertPool()
	for _, c := range cas {
		pool.AddCert(c)
	}
	if err := tc.check(pool, cas); err != nil {
		return fail("%v", err)
	}
	cert, err := x509.ParseCertificate(resp.CertificateDer)
	if err != nil {
		return fail("the certificate: %v", err)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return fail("the certificate is not for this node's key")
	}
	if cert.Subject.CommonName != o.Name {
		return fail("the certificate names %q, not %q", cert.Subject.CommonName, o.Name)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return fail("the certificate does not verify with the returned CA: %v", err)
	}
	if len(resp.SigningPublicKey) != ed25519.PublicKeySize {
		return fail("the signing key is %d bytes, want an ed25519 key", len(resp.SigningPublicKey))
	}
	spki, err := x509.MarshalPKIXPublicKey(ed25519.PublicKey(resp.SigningPublicKey))
	if err != nil {
		return fail("the signing key: %v", err)
	}
	var caPEM []byte
	for _, c := range cas {
		caPEM = append(caPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	for _, f := range []struct {
		name string
		data []byte
	}{
		{caFile, caPEM},
		{signingFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: spki})},
		{certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})},
	} {
		if err := writeFileAtomic(filepath.Join(o.Dir, f.name), f.data, 0o644); err != nil {
			return nil, fmt.Errorf("enrolling: %w", err)
		}
	}
	o.Log.Info("enrolled", "node", o.Name, "not_after", cert.NotAfter.UTC().Format(time.RFC3339))
	return LoadIdentity(o.Dir)
}

// loadOrCreateKey reads the node's key, or creates it: a request left
// pending is asked again with the same key, as the server expects.
func loadOrCreateKey(path string) (*ecdsa.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		blk, _ := pem.Decode(b)
		if blk == nil {
			return nil, fmt.Errorf("%s: no PEM block", path)
		}
		k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		ek, ok := k.(*ecdsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("%s: the key is %T, want ECDSA", path, k)
		}
		return ek, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("creating the node key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("creating the node key: %w", err)
	}
	if err := writeFileAtomic(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return nil, fmt.Errorf("creating the node key: %w", err)
	}
	return k, nil
}

// writeFileAtomic writes data to path through a temporary file in the same
// directory, fsynced and renamed, so that a crash leaves the old file or
// the new one, never half of one.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	err = tmp.Chmod(mode)
	if err == nil {
		_, err = tmp.Write(data)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// bootstrapTLS is the TLS configuration of the enrollment call, and what
// its handshake saw: the server's chain, for the returned CA to verify.
type bootstrapTLS struct {
	roots       *x509.CertPool // CAFile
	fingerprint []byte         // CAFingerprint

	mu    sync.Mutex
	chain []*x509.Certificate
	name  string // the name chain was verified for: its address's host
	err   error  // a pinned CA that the server's chain failed
}

// config is the TLS configuration of a handshake with the server whose
// certificate must carry name (dialServers).
func (b *bootstrapTLS) config(name string) *tls.Config {
	// Verification is done by b.verify in every mode, so that a failure
	// is known as one (and not retried as an unavailable server).
	return &tls.Config{MinVersion: tls.VersionTLS13, ServerName: name, InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error { return b.verify(cs, name) }}
}

func newBootstrapTLS(o EnrollOptions) (*bootstrapTLS, error) {
	b := &bootstrapTLS{}
	switch {
	case o.CAFile != "":
		pemBytes, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("enrolling: reading the CA bundle: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemBytes) {
			return nil, fmt.Errorf("enrolling: no certificate in %s", o.CAFile)
		}
		b.roots = pool
	case o.CAFingerprint != "":
		fp, err := parseFingerprint(o.CAFingerprint)
		if err != nil {
			return nil, fmt.Errorf("enrolling: %w", err)
		}
		b.fingerprint = fp
	}
	return b, nil
}

func parseFingerprint(s string) ([]byte, error) {
	h := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(strings.TrimSpace(s), "sha256:"), ":", ""))
	fp, err := hex.DecodeString(h)
	if err != nil || len(fp) != sha256.Size {
		return nil, fmt.Errorf("bad CA fingerprint %q: want sha256:<64 hex digits>", s)
	}
	return fp, nil
}

// verify runs in every handshake of the enrollment connection: it records
// the server's chain and verifies it against the pinned CA bundle, or
// against the presented CA with the pinned fingerprint. Without a pin
// (trust on first use) the chain is checked after the call, against the
// CA the server returns.
func (b *bootstrapTLS) verify(cs tls.ConnectionState, name string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.chain, b.name = cs.PeerCertificates, name
	if len(cs.PeerCertificates) == 0 {
		b.err = errors.New("the server presented no certificate")
		return b.err
	}
	if b.roots != nil {
		if err := verifyServer(cs.PeerCertificates, b.roots, name); err != nil {
			b.err = fmt.Errorf("the server's certificate does not verify with the CA file: %w", err)
			return b.err
		}
		return nil
	}
	if b.fingerprint == nil {
		return nil
	}
	for _, c := range cs.PeerCertificates {
		sum := sha256.Sum256(c.Raw)
		if string(sum[:]) != string(b.fingerprint) {
			continue
		}
		roots := x509.NewCertPool()
		roots.AddCert(c)
		if err := verifyServer(cs.PeerCertificates, roots, name); err != nil {
			b.err = fmt.Errorf("the server's certificate does not verify with the pinned CA: %w", err)
			return b.err
		}
		return nil
	}
	b.err = fmt.Errorf("the server did not present the CA with fingerprint sha256:%x in its chain (pin it with --ca-file instead, or have the server send its CA certificate)", b.fingerprint)
	return b.err
}

func (b *bootstrapTLS) verifyErr() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

// check verifies that the CA bundle the server returned is the one that
// vouches for the server this call talked to, and, when pinned, contains
// the pinned CA.
func (b *bootstrapTLS) check(pool *x509.CertPool, cas []*x509.Certificate) error {
	b.mu.Lock()
	chain, name := b.chain, b.name
	b.mu.Unlock()
	if len(chain) == 0 {
		return errors.New("no server certificate was seen")
	}
	if err := verifyServer(chain, pool, name); err != nil {
		return fmt.Errorf("the returned CA does not verify the server's certificate: %w", err)
	}
	if b.fingerprint != nil {
		for _, c := range cas {
			if sum := sha256.Sum256(c.Raw); string(sum[:]) == string(b.fingerprint) {
				return nil
			}
		}
		return fmt.Errorf("the returned CA bundle lacks the pinned CA sha256:%x", b.fingerprint)
	}
	return nil
}

func verifyServer(chain []*x509.Certificate, roots *x509.CertPool, name string) error {
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err := chain[0].Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: inter, DNSName: name,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	return err
}
