package server_test

import (
	"context"
	"crypto/tls"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/herdcm/herd/agent"
	"github.com/herdcm/herd/api/herdv1"
	"github.com/herdcm/herd/server/ca"
)

// TestAgentRenewsItsCertificate: with short-lived node certificates a real
// agent renews its own over mTLS during a run, with no operator step; the
// renewed certificate works, the old one shows as superseded, and Renew
// refuses callers without a node certificate.
func TestAgentRenewsItsCertificate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// One minute of validity (plus the CA's five minutes of backdating)
	// puts a fresh certificate past two thirds of its life at once.
	s := startMotdServer(t, time.Minute)
	root, certDir := newAgentRoot(t)
	caFile := writeCAFile(t, s.CA().CACertDER())
	token, _, err := s.CA().NewToken(ctx, "web-01", time.Hour, true)
	if err != nil {
		t.Fatal(err)
	}
	first, err := agent.Enroll(ctx, agent.EnrollOptions{Server: s.Addr, Name: "web-01", JoinToken: token, Dir: certDir, CAFile: caFile})
	if err != nil {
		t.Fatal(err)
	}
	run := func() {
		t.Helper()
		d, err := agent.NewDaemon(ctx, agent.DaemonOptions{Server: s.Addr, Root: root, CertDir: certDir, Interval: time.Hour, Once: true})
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		if _, err := d.RunOnce(ctx); err != nil {
			t.Fatalf("run: %v", err)
		}
	}
	run()
	renewed, err := agent.LoadIdentity(certDir)
	if err != nil {
		t.Fatal(err)
	}
	oldSerial := ca.SerialHex(first.Certificate.Leaf)
	newSerial := ca.SerialHex(renewed.Certificate.Leaf)
	if newSerial == oldSerial || renewed.Node != "web-01" {
		t.Fatalf("after a run the certificate is still serial %s; want a renewed one", oldSerial)
	}
	states := map[string]ca.State{}
	list, err := s.CA().List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range list {
		states[l.Serial] = l.State
	}
	if states[oldSerial] != ca.StateSuperseded || states[newSerial] != ca.StateIssued {
		t.Errorf("states = %v; want %s superseded and %s issued", states, oldSerial, newSerial)
	}
	run() // with the renewed certificate (renewed again, being short-lived)

	// Renew is for nodes: no certificate, or an admin's, is refused.
	adminPEM, adminKey, err := s.CA().IssueAdmin(ctx, "ops")
	if err != nil {
		t.Fatal(err)
	}
	adm, _ := tls.X509KeyPair(adminPEM, adminKey)
	for name, certs := range map[string][]tls.Certificate{"none": nil, "admin": {adm}} {
		conf := &tls.Config{RootCAs: s.CA().Pool(), ServerName: "localhost", MinVersion: tls.VersionTLS13, Certificates: certs}
		conn, err := grpc.NewClient(s.Addr, grpc.WithTransportCredentials(credentials.NewTLS(conf)))
		if err != nil {
			t.Fatal(err)
		}
		_, err = herdv1.NewEnrollClient(conn).Renew(ctx, &herdv1.RenewRequest{})
		conn.Close()
		if c := status.Code(err); c != codes.Unauthenticated && c != codes.PermissionDenied {
			t.Errorf("Renew with %s certificate = %v, want refused", name, err)
		}
	}
}
