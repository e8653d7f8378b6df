package server

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/herdcm/herd/api/herdv1"
	"github.com/herdcm/herd/server/ca"
)

// keyFingerprint is the fingerprint of the key in a PEM private key, as
// the CA and the agent show it.
func keyFingerprint(t *testing.T, keyPEM []byte) string {
	t.Helper()
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		t.Fatal("no PEM key")
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	fp, err := ca.Fingerprint(key.(*ecdsa.PrivateKey).Public())
	if err != nil {
		t.Fatal(err)
	}
	return fp
}

// TestEnrollmentCannotBeHijacked: a node waits for `herd ca sign`; an
// attacker, a separate client, sends Enroll for the same name with its
// own key. The first request keeps the name, the operator sees its
// fingerprint and source, signs only that key, and the attacker gets
// nothing.
func TestEnrollmentCannotBeHijacked(t *testing.T) {
	t.Parallel()
	s, _ := startServer(t)
	ctx := context.Background()
	adm := admin(t, s)
	ac := herdv1.NewAdminClient(dial(t, s, &adm))

	nodeKey, nodeCSR, _ := ca.NewKeyAndCSR("web-07")
	evilKey, evilCSR, _ := ca.NewKeyAndCSR("web-07")
	nodeFP, evilFP := keyFingerprint(t, nodeKey), keyFingerprint(t, evilKey)
	nodeConn := herdv1.NewEnrollClient(dial(t, s, nil))
	evilConn := herdv1.NewEnrollClient(dial(t, s, nil))

	resp, err := nodeConn.Enroll(ctx, &herdv1.EnrollRequest{Name: "web-07", CsrDer: nodeCSR})
	if err != nil || resp.Status != herdv1.EnrollResponse_PENDING {
		t.Fatalf("node Enroll = %v, %v; want PENDING", resp.GetStatus(), err)
	}
	_, err = evilConn.Enroll(ctx, &herdv1.EnrollRequest{Name: "web-07", CsrDer: evilCSR})
	if status.Code(err) != codes.AlreadyExists {
		t.Fatalf("attacker Enroll for a pending name = %v, want AlreadyExists", err)
	}

	list, err := ac.ListCertificates(ctx, &herdv1.ListCertificatesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var pending *herdv1.Certificate
	for _, c := range list.Certificates {
		if c.Name == "web-07" && c.State == "pending" {
			pending = c
		}
	}
	if pending == nil || pending.Fingerprint != nodeFP || !strings.HasPrefix(pending.Source, "127.0.0.1:") || pending.TimeUnixMs == 0 {
		t.Fatalf("pending web-07 = %+v; want the node's fingerprint %s and a 127.0.0.1 source", pending, nodeFP)
	}

	if _, err := ac.SignCertificate(ctx, &herdv1.SignCertificateRequest{Name: "web-07", Fingerprint: evilFP}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("Sign with the attacker's fingerprint = %v, want FailedPrecondition", err)
	}
	if _, err := ac.SignCertificate(ctx, &herdv1.SignCertificateRequest{Name: "web-07", Fingerprint: nodeFP}); err != nil {
		t.Fatalf("Sign with the node's fingerprint = %v", err)
	}
	resp, err = nodeConn.Enroll(ctx, &herdv1.EnrollRequest{Name: "web-07", CsrDer: nodeCSR})
	if err != nil || resp.Status != herdv1.EnrollResponse_ISSUED {
		t.Fatalf("node Enroll after Sign = %v, %v; want ISSUED", resp.GetStatus(), err)
	}
	if _, err := evilConn.Enroll(ctx, &herdv1.EnrollRequest{Name: "web-07", CsrDer: evilCSR}); status.Code(err) != codes.AlreadyExists {
		t.Errorf("attacker Enroll after Sign = %v, want AlreadyExists", err)
	}

	// A squatter is removed with reject; the name is then free.
	_, squatCSR, _ := ca.NewKeyAndCSR("db-01")
	if _, err := evilConn.Enroll(ctx, &herdv1.EnrollRequest{Name: "db-01", CsrDer: squatCSR}); err != nil {
		t.Fatal(err)
	}
	if _, err := ac.RejectCertificate(ctx, &herdv1.RejectCertificateRequest{Name: "db-01"}); err != nil {
		t.Fatalf("RejectCertificate = %v", err)
	}
	if _, err := ac.RejectCertificate(ctx, &herdv1.RejectCertificateRequest{Name: "db-01"}); status.Code(err) != codes.NotFound {
		t.Errorf("RejectCertificate again = %v, want NotFound", err)
	}
	_, dbCSR, _ := ca.NewKeyAndCSR("db-01")
	if resp, err := nodeConn.Enroll(ctx, &herdv1.EnrollRequest{Name: "db-01", CsrDer: dbCSR}); err != nil || resp.Status != herdv1.EnrollResponse_PENDING {
		t.Errorf("Enroll after reject = %v, %v; want PENDING", resp.GetStatus(), err)
	}
}

// TestJoinTokensListedAndRevoked: tokens are listed by id without their
// secrets, and a revoked token enrolls nothing.
func TestJoinTokensListedAndRevoked(t *testing.T) {
	t.Parallel()
	s, _ := startServer(t)
	ctx := context.Background()
	adm := admin(t, s)
	ac := herdv1.NewAdminClient(dial(t, s, &adm))
	tok, err := ac.CreateJoinToken(ctx, &herdv1.CreateJoinTokenRequest{NamePattern: "web-*", TtlMs: time.Hour.Milliseconds()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ac.CreateJoinToken(ctx, &herdv1.CreateJoinTokenRequest{TtlMs: (365 * 24 * time.Hour).Milliseconds()}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("CreateJoinToken for a year = %v, want InvalidArgument", err)
	}
	list, err := ac.ListJoinTokens(ctx, &herdv1.ListJoinTokensRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Tokens) != 1 || list.Tokens[0].Id != tok.Id || list.Tokens[0].NamePattern != "web-*" || strings.Contains(list.String(), tok.Token) {
		t.Fatalf("ListJoinTokens = %v; want one web-* token %s and never its secret", list.Tokens, tok.Id)
	}
	if _, err := ac.RevokeJoinToken(ctx, &herdv1.RevokeJoinTokenRequest{Id: tok.Id}); err != nil {
		t.Fatalf("RevokeJoinToken = %v", err)
	}
	_, csr, _ := ca.NewKeyAndCSR("web-01")
	resp, err := herdv1.NewEnrollClient(dial(t, s, nil)).Enroll(ctx, &herdv1.EnrollRequest{Name: "web-01", CsrDer: csr, JoinToken: tok.Token})
	if err != nil || resp.Status != herdv1.EnrollResponse_PENDING {
		t.Errorf("Enroll with a revoked token = %v, %v; want PENDING", resp.GetStatus(), err)
	}
	if _, err := ac.RevokeJoinToken(ctx, &herdv1.RevokeJoinTokenRequest{Id: tok.Id}); status.Code(err) != codes.NotFound {
		t.Errorf("RevokeJoinToken again = %v, want NotFound", err)
	}
}

// TestForgedSessionTicketIsRefused: an attacker holding the session ticket
// keys (and nothing else) mints a ticket carrying an unsigned herd-admin
// certificate by running its own TLS server with those keys, then resumes
// that session against the real server and calls CreateJoinToken. The
// ticket claims a verified chain ending in the real CA (crypto/tls checks
// only that a resumed chain's root is trusted, not its signatures).
func TestForgedSessionTicketIsRefused(t *testing.T) {
	t.Parallel()
	s, _ := startServer(t)
	keys := readTicketKeys(t, filepath.Join(s.opts.Dir, "ca", "ticket.keys"))
	if _, err := os.Stat(filepath.Join(s.opts.Dir, "session-ticket.key")); !os.IsNotExist(err) {
		t.Errorf("a ticket key lies outside the CA directory: %v", err)
	}

	forged := forgedAdmin(t)
	forgedPool := x509.NewCertPool()
	forgedPool.AddCert(forged.Leaf)
	forger := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{selfSigned(t, "localhost")},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    forgedPool, // the forged leaf "verifies" here, so the ticket holds a chain
		NextProtos:   []string{"h2"},
	}
	forger.SetSessionTicketKeys(keys)
	realCA := s.ca.CACertDER()
	forger.WrapSession = func(cs tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
		b, err := ss.Bytes()
		if err != nil {
			return nil, err
		}
		// The state ends with its verified chains, leaf elided: one chain
		// of no more certificates (00 00 03 00 00 00). Make it claim the
		// real CA as the forged leaf's issuer.
		tail := []byte{0, 0, 3, 0, 0, 0}
		if !bytes.HasSuffix(b, tail) {
			return nil, fmt.Errorf("unexpected session state tail % x", b[len(b)-6:])
		}
		u24 := func(n int) []byte { return []byte{byte(n >> 16), byte(n >> 8), byte(n)} }
		entry := append(u24(len(realCA)), realCA...)
		chain := append(u24(len(entry)), entry...)
		b = append(b[:len(b)-len(tail)], append(u24(len(chain)), chain...)...)
		forgedState, err := tls.ParseSessionState(b)
		if err != nil {
			return nil, err
		}
		return forger.EncryptTicket(cs, forgedState)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	go func() {
		c, err := lis.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		tc := tls.Server(c, forger)
		if tc.Handshake() == nil {
			tc.Write([]byte{1}) // lets the client read its session ticket
		}
	}()

	cache := tls.NewLRUClientSessionCache(4)
	client := &tls.Config{
		MinVersion: tls.VersionTLS13, ServerName: "localhost", InsecureSkipVerify: true,
		Certificates: []tls.Certificate{forged}, ClientSessionCache: cache, NextProtos: []string{"h2"},
	}
	c, err := tls.Dial("tcp", lis.Addr().String(), client)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if _, ok := cache.Get("localhost"); !ok {
		t.Fatal("the forger's handshake left no session ticket to replay")
	}

	// Without its certificate: only the ticket can carry the identity.
	resume := client.Clone()
	resume.Certificates = nil
	conn, err := grpc.NewClient(s.Addr, grpc.WithTransportCredentials(credentials.NewTLS(resume)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = herdv1.NewAdminClient(conn).CreateJoinToken(ctx, &herdv1.CreateJoinTokenRequest{TtlMs: time.Hour.Milliseconds()})
	if err == nil {
		t.Fatal("CreateJoinToken over a forged session ticket succeeded")
	}
	if list, _ := s.ca.Tokens(context.Background()); len(list) != 0 {
		t.Errorf("a join token was created over a forged ticket: %v", list)
	}
}

// TestUnissuedCertificateIsRefused: a herd-admin certificate signed with
// the CA key but never issued (no record of its serial) is refused.
func TestUnissuedCertificateIsRefused(t *testing.T) {
	t.Parallel()
	s, _ := startServer(t)
	dir := filepath.Join(s.opts.Dir, "ca")
	caPair, err := tls.LoadX509KeyPair(filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caPair.Certificate[0])
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(4242), Subject: pkix.Name{CommonName: "mallory", OrganizationalUnit: []string{"herd-admin"}},
		DNSNames: []string{"mallory"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, key.Public(), caPair.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	rogue := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = herdv1.NewAdminClient(dial(t, s, &rogue)).ListNodes(ctx, &herdv1.ListNodesRequest{})
	if err == nil {
		t.Fatal("a CA-signed admin certificate the server never issued was accepted")
	}
	// One the server issued works.
	adm := admin(t, s)
	if _, err := herdv1.NewAdminClient(dial(t, s, &adm)).ListNodes(ctx, &herdv1.ListNodesRequest{}); err != nil {
		t.Errorf("an issued admin certificate was refused: %v", err)
	}
}

// forgedAdmin is an unsigned (self-signed) certificate claiming to be an
// admin.
func forgedAdmin(t *testing.T) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "ops", OrganizationalUnit: []string{"herd-admin"}},
		DNSNames: []string{"ops"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// readTicketKeys reads ticket.keys as the attacker would.
func readTicketKeys(t *testing.T, path string) [][32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s has mode %v, want 0600", path, fi.Mode().Perm())
	}
	var keys [][32]byte
	for ; len(b) >= 40; b = b[40:] {
		_ = binary.BigEndian.Uint64(b[:8])
		var k [32]byte
		copy(k[:], b[8:40])
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		t.Fatalf("%s holds no key", path)
	}
	return keys
}

// TestClientConnsClose: a tracked connection closes at its certificate's
// expiry, or when its name is revoked; others stay open.
func TestClientConnsClose(t *testing.T) {
	t.Parallel()
	var set clientConns
	closed := func(c net.Conn) <-chan struct{} {
		done := make(chan struct{})
		go func() { c.Read(make([]byte, 1)); close(done) }()
		return done
	}
	a, aPeer := net.Pipe()
	b, bPeer := net.Pipe()
	c, cPeer := net.Pipe()
	defer aPeer.Close()
	defer bPeer.Close()
	defer cPeer.Close()
	set.track(a, "web-01", time.Now().Add(50*time.Millisecond))
	tb := set.track(b, "db-01", time.Now().Add(time.Hour))
	tc := set.track(c, "mail-01", time.Now().Add(time.Hour))
	<-closed(aPeer) // expiry
	bDone := closed(bPeer)
	set.closeName("db-01")
	<-bDone
	set.mu.Lock()
	if len(set.byName["mail-01"]) != 1 {
		t.Error("an unrelated connection was closed")
	}
	set.mu.Unlock()
	tc.Close()
	tb.Close()
	set.mu.Lock()
	defer set.mu.Unlock()
	if len(set.byName) != 0 {
		t.Errorf("closed connections are still tracked: %v", set.byName)
	}
}

// TestOneServerPerDir: a second server on a running server's state
// directory is refused; the Local socket issues admin credentials.
func TestOneServerPerDir(t *testing.T) {
	t.Parallel()
	s, site := startServer(t)
	ctx := context.Background()
	second, err := New(ctx, Options{Site: site, Dir: s.opts.Dir, Listen: "127.0.0.1:0", HTTPListen: "off"})
	if err == nil {
		err = second.Start(ctx)
		defer second.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "another server is running") {
		t.Errorf("a second server on the same directory: %v", err)
	}
	client, closeConn, err := DialLocal(ctx, s.opts.Dir)
	if err != nil {
		t.Fatal(err)
	}
	defer closeConn()
	_, csr, _ := ca.NewKeyAndCSR("ops")
	resp, err := client.IssueAdmin(ctx, &herdv1.IssueAdminRequest{Name: "ops", CsrDer: csr})
	if err != nil {
		t.Fatalf("IssueAdmin over the local socket: %v", err)
	}
	cert, err := x509.ParseCertificate(resp.CertificateDer)
	if err != nil || !ca.IsAdmin(cert) {
		t.Errorf("IssueAdmin gave %v, %v; want an admin certificate", cert, err)
	}
	if fi, err := os.Stat(LocalSocket(s.opts.Dir)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("the local socket: %v, %v; want mode 0600", fi, err)
	}
	if _, _, err := DialLocal(ctx, t.TempDir()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("DialLocal with no server = %v, want os.ErrNotExist", err)
	}
}
