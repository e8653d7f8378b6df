package ca

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// issue signs a client certificate for pub named name: the subject is the
// name and the mark of its kind, the only SAN is the name, and it may
// only authenticate a TLS client. Nothing of a request but its public key
// reaches here.
func (c *CA) issue(pub crypto.PublicKey, name string, admin bool) (Cert, error) {
	now := c.now()
	a := c.auth.Load()
	validity, ou := c.opts.NodeValidity, nodeOU
	if admin {
		validity, ou = c.opts.AdminValidity, adminOU
	}
	tmpl := &x509.Certificate{
		SerialNumber:          newSerial(),
		Subject:               pkix.Name{CommonName: name, OrganizationalUnit: []string{ou}},
		DNSNames:              []string{name},
		NotBefore:             now.Add(-backdate),
		NotAfter:              minTime(now.Add(validity), a.cur.NotAfter),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.cur, pub, a.curKey)
	if err != nil {
		return Cert{}, fmt.Errorf("issuing certificate for %q: %w", name, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return Cert{}, fmt.Errorf("issuing certificate for %q: parsing it: %w", name, err)
	}
	return Cert{
		Name:     name,
		Serial:   SerialHex(cert),
		DER:      der,
		Admin:    admin,
		NotAfter: cert.NotAfter,
		Issued:   now,
	}, nil
}

// issueAndStore issues a certificate and records it. The caller holds
// name's lock and has checked that no current certificate exists (an
// expired one is superseded by the new one).
func (c *CA) issueAndStore(ctx context.Context, pub crypto.PublicKey, name string, admin bool, how string) (Cert, error) {
	cert, err := c.issue(pub, name, admin)
	if err != nil {
		return Cert{}, err
	}
	cur, ok, err := c.st.Cert(ctx, name)
	if err != nil {
		return Cert{}, fmt.Errorf("reading certificate of %q: %w", name, err)
	}
	if ok && cur.RevokedAt.IsZero() && cur.SupersededBy == "" && !c.now().Before(cur.NotAfter) {
		cert.Supersedes = cur.Serial
	}
	if err := c.st.PutCert(ctx, cert); err != nil {
		return Cert{}, fmt.Errorf("storing certificate of %q: %w", name, err)
	}
	c.log.Info("issued certificate", "name", name, "serial", cert.Serial, "admin", admin, "not_after", cert.NotAfter, "how", how)
	return cert, nil
}

// Sign issues the certificate a pending request of name asks for: the
// operator's `herd ca sign NAME`. With a fingerprint (as Fingerprint
// gives it; the "sha256:" prefix, colons and case do not matter) it signs
// only a request for that key, and fails with ErrFingerprint otherwise, so
// that an operator who compared the fingerprint the node shows signs that
// node's key and no other. It fails with ErrNotFound when nothing of that
// name is pending (or the request expired) and with ErrExists when name
// has an unrevoked certificate.
func (c *CA) Sign(ctx context.Context, name, fingerprint string) (Cert, error) {
	if err := CheckName(name); err != nil {
		return Cert{}, fmt.Errorf("signing %q: %w", name, err)
	}
	defer c.lock(name)()
	p, ok, err := c.st.Pending(ctx, name)
	if err != nil {
		return Cert{}, fmt.Errorf("signing %q: reading pending request: %w", name, err)
	}
	if !ok || c.pendingExpired(p) {
		return Cert{}, fmt.Errorf("signing %q: no pending request: %w", name, ErrNotFound)
	}
	if _, ok, err := c.unrevoked(ctx, name); err != nil {
		return Cert{}, fmt.Errorf("signing %q: %w", name, err)
	} else if ok {
		return Cert{}, fmt.Errorf("signing %q: %w", name, ErrExists)
	}
	// The request was checked when it came in; check again in case the
	// store was written by something else.
	pub, err := parseCSR(p.CSR)
	if err != nil {
		return Cert{}, fmt.Errorf("signing %q: %w", name, err)
	}
	if fingerprint != "" {
		have, _ := Fingerprint(pub)
		if normalFingerprint(have) != normalFingerprint(fingerprint) {
			return Cert{}, fmt.Errorf("signing %q: %w: the request's key is %s, not %s", name, ErrFingerprint, have, fingerprint)
		}
	}
	cert, err := c.issueAndStore(ctx, pub, name, false, "signed")
	if err != nil {
		return Cert{}, fmt.Errorf("signing %q: %w", name, err)
	}
	if err := c.st.DeletePending(ctx, name); err != nil {
		return Cert{}, fmt.Errorf("signing %q: removing pending request: %w", name, err)
	}
	return cert, nil
}

// Reject drops name's pending request, `herd ca reject NAME`: the name is
// then open to a new request. It fails with ErrNotFound when nothing of
// that name is pending.
func (c *CA) Reject(ctx context.Context, name string) error {
	if err := CheckName(name); err != nil {
		return fmt.Errorf("rejecting %q: %w", name, err)
	}
	defer c.lock(name)()
	p, ok, err := c.st.Pending(ctx, name)
	if err != nil {
		return fmt.Errorf("rejecting %q: reading pending request: %w", name, err)
	}
	if !ok {
		return fmt.Errorf("rejecting %q: no pending request: %w", name, ErrNotFound)
	}
	if err := c.st.DeletePending(ctx, name); err != nil {
		return fmt.Errorf("rejecting %q: %w", name, err)
	}
	c.log.Info("rejected pending request", "name", name, "source", p.Source, "requested", p.Requested)
	return nil
}

// normalFingerprint reduces a fingerprint to its lowercase hex digits.
func normalFingerprint(fp string) string {
	fp = strings.ToLower(strings.TrimSpace(fp))
	fp = strings.TrimPrefix(fp, "sha256:")
	return strings.ReplaceAll(fp, ":", "")
}

// IssueAdmin makes an admin key and certificate named name, for `herd ca
// admin NAME`, and records the certificate so it is listed and can be
// revoked. It returns both as PEM and writes no file. Admin and node names
// share one namespace: it fails with ErrExists when name has an unrevoked
// certificate of either kind.
func (c *CA) IssueAdmin(ctx context.Context, name string) (certPEM, keyPEM []byte, err error) {
	if err := CheckName(name); err != nil {
		return nil, nil, fmt.Errorf("issuing admin certificate %q: %w", name, err)
	}
	defer c.lock(name)()
	if _, ok, err := c.unrevoked(ctx, name); err != nil {
		return nil, nil, fmt.Errorf("issuing admin certificate %q: %w", name, err)
	} else if ok {
		return nil, nil, fmt.Errorf("issuing admin certificate %q: %w", name, ErrExists)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("issuing admin certificate %q: generating key: %w", name, err)
	}
	if keyPEM, err = marshalKeyPEM(key); err != nil {
		return nil, nil, fmt.Errorf("issuing admin certificate %q: %w", name, err)
	}
	cert, err := c.issueAndStore(ctx, key.Public(), name, true, "admin")
	if err != nil {
		return nil, nil, fmt.Errorf("issuing admin certificate %q: %w", name, err)
	}
	return CertPEM(cert.DER), keyPEM, nil
}

// IssueAdminFor issues an admin certificate named name for the key of a
// DER certificate request, for `herd ca admin` going through a running
// server (the key never leaves the operator's machine). It fails with
// ErrExists when name has a current certificate of either kind.
func (c *CA) IssueAdminFor(ctx context.Context, name string, csrDER []byte) (Cert, error) {
	if err := CheckName(name); err != nil {
		return Cert{}, fmt.Errorf("issuing admin certificate %q: %w", name, err)
	}
	pub, err := parseCSR(csrDER)
	if err != nil {
		return Cert{}, fmt.Errorf("issuing admin certificate %q: %w", name, err)
	}
	defer c.lock(name)()
	if _, ok, err := c.unrevoked(ctx, name); err != nil {
		return Cert{}, fmt.Errorf("issuing admin certificate %q: %w", name, err)
	} else if ok {
		return Cert{}, fmt.Errorf("issuing admin certificate %q: %w", name, ErrExists)
	}
	cert, err := c.issueAndStore(ctx, pub, name, true, "admin")
	if err != nil {
		return Cert{}, fmt.Errorf("issuing admin certificate %q: %w", name, err)
	}
	return cert, nil
}

// unrevoked returns name's current certificate, if it has one that is
// neither revoked nor expired: an expired certificate no longer holds its
// name, so that a node offline past its expiry enrolls again (with a join
// token or an operator's signature).
func (c *CA) unrevoked(ctx context.Context, name string) (Cert, bool, error) {
	cert, ok, err := c.st.Cert(ctx, name)
	if err != nil {
		return Cert{}, false, fmt.Errorf("reading certificate of %q: %w", name, err)
	}
	if !ok || !cert.RevokedAt.IsZero() || !c.now().Before(cert.NotAfter) {
		return Cert{}, false, nil
	}
	return cert, true, nil
}

// Renew issues a node a new certificate for the key of its current one,
// over its mTLS identity and with no operator step: the agent calls it at
// two thirds of its certificate's life. caller is what VerifyClient said
// of the calling certificate. The new certificate supersedes the old,
// which stays valid until it expires. A caller whose certificate was
// already renewed gets the renewal again (its answer may have been lost);
// one whose certificate is not its name's current one fails with
// ErrExists. Admin certificates are not renewed this way.
func (c *CA) Renew(ctx context.Context, caller Caller, pub crypto.PublicKey) (Cert, error) {
	if caller.Admin {
		return Cert{}, fmt.Errorf("renewing %q: %w: admin certificates are issued with herd ca admin", caller.Name, ErrInvalid)
	}
	defer c.lock(caller.Name)()
	cur, ok, err := c.st.Cert(ctx, caller.Name)
	if err != nil {
		return Cert{}, fmt.Errorf("renewing %q: reading certificate: %w", caller.Name, err)
	}
	switch {
	case !ok || !cur.RevokedAt.IsZero():
		return Cert{}, fmt.Errorf("renewing %q: %w", caller.Name, ErrRevoked)
	case cur.Supersedes == caller.Serial && certHasKey(cur.DER, pub):
		return cur, nil
	case cur.Serial != caller.Serial:
		return Cert{}, fmt.Errorf("renewing %q: serial %s is not the name's current certificate: %w", caller.Name, caller.Serial, ErrExists)
	case !c.now().Before(cur.NotAfter):
		return Cert{}, fmt.Errorf("renewing %q: %w: the certificate expired; the node enrolls again", caller.Name, ErrInvalid)
	}
	cert, err := c.issue(pub, caller.Name, false)
	if err != nil {
		return Cert{}, fmt.Errorf("renewing %q: %w", caller.Name, err)
	}
	cert.Supersedes = caller.Serial
	if err := c.st.PutCert(ctx, cert); err != nil {
		return Cert{}, fmt.Errorf("renewing %q: storing certificate: %w", caller.Name, err)
	}
	c.log.Info("renewed certificate", "name", caller.Name, "serial", cert.Serial, "replaces", caller.Serial, "not_after", cert.NotAfter)
	return cert, nil
}

// lock takes name's lock and returns its release.
func (c *CA) lock(name string) (unlock func()) {
	// FNV-1a: cheap, and names are short.
	h := uint32(2166136261)
	for i := 0; i < len(name); i++ {
		h ^= uint32(name[i])
		h *= 16777619
	}
	m := &c.names[h%uint32(len(c.names))]
	m.Lock()
	return m.Unlock
}

// serverCert is the server's TLS certificate as ServerCert keeps it.
type serverCert struct {
	tls  tls.Certificate
	leaf *x509.Certificate
	// What it was last found to fit: the issuing CA, the hosts asked
	// for, and the time from which it is due for renewal.
	issuer  *x509.Certificate
	hosts   string
	renewAt time.Time
}

// ServerCert returns the server's TLS certificate, issued for localhost,
// 127.0.0.1, ::1 and hosts (DNS names or IP addresses), with its issuing
// CA after it in the chain (an agent pinning the CA by fingerprint checks
// it inside the handshake). During a rotation the retiring CA issues it,
// since agents that have not renewed trust only that one; once the
// retiring CA retires, the one that issues everything else does. It is
// kept in the CA's directory and in memory, and issued anew when it is
// missing, was issued by another CA, does not name every host, or is in
// the last 30 days (or third) of its validity. A call that finds the
// certificate in memory still good costs no I/O and no signature check,
// so the server calls it from tls.Config.GetCertificate.
func (c *CA) ServerCert(hosts []string) (tls.Certificate, error) {
	issuer, issuerKey := c.auth.Load().serverIssuer()
	key := strings.Join(hosts, "\x00")
	now := c.now()
	c.serverMu.Lock()
	defer c.serverMu.Unlock()
	if sc := c.serverCert; sc != nil && sc.issuer == issuer && sc.hosts == key && now.Before(sc.renewAt) {
		return sc.tls, nil
	}
	dns, ips, err := serverHosts(hosts)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("server certificate: %w", err)
	}
	keep := func(sc *serverCert) tls.Certificate {
		sc.issuer, sc.hosts = issuer, key
		sc.renewAt = sc.leaf.NotAfter.Add(-min(30*24*time.Hour, c.opts.ServerValidity/3))
		sc.tls.Certificate = append(sc.tls.Certificate[:1:1], issuer.Raw)
		c.serverCert = sc
		return sc.tls
	}
	if sc := c.serverCert; sc != nil && c.serverCertFits(sc.leaf, issuer, dns, ips, now) {
		return keep(sc), nil
	}
	certPath, keyPath := filepath.Join(c.dir, serverCertFile), filepath.Join(c.dir, serverKeyFile)
	if sc, err := loadServerCert(certPath, keyPath); err == nil && c.serverCertFits(sc.leaf, issuer, dns, ips, now) {
		return keep(sc), nil
	}

	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("server certificate: generating key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          newSerial(),
		Subject:               pkix.Name{CommonName: dns[0], Organization: []string{"Herd"}},
		DNSNames:              dns,
		IPAddresses:           ips,
		NotBefore:             now.Add(-backdate),
		NotAfter:              minTime(now.Add(c.opts.ServerValidity), issuer.NotAfter),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, leafKey.Public(), issuerKey)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("server certificate: %w", err)
	}
	keyPEM, err := marshalKeyPEM(leafKey)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("server certificate: %w", err)
	}
	// The key first; a crash between the two leaves a pair that does not
	// match, which the next call replaces.
	if err := writeReplace(keyPath, keyPEM, 0o600); err != nil {
		return tls.Certificate{}, fmt.Errorf("server certificate: %w", err)
	}
	if err := writeReplace(certPath, CertPEM(der), 0o644); err != nil {
		return tls.Certificate{}, fmt.Errorf("server certificate: %w", err)
	}
	sc, err := loadServerCert(certPath, keyPath)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("server certificate: reading back: %w", err)
	}
	c.log.Info("issued server certificate", "dns", dns, "ips", ips, "not_after", sc.leaf.NotAfter, "issuer", issuer.Subject.CommonName)
	return keep(sc), nil
}

