package ca_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herdcm/herd/server/ca"
)

func TestOpenCreatesThenLoads(t *testing.T) {
	t.Parallel()
	f := newFixture(t)

	for file, want := range map[string]os.FileMode{"ca.crt": 0o644, "ca.key": 0o600, "signing.key": 0o600} {
		fi, err := os.Stat(filepath.Join(f.dir, file))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s mode = %v, want %v", file, got, want)
		}
	}

	root := mustParse(t, f.ca.CACertDER())
	if !root.IsCA || root.CheckSignatureFrom(root) != nil {
		t.Errorf("CA certificate is not a self-signed CA: IsCA=%v", root.IsCA)
	}
	if k, ok := root.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
		t.Errorf("CA key is %T, want ECDSA P-256", root.PublicKey)
	}
	if life := root.NotAfter.Sub(root.NotBefore); life < 9*365*24*time.Hour {
		t.Errorf("CA valid for %v, want about ten years", life)
	}

	again := f.open(t)
	if !bytes.Equal(again.CACertDER(), f.ca.CACertDER()) {
		t.Error("reopened CA has another certificate")
	}
	if !again.SigningPublicKey().Equal(f.ca.SigningPublicKey()) {
		t.Error("reopened CA has another signing key")
	}
	if !f.ca.SigningKey().Public().(ed25519.PublicKey).Equal(f.ca.SigningPublicKey()) {
		t.Error("SigningPublicKey is not SigningKey's public half")
	}

	// What one opening issued, the other trusts.
	cert := f.mustIssue(t, "web-01")
	if _, err := cert.Verify(x509.VerifyOptions{Roots: again.Pool(), CurrentTime: f.clock.Now(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("certificate from first opening does not verify with the second: %v", err)
	}
}

func TestOpenRefusesHalfACA(t *testing.T) {
	t.Parallel()
	for _, missing := range []string{"ca.key", "ca.crt"} {
		t.Run(missing, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			if err := os.Remove(filepath.Join(f.dir, missing)); err != nil {
				t.Fatal(err)
			}
			_, err := ca.Open(context.Background(), f.dir, f.st, ca.Options{})
			if err == nil || !strings.Contains(err.Error(), missing) {
				t.Errorf("Open without %s = %v, want an error naming it", missing, err)
			}
			if _, err := os.Stat(filepath.Join(f.dir, missing)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("Open recreated %s: %v", missing, err)
			}
		})
	}
}

func TestOpenGivenCA(t *testing.T) {
	t.Parallel()
	given := newFixture(t)
	certFile, keyFile := filepath.Join(given.dir, "ca.crt"), filepath.Join(given.dir, "ca.key")

	dir := t.TempDir()
	c, err := ca.Open(context.Background(), dir, ca.NewMemStore(), ca.Options{CertFile: certFile, KeyFile: keyFile})
	if err != nil {
		t.Fatalf("Open with a given CA = %v", err)
	}
	if !bytes.Equal(c.CACertDER(), given.ca.CACertDER()) {
		t.Error("Open with a given CA does not use it")
	}
	for _, f := range []string{"ca.crt", "ca.key"} {
		if _, err := os.Stat(filepath.Join(dir, f)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("Open with a given CA wrote %s", f)
		}
	}

	other := newFixture(t)
	if _, err := other.ca.ServerCert(nil); err != nil {
		t.Fatal(err)
	}
	for name, opts := range map[string]ca.Options{
		"cert only":      {CertFile: certFile},
		"key only":       {KeyFile: keyFile},
		"key of another": {CertFile: certFile, KeyFile: filepath.Join(other.dir, "ca.key")},
		"not a CA":       {CertFile: filepath.Join(other.dir, "server.crt"), KeyFile: filepath.Join(other.dir, "server.key")},
		"not a cert":     {CertFile: filepath.Join(other.dir, "signing.key"), KeyFile: keyFile},
		"missing":        {CertFile: filepath.Join(dir, "nope.crt"), KeyFile: keyFile},
	} {
		if _, err := ca.Open(context.Background(), t.TempDir(), ca.NewMemStore(), opts); err == nil {
			t.Errorf("Open(%s) = nil error, want one", name)
		}
	}
	if _, err := ca.Open(context.Background(), t.TempDir(), nil, ca.Options{}); err == nil {
		t.Error("Open without a store = nil error, want one")
	}
}

