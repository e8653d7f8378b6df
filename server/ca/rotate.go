package ca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// ErrRotation means the CA cannot be rotated now: a rotation is still
// overlapping, or the CA is given (Options.CertFile) and Herd does not
// write it. The server maps it to FailedPrecondition.
var ErrRotation = errors.New("cannot rotate the CA")

// The files of a rotation, beside ca.crt and ca.key in the CA directory.
const (
	// oldCertFile and oldKeyFile are the retiring CA: trusted, issuing
	// only the server's certificate, until no valid certificate it
	// issued remains.
	oldCertFile = "ca-old.crt"
	oldKeyFile  = "ca-old.key"
	// nextCertFile and nextKeyFile are the new CA while Rotate moves it
	// into place; Open finishes a rotation that a crash cut short.
	nextCertFile = "ca-next.crt"
	nextKeyFile  = "ca-next.key"
	// retiredDir keeps the certificates of retired CAs (their keys are
	// deleted), named by fingerprint, for reading old records.
	retiredDir = "retired"
)

// authorities are the CA's certificates and keys at one moment.
type authorities struct {
	cur    *x509.Certificate // issues every client certificate
	curKey crypto.Signer
	// old is the retiring CA after a rotation, nil when none: still
	// trusted, and the issuer of the server's certificate, since agents
	// that have not renewed trust only it.
	old     *x509.Certificate
	oldKey  crypto.Signer
	retired []*x509.Certificate
	pool    *x509.CertPool // cur and old: whose client certificates verify
}

// withPool sets a's pool from cur and old and returns a.
func (a *authorities) withPool() *authorities {
	a.pool = x509.NewCertPool()
	a.pool.AddCert(a.cur)
	if a.old != nil {
		a.pool.AddCert(a.old)
	}
	return a
}

// serverIssuer is the CA that issues the server's certificate: the
// retiring one while there is one, so that every agent, renewed or not,
// verifies the server.
func (a *authorities) serverIssuer() (*x509.Certificate, crypto.Signer) {
	if a.old != nil {
		return a.old, a.oldKey
	}
	return a.cur, a.curKey
}

// trusted returns the CAs agents and admins trust, the server's issuer
// first: a ca.crt holding the bundle then starts with the CA whose
// fingerprint agents can pin (`herd ca fingerprint` reads the first), the
// one the server presents in its chain.
func (a *authorities) trusted() []*x509.Certificate {
	if a.old != nil {
		return []*x509.Certificate{a.old, a.cur}
	}
	return []*x509.Certificate{a.cur}
}

// all returns every CA certificate the CA knows, retired ones included.
func (a *authorities) all() []*x509.Certificate {
	return append(a.trusted(), a.retired...)
}

// BundleDER returns the CA certificates that nodes and admins must trust,
// DER-encoded one after another (x509.ParseCertificates reads them): the
// CA that issues and, during a rotation's overlap, the one retiring
// (first, as the issuer of the server's certificate).
// Enroll and Renew answers carry it, so that agents trust the new CA
// before the server's certificate moves to it.
func (c *CA) BundleDER() []byte {
	var b []byte
	for _, ca := range c.auth.Load().trusted() {
		b = append(b, ca.Raw...)
	}
	return b
}

// BundlePEM encodes a bundle of DER certificates (as BundleDER gives it)
// as PEM, one block per certificate: a ca.crt file.
func BundlePEM(der []byte) ([]byte, error) {
	certs, err := x509.ParseCertificates(der)
	if err != nil {
		return nil, fmt.Errorf("parsing CA bundle: %w", err)
	}
	if len(certs) == 0 {
		return nil, errors.New("parsing CA bundle: no certificate")
	}
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out, nil
}

// AuthorityState is where a CA is in its life.
type AuthorityState string

// The states of a CA.
const (
	// AuthorityCurrent issues every node and admin certificate.
	AuthorityCurrent AuthorityState = "current"
	// AuthorityRetiring is the CA before a rotation: still trusted, and
	// the issuer of the server's certificate, until no valid certificate
	// it issued remains.
	AuthorityRetiring AuthorityState = "retiring"
	// AuthorityRetired is trusted no more; its key is deleted and its
	// certificate kept for reading old records.
	AuthorityRetired AuthorityState = "retired"
)