// loadServerCert reads the server's key pair.
func loadServerCert(certPath, keyPath string) (*serverCert, error) {
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, err
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, err
	}
	pair.Leaf = leaf
	return &serverCert{tls: pair, leaf: leaf}, nil
}

// serverCertFits reports whether leaf was issued by issuer for server
// use, names every one of dns and ips, and is not yet due for renewal.
func (c *CA) serverCertFits(leaf, issuer *x509.Certificate, dns []string, ips []net.IP, now time.Time) bool {
	roots := x509.NewCertPool()
	roots.AddCert(issuer)
	_, err := leaf.Verify(x509.VerifyOptions{
		Roots:       roots,
		CurrentTime: now,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		return false
	}
	renew := min(30*24*time.Hour, c.opts.ServerValidity/3)
	if leaf.NotAfter.Sub(now) < renew {
		return false
	}
	for _, d := range dns {
		if !slices.Contains(leaf.DNSNames, d) {
			return false
		}
	}
	for _, ip := range ips {
		if !slices.ContainsFunc(leaf.IPAddresses, ip.Equal) {
			return false
		}
	}
	return true
}

// serverHosts splits the server's names into DNS names and IP addresses,
// with localhost and the loopback addresses always among them.
func serverHosts(hosts []string) (dns []string, ips []net.IP, err error) {
	for _, h := range append([]string{"localhost", "127.0.0.1", "::1"}, hosts...) {
		h = strings.TrimSpace(h)
		if h == "" {
			continue
		}
		if ip := net.ParseIP(h); ip != nil {
			if !slices.ContainsFunc(ips, ip.Equal) {
				ips = append(ips, ip)
			}
			continue
		}
		h = strings.ToLower(strings.TrimSuffix(h, "."))
		for _, r := range h {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '.' || r == '_' || r == '*') {
				return nil, nil, fmt.Errorf("host %q: want a DNS name or an IP address", h)
			}
		}
		if !slices.Contains(dns, h) {
			dns = append(dns, h)
		}
	}
	return dns, ips, nil
}

// newSerial returns a random positive 128-bit serial number.
func newSerial() *big.Int {
	for {
		if n := new(big.Int).SetBytes(randomBytes(16)); n.Sign() > 0 {
			return n
		}
	}
}

// randomBytes returns n random bytes. Since Go 1.24 crypto/rand.Read
// never returns an error (it crashes the program instead), so there is
// none to pass on.
func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// minTime returns the earlier of a and b.
func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