func TestServerCert(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	hosts := []string{"herd.example.com", "10.0.0.5"}
	pair, err := f.ca.ServerCert(hosts)
	if err != nil {
		t.Fatalf("ServerCert = %v", err)
	}
	leaf := mustParse(t, pair.Certificate[0])
	for _, name := range []string{"herd.example.com", "localhost", "127.0.0.1", "::1", "10.0.0.5"} {
		_, err := leaf.Verify(x509.VerifyOptions{Roots: f.ca.Pool(), DNSName: name, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
		if err != nil {
			t.Errorf("server certificate for %s: %v", name, err)
		}
	}
	if f.verify(leaf, x509.ExtKeyUsageClientAuth) == nil {
		t.Error("server certificate authenticates a client")
	}
	if _, err := ca.NodeName(leaf); err == nil || ca.IsAdmin(leaf) {
		t.Error("server certificate passes for a node or an admin")
	}
	for file, want := range map[string]os.FileMode{"server.crt": 0o644, "server.key": 0o600} {
		fi, err := os.Stat(filepath.Join(f.dir, file))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s mode = %v, want %v", file, got, want)
		}
	}

	same := func(c *ca.CA, hosts []string) bool {
		t.Helper()
		p, err := c.ServerCert(hosts)
		if err != nil {
			t.Fatalf("ServerCert(%q) = %v", hosts, err)
		}
		return bytes.Equal(p.Certificate[0], leaf.Raw)
	}
	if !same(f.ca, hosts) {
		t.Error("second ServerCert issued a new certificate")
	}
	if !same(f.open(t), []string{"HERD.example.com."}) {
		t.Error("reopened CA did not load the server certificate from its directory")
	}
	if same(f.ca, append(hosts, "other.example.com")) {
		t.Error("ServerCert with a new host kept the old certificate")
	}
	pair, _ = f.ca.ServerCert(hosts)
	leaf = mustParse(t, pair.Certificate[0])
	f.clock.Add(340 * 24 * time.Hour)
	if same(f.ca, hosts) {
		t.Error("ServerCert kept a certificate in its last month")
	}
	if _, err := f.ca.ServerCert([]string{"herd:8443"}); err == nil {
		t.Error("ServerCert(herd:8443) = nil error, want one")
	}
}

// TestTLS runs real handshakes: a node's certificate from Enroll against
// the server's from ServerCert, both trusting only Pool.
func TestTLS(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	srvCert, err := f.ca.ServerCert(nil)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, csr, err := ca.NewKeyAndCSR("web-01")
	if err != nil {
		t.Fatal(err)
	}
	res, err := f.ca.Enroll(context.Background(), "web-01", csr, f.token(t, "", true), "")
	if err != nil {
		t.Fatal(err)
	}
	node, err := tls.X509KeyPair(ca.CertPEM(res.Cert.DER), keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	adminPEM, adminKey, err := f.ca.IssueAdmin(context.Background(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	admin, err := tls.X509KeyPair(adminPEM, adminKey)
	if err != nil {
		t.Fatal(err)
	}
	foreign := newFixture(t)
	stranger := tlsPair(t, foreign, "web-02")

	for _, tc := range []struct {
		name      string
		client    tls.Certificate
		wantName  string
		wantAdmin bool
	}{
		{"node", node, "web-01", false},
		{"admin", admin, "alice", true},
		{"another CA's node", stranger, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sc, cc := net.Pipe()
			srv := tls.Server(sc, &tls.Config{Certificates: []tls.Certificate{srvCert}, ClientCAs: f.ca.Pool(), ClientAuth: tls.RequireAndVerifyClientCert})
			cli := tls.Client(cc, &tls.Config{Certificates: []tls.Certificate{tc.client}, RootCAs: f.ca.Pool(), ServerName: "localhost"})
			done := make(chan error, 1)
			go func() {
				err := cli.Handshake()
				cc.Close()
				done <- err
			}()
			err := srv.Handshake()
			sc.Close()
			<-done
			if tc.wantName == "" {
				if err == nil {
					t.Fatal("server accepted a certificate of another CA")
				}
				return
			}
			if err != nil {
				t.Fatalf("handshake: %v", err)
			}
			peer := srv.ConnectionState().PeerCertificates[0]
			var got string
			if tc.wantAdmin {
				got, err = ca.AdminName(peer)
			} else {
				got, err = ca.NodeName(peer)
			}
			if got != tc.wantName || err != nil || ca.IsAdmin(peer) != tc.wantAdmin {
				t.Errorf("peer = %q, %v, admin %v; want %q, admin %v", got, err, ca.IsAdmin(peer), tc.wantName, tc.wantAdmin)
			}
		})
	}
}

// tlsPair enrolls name with f's CA and returns the key pair.
func tlsPair(t *testing.T, f *fixture, name string) tls.Certificate {
	t.Helper()
	keyPEM, csr, err := ca.NewKeyAndCSR(name)
	if err != nil {
		t.Fatal(err)
	}
	res, err := f.ca.Enroll(context.Background(), name, csr, f.token(t, "", true), "")
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(ca.CertPEM(res.Cert.DER), keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return pair
}
