package ca_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"log/slog"
	"math/big"
	"sync"
	"testing"
	"time"

	"github.com/herdcm/herd/server/ca"
)

// clock is a settable clock for Options.Now. It starts at the real time so
// that TLS handshakes, which read the real clock, accept what the CA issues.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now()} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// testLog routes the CA's log to t.Log.
// A fuzz target's *testing.F may not be used once fuzzing starts, so its
// fixtures log nowhere.
func testLog(t testing.TB) *slog.Logger {
	if _, ok := t.(*testing.F); ok {
		return nil
	}
	return slog.New(slog.NewTextHandler(tWriter{t}, nil))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p))
	return len(p), nil
}

// fixture is a CA in a fresh directory on a MemStore with a settable clock.
type fixture struct {
	ca    *ca.CA
	st    *ca.MemStore
	clock *clock
	dir   string
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{st: ca.NewMemStore(), clock: newClock(), dir: t.TempDir()}
	f.ca = f.open(t)
	return f
}

// open opens (again) the fixture's CA from its directory and store.
func (f *fixture) open(t testing.TB) *ca.CA {
	t.Helper()
	c, err := ca.Open(context.Background(), f.dir, f.st, ca.Options{Now: f.clock.Now, Log: testLog(t)})
	if err != nil {
		t.Fatalf("Open(%s) = %v", f.dir, err)
	}
	return c
}

// token makes a join token.
func (f *fixture) token(t testing.TB, pattern string, singleUse bool) string {
	t.Helper()
	secret, _, err := f.ca.NewToken(context.Background(), pattern, time.Hour, singleUse)
	if err != nil {
		t.Fatalf("NewToken(%q) = %v", pattern, err)
	}
	return secret
}

// enroll enrolls name with a new key and returns the result and the key.
func (f *fixture) enroll(t *testing.T, name, token string) (ca.EnrollResult, crypto.PublicKey, error) {
	t.Helper()
	pub, csr := newCSR(t, name)
	res, err := f.ca.Enroll(context.Background(), name, csr, token, "")
	return res, pub, err
}

// mustIssue enrolls name with a fresh token and returns the certificate.
func (f *fixture) mustIssue(t *testing.T, name string) *x509.Certificate {
	t.Helper()
	res, _, err := f.enroll(t, name, f.token(t, "", true))
	if err != nil || res.State != ca.StateIssued {
		t.Fatalf("Enroll(%q) = %+v, %v; want issued", name, res, err)
	}
	return mustParse(t, res.Cert.DER)
}

// newCSR makes a key and request with NewKeyAndCSR and returns the key's
// public half and the request.
func newCSR(t testing.TB, name string) (crypto.PublicKey, []byte) {
	t.Helper()
	keyPEM, csr, err := ca.NewKeyAndCSR(name)
	if err != nil {
		t.Fatalf("NewKeyAndCSR(%q) = %v", name, err)
	}
	req, err := x509.ParseCertificateRequest(csr)
	if err != nil {
		t.Fatalf("parsing own request: %v (key %d bytes)", err, len(keyPEM))
	}
	return req.PublicKey, csr
}

func mustParse(t *testing.T, der []byte) *x509.Certificate {
	t.Helper()
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("ParseCertificate: %v", err)
	}
	return cert
}

// verify checks cert against the CA's pool for usage at the CA's time.
func (f *fixture) verify(cert *x509.Certificate, usage x509.ExtKeyUsage) error {
	_, err := cert.Verify(x509.VerifyOptions{Roots: f.ca.Pool(), CurrentTime: f.clock.Now(), KeyUsages: []x509.ExtKeyUsage{usage}})
	return err
}

// foreignCert makes a certificate from tmpl issued by a throwaway CA.
func foreignCert(t *testing.T, tmpl *x509.Certificate) *x509.Certificate {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	root := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "other CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	rootDER, err := x509.CreateCertificate(rand.Reader, root, root, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	rootCert := mustParse(t, rootDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if tmpl.SerialNumber == nil {
		tmpl.SerialNumber = big.NewInt(2)
	}
	if tmpl.NotAfter.IsZero() {
		tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, rootCert, key.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	return mustParse(t, der)
}
