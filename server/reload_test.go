package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"

	"github.com/herdcm/herd/server/ca"
)

// presented returns the leaf certificate the server presents now.
func presented(t *testing.T, s *Server) *x509.Certificate {
	t.Helper()
	c, err := tls.Dial("tcp", s.Addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}, MinVersion: tls.VersionTLS13})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0]
}

// TestReload: a server certificate an operator replaced under dir/ca is
// presented after Reload and not before (it was kept in memory); a
// revocation another CA wrote into the shared store and CRL is taken; the
// site stays served.
func TestReload(t *testing.T) {
	t.Parallel()
	s, _ := startServer(t)
	ctx := context.Background()
	before := presented(t, s)

	// The operator's replacement: a pair the CA issues anew once the
	// old one is gone (in production, one it signed for new names).
	dir := filepath.Join(s.opts.Dir, "ca")
	for _, f := range []string{"server.crt", "server.key"} {
		if err := os.Remove(filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	if got := presented(t, s); !bytes.Equal(got.Raw, before.Raw) {
		t.Fatal("the certificate changed before Reload: the test proves nothing")
	}

	// A revocation this process does not know of: written by a second
	// CA on the same directory and store, as a second server would.
	cert := enroll(t, s, "web-01")
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	other, err := ca.Open(ctx, dir, s.st, ca.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Revoke(ctx, "web-01"); err != nil {
		t.Fatal(err)
	}
	if s.ca.IsRevoked(ca.SerialHex(leaf)) {
		t.Fatal("revoked before Reload: the test proves nothing")
	}
	res, err := s.Reload(ctx)
	if err != nil {
		t.Fatalf("Reload = %v", err)
	}
	if !s.ca.IsRevoked(ca.SerialHex(leaf)) || res.Revoked != 1 {
		t.Errorf("after Reload: revoked %v, %d new revocations; want true, 1", s.ca.IsRevoked(ca.SerialHex(leaf)), res.Revoked)
	}
	if res.Version == "" || res.SiteError != "" {
		t.Errorf("Reload = %+v, want the site served without an error", res)
	}
	after := presented(t, s)
	if bytes.Equal(after.Raw, before.Raw) {
		t.Error("the server presents the old certificate after Reload")
	}
	if _, err := os.Stat(filepath.Join(dir, "server.crt")); err != nil {
		t.Errorf("no server.crt after Reload: %v", err)
	}
}