// Authority describes one of the CA's certificates.
type Authority struct {
	Subject     string
	Fingerprint string // "sha256:<hex>" of the certificate's DER
	State       AuthorityState
	NotBefore   time.Time
	NotAfter    time.Time
	// Dependents counts the unexpired, unrevoked certificates it issued
	// (for the current and the retiring CA), and LastDependent is when
	// the last of them expires.
	Dependents    int
	LastDependent time.Time
	DER           []byte
}

// CertFingerprint returns "sha256:<hex>" of a certificate's DER, the form
// `herd ca fingerprint` prints and agents' --ca-fingerprint takes.
func CertFingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Authorities lists the CA's certificates: the current one first, then
// the retiring one, then the retired ones, each with what depends on it.
func (c *CA) Authorities(ctx context.Context) ([]Authority, error) {
	a := c.auth.Load()
	certs, err := c.st.Certs(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing CAs: %w", err)
	}
	describe := func(ca *x509.Certificate, state AuthorityState) Authority {
		out := Authority{
			Subject: ca.Subject.CommonName, Fingerprint: CertFingerprint(ca), State: state,
			NotBefore: ca.NotBefore, NotAfter: ca.NotAfter, DER: bytes.Clone(ca.Raw),
		}
		if state != AuthorityRetired {
			out.Dependents, out.LastDependent = c.dependents(certs, ca)
		}
		return out
	}
	out := []Authority{describe(a.cur, AuthorityCurrent)}
	if a.old != nil {
		out = append(out, describe(a.old, AuthorityRetiring))
	}
	for _, r := range a.retired {
		out = append(out, describe(r, AuthorityRetired))
	}
	return out, nil
}

// dependents counts the certificates among certs that ca issued and that
// are neither expired nor revoked, and says when the last one expires.
// Superseded certificates count: they stay valid until they expire.
func (c *CA) dependents(certs []Cert, ca *x509.Certificate) (n int, last time.Time) {
	now := c.now()
	for _, rec := range certs {
		if !rec.RevokedAt.IsZero() || !now.Before(rec.NotAfter) {
			continue
		}
		x, err := x509.ParseCertificate(rec.DER)
		if err != nil {
			// A record that cannot be read is counted: retiring a CA
			// that might still be needed would cut a node off.
			n++
			last = maxTime(last, rec.NotAfter)
			continue
		}
		// CAs have distinct random subjects and key ids; no signature
		// check is needed on records only the CA wrote.
		if bytes.Equal(x.RawIssuer, ca.RawSubject) && bytes.Equal(x.AuthorityKeyId, ca.SubjectKeyId) {
			n++
			last = maxTime(last, rec.NotAfter)
		}
	}
	return n, last
}

// Rotate makes a new CA the one that issues: every certificate from now
// on (enrollments, renewals, admins) comes from it. The previous CA
// becomes the retiring one: still trusted, and the issuer of the server's
// certificate, until Retire finds no valid certificate that depends on it.
// Agents receive the bundle of both with their next renewal. It fails
// with ErrRotation while a previous rotation still overlaps, and for a
// given CA (Options.CertFile).
func (c *CA) Rotate(ctx context.Context) (cur, retiring Authority, err error) {
	if c.given {
		return Authority{}, Authority{}, fmt.Errorf("%w: the CA is given (--ca-cert, --ca-key) and Herd does not write it; replace those files instead", ErrRotation)
	}
	c.rotateMu.Lock()
	defer c.rotateMu.Unlock()
	a := c.auth.Load()
	if a.old != nil {
		certs, err := c.st.Certs(ctx)
		if err != nil {
			return Authority{}, Authority{}, fmt.Errorf("rotating the CA: %w", err)
		}
		n, last := c.dependents(certs, a.old)
		return Authority{}, Authority{}, fmt.Errorf("%w: the previous rotation still overlaps: CA %q retires once no valid certificate depends on it (%d do, the last expiring %s)",
			ErrRotation, a.old.Subject.CommonName, n, last.UTC().Format(time.RFC3339))
	}
	if err := c.clearNext(); err != nil {
		return Authority{}, Authority{}, fmt.Errorf("rotating the CA: %w", err)
	}
	next, nextKey, err := c.createCA(filepath.Join(c.dir, nextCertFile), filepath.Join(c.dir, nextKeyFile))
	if err != nil {
		return Authority{}, Authority{}, fmt.Errorf("rotating the CA: %w", err)
	}
	if err := c.finishRotation(); err != nil {
		return Authority{}, Authority{}, fmt.Errorf("rotating the CA: %w", err)
	}
	b := (&authorities{cur: next, curKey: nextKey, old: a.cur, oldKey: a.curKey, retired: a.retired}).withPool()
	c.auth.Store(b)
	// The revocation list is signed by the CA that issues; Open reads one
	// signed by any CA it knows.
	if !c.noCRL {
		c.revokeMu.Lock()
		err := c.writeCRL(*c.revoked.Load())
		c.revokeMu.Unlock()
		if err != nil {
			return Authority{}, Authority{}, fmt.Errorf("rotating the CA: %w", err)
		}
	}
	c.log.Info("rotated the CA: the new CA issues every certificate; the previous one is trusted until no valid certificate depends on it",
		"new", next.Subject.CommonName, "retiring", a.cur.Subject.CommonName)
	list, err := c.Authorities(ctx)
	if err != nil {
		return Authority{}, Authority{}, err
	}
	return list[0], list[1], nil
}

