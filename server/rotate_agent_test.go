package server_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/herdcm/herd/agent"
	"github.com/herdcm/herd/server/ca"
)

// TestCARotationWithRealAgents rotates the CA of a real server under two
// real agents enrolled before it. During the overlap an agent that has
// not renewed still checks in; an agent that renews gets a certificate
// from the new CA and the bundle of both; once no certificate from the
// old CA is valid the old CA retires, the server's certificate moves to
// the new CA, and the agent, which learnt of it by renewing, still checks
// in, over a connection it makes after the move.
func TestCARotationWithRealAgents(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// Short-lived node certificates: renewal is due at once (the CA
	// backdates five minutes), and the old CA's certificates expire
	// within the test.
	const validity = 8 * time.Second
	s := startMotdServer(t, validity)
	oldCA, err := x509.ParseCertificate(s.CA().CACertDER())
	if err != nil {
		t.Fatal(err)
	}
	caFile := writeCAFile(t, oldCA.Raw)
	type node struct{ root, certDir string }
	enroll := func(name string) *node {
		t.Helper()
		n := &node{}
		n.root, n.certDir = newAgentRoot(t)
		token, _, err := s.CA().NewToken(ctx, name, time.Hour, true)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := agent.Enroll(ctx, agent.EnrollOptions{Server: s.Addr, Name: name, JoinToken: token, Dir: n.certDir, CAFile: caFile}); err != nil {
			t.Fatal(err)
		}
		return n
	}
	// Each run is a daemon started afresh, as a timer-driven agent
	// would be: it connects with the node's current certificate and
	// trusts the node's current bundle. (A daemon that lives through the
	// whole test would keep its first connection, made with its first
	// certificate, which Renew answers with the renewal it already gave;
	// with certificates this short-lived that outlives them.)
	run := func(n *node, what string) {
		t.Helper()
		d, err := agent.NewDaemon(ctx, agent.DaemonOptions{Server: s.Addr, Root: n.root, CertDir: n.certDir, Interval: time.Hour, Once: true})
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		defer d.Close()
		if _, err := d.RunOnce(ctx); err != nil {
			t.Fatalf("%s: run: %v", what, err)
		}
	}
	issuer := func(n *node) *x509.Certificate {
		t.Helper()
		id, err := agent.LoadIdentity(n.certDir)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []*x509.Certificate{oldCA} {
			if id.Certificate.Leaf.CheckSignatureFrom(c) == nil {
				return c
			}
		}
		return nil
	}
	bundle := func(n *node) int {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(n.certDir, "ca.pem"))
		if err != nil {
			t.Fatal(err)
		}
		return bytes.Count(b, []byte("-----BEGIN CERTIFICATE-----"))
	}

	a, b := enroll("web-01"), enroll("web-02")
	run(a, "web-01 before the rotation")

	cur, retiring, err := s.CA().Rotate(ctx)
	if err != nil {
		t.Fatalf("Rotate() = %v", err)
	}
	if retiring.Fingerprint != ca.CertFingerprint(oldCA) || retiring.Dependents < 2 {
		t.Fatalf("Rotate(): retiring %+v; want the old CA with web-01 and web-02 depending on it", retiring)
	}
	newCA, err := x509.ParseCertificate(cur.DER)
	if err != nil {
		t.Fatal(err)
	}

	// The overlap: web-02, enrolled before the rotation and trusting
	// only the old CA, checks in (and renews, from the new CA).
	if issuer(b) != oldCA || bundle(b) != 1 {
		t.Fatal("web-02 does not start from the old CA alone")
	}
	run(b, "web-02 during the overlap")
	run(a, "web-01 during the overlap")
	for _, n := range []*node{a, b} {
		id, err := agent.LoadIdentity(n.certDir)
		if err != nil {
			t.Fatal(err)
		}
		if err := id.Certificate.Leaf.CheckSignatureFrom(newCA); err != nil {
			t.Errorf("%s renewed during the overlap, but not from the new CA: %v", id.Node, err)
		}
		if got := bundle(n); got != 2 {
			t.Errorf("%s's ca.pem holds %d CAs after renewing during the overlap, want 2", id.Node, got)
		}
	}
	if retired, err := s.CA().Retire(ctx); err != nil || retired {
		t.Fatalf("Retire() while the old CA's certificates are valid = %v, %v", retired, err)
	}

	// web-01 goes on checking in (and renewing, its certificates being
	// short-lived) until the old CA's certificates expire and it
	// retires; web-02 stops.
	deadline := time.Now().Add(60 * time.Second)
	for {
		run(a, "web-01 waiting for the retirement")
		retired, err := s.CA().Retire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if retired {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the old CA did not retire after its certificates expired")
		}
		time.Sleep(500 * time.Millisecond) // the old CA's certificates expire by the clock
	}
	sc, err := s.CA().ServerCert(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := sc.Leaf.CheckSignatureFrom(newCA); err != nil {
		t.Fatalf("after the retirement the server's certificate is not from the new CA: %v", err)
	}
	// web-01 checks in, verifying the server's new certificate with the
	// bundle it got by renewing, and learns that the old CA retired.
	run(a, "web-01 after the retirement")
	if got := bundle(a); got != 1 {
		t.Errorf("web-01's ca.pem holds %d CAs after the retirement, want the new CA alone", got)
	}
	run(a, "web-01 trusting the new CA alone")
}