// clearNext removes what a Rotate that failed before its new CA was whole
// left behind: a key without a certificate. The caller holds rotateMu.
func (c *CA) clearNext() error {
	_, certErr := os.Stat(filepath.Join(c.dir, nextCertFile))
	if !errors.Is(certErr, os.ErrNotExist) {
		return nil // finishRotation's business
	}
	if err := os.Remove(filepath.Join(c.dir, nextKeyFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// finishRotation moves a new CA written by Rotate into place: the current
// CA's files are linked to ca-old.*, then ca-next.key and ca-next.crt are
// renamed over ca.key and ca.crt, the key first. Each step can be redone,
// so Open calls it to finish a rotation that a crash cut short:
//
//   - ca-next.key alone: the new CA was never whole; it is removed.
//   - both ca-next files: the current CA is linked to ca-old.* (unless
//     it already is) and the new one renamed into place.
//   - ca-next.crt alone: the key was renamed; the certificate follows.
func (c *CA) finishRotation() error {
	path := func(f string) string { return filepath.Join(c.dir, f) }
	exists := func(f string) (bool, error) {
		_, err := os.Lstat(path(f))
		if errors.Is(err, os.ErrNotExist) {
			return false, nil
		}
		return err == nil, err
	}
	nextCert, err := exists(nextCertFile)
	if err != nil {
		return err
	}
	nextKey, err := exists(nextKeyFile)
	if err != nil {
		return err
	}
	switch {
	case !nextCert && !nextKey:
		return nil
	case !nextCert:
		return c.clearNext()
	case nextKey:
		for _, f := range [][2]string{{caKeyFile, oldKeyFile}, {caCertFile, oldCertFile}} {
			if err := os.Link(path(f[0]), path(f[1])); err != nil && !errors.Is(err, os.ErrExist) {
				return fmt.Errorf("keeping the previous CA: %w", err)
			}
		}
		if err := syncDir(c.dir); err != nil {
			return err
		}
		// The previous CA must be whole under its new name before the
		// new one replaces it.
		if _, _, err := loadCA(path(oldCertFile), path(oldKeyFile), time.Time{}); err != nil {
			return fmt.Errorf("keeping the previous CA: %w", err)
		}
		if err := os.Rename(path(nextKeyFile), path(caKeyFile)); err != nil {
			return fmt.Errorf("installing the new CA: %w", err)
		}
	}
	if err := os.Rename(path(nextCertFile), path(caCertFile)); err != nil {
		return fmt.Errorf("installing the new CA: %w", err)
	}
	return syncDir(c.dir)
}

// loadOthers loads the retiring CA (ca-old.*) and the retired ones into
// a. A retiring CA whose key is gone was being retired when a crash came:
// its retirement is finished.
func (c *CA) loadOthers(a *authorities) error {
	certPath, keyPath := filepath.Join(c.dir, oldCertFile), filepath.Join(c.dir, oldKeyFile)
	_, certErr := os.Stat(certPath)
	_, keyErr := os.Stat(keyPath)
	switch {
	case certErr == nil && keyErr == nil:
		old, oldKey, err := loadCA(certPath, keyPath, time.Time{})
		if err != nil {
			return fmt.Errorf("opening CA: the retiring CA: %w", err)
		}
		a.old, a.oldKey = old, oldKey
	case certErr == nil && errors.Is(keyErr, os.ErrNotExist):
		data, err := os.ReadFile(certPath)
		if err != nil {
			return fmt.Errorf("opening CA: %w", err)
		}
		old, err := ParseCertPEM(data)
		if err != nil {
			return fmt.Errorf("opening CA: %s: %w", certPath, err)
		}
		if err := c.keepRetired(old); err != nil {
			return fmt.Errorf("opening CA: %w", err)
		}
	case errors.Is(certErr, os.ErrNotExist) && errors.Is(keyErr, os.ErrNotExist):
	case errors.Is(certErr, os.ErrNotExist):
		return fmt.Errorf("opening CA: %s exists but %s does not; restore the certificate", keyPath, certPath)
	default:
		return fmt.Errorf("opening CA: %w", errors.Join(certErr, keyErr))
	}
	entries, err := os.ReadDir(filepath.Join(c.dir, retiredDir))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("opening CA: %w", err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() || !strings.HasSuffix(e.Name(), ".crt") {
			continue
		}
		p := filepath.Join(c.dir, retiredDir, e.Name())
		data, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("opening CA: %w", err)
		}
		r, err := ParseCertPEM(data)
		if err != nil {
			return fmt.Errorf("opening CA: %s: %w", p, err)
		}
		a.retired = append(a.retired, r)
	}
	slices.SortFunc(a.retired, func(x, y *x509.Certificate) int { return y.NotBefore.Compare(x.NotBefore) })
	return nil
}

// keepRetired moves the retiring CA's certificate into the retired
// directory, after its key was deleted.
func (c *CA) keepRetired(old *x509.Certificate) error {
	dir := filepath.Join(c.dir, retiredDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("keeping the retired CA: %w", err)
	}
	name := strings.TrimPrefix(CertFingerprint(old), "sha256:")[:16] + ".crt"
	if err := writeReplace(filepath.Join(dir, name), CertPEM(old.Raw), 0o644); err != nil {
		return fmt.Errorf("keeping the retired CA: %w", err)
	}
	if err := os.Remove(filepath.Join(c.dir, oldCertFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("keeping the retired CA: %w", err)
	}
	return syncDir(c.dir)
}

// Retire retires the retiring CA once no unexpired, unrevoked certificate
// it issued remains: it is trusted no more, its key is deleted, and its
// certificate is kept under retired/ for reading old records. The
// server's certificate then comes from the current CA. It says whether it
// retired one. Open calls it, and the server does hourly.
func (c *CA) Retire(ctx context.Context) (bool, error) {
	c.rotateMu.Lock()
	defer c.rotateMu.Unlock()
	a := c.auth.Load()
	if a.old == nil {
		return false, nil
	}
	certs, err := c.st.Certs(ctx)
	if err != nil {
		return false, fmt.Errorf("retiring the previous CA: %w", err)
	}
	if n, _ := c.dependents(certs, a.old); n > 0 {
		return false, nil
	}
	// The key goes first: a crash after it leaves a certificate alone,
	// which Open takes for a retirement to finish.
	if err := os.Remove(filepath.Join(c.dir, oldKeyFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return false, fmt.Errorf("retiring the previous CA: deleting its key: %w", err)
	}
	if err := syncDir(c.dir); err != nil {
		return false, fmt.Errorf("retiring the previous CA: %w", err)
	}
	if err := c.keepRetired(a.old); err != nil {
		return false, fmt.Errorf("retiring the previous CA: %w", err)
	}
	retired := append([]*x509.Certificate{a.old}, a.retired...)
	c.auth.Store((&authorities{cur: a.cur, curKey: a.curKey, retired: retired}).withPool())
	c.log.Info("retired the previous CA: no valid certificate depends on it; its key is deleted",
		"retired", a.old.Subject.CommonName, "current", a.cur.Subject.CommonName)
	return true, nil
}

// maxTime returns the later of a and b.
func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
