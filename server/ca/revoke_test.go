package ca_test

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/herdcm/herd/server/ca"
)

func TestRevoke(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	node := f.mustIssue(t, "web-01")
	adminPEM, _, err := f.ca.IssueAdmin(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	admin, err := ca.ParseCertPEM(adminPEM)
	if err != nil {
		t.Fatal(err)
	}

	type call struct{ Name, Serial string }
	var mu sync.Mutex
	var calls, stopped []call
	f.ca.OnRevoke(func(name, serial string) {
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, call{name, serial})
	})
	stop := f.ca.OnRevoke(func(name, serial string) {
		mu.Lock()
		defer mu.Unlock()
		stopped = append(stopped, call{name, serial})
	})
	stop()

	for _, c := range []*x509.Certificate{node, admin} {
		if f.ca.IsRevoked(ca.SerialHex(c)) {
			t.Errorf("IsRevoked(%s) before Revoke", c.Subject.CommonName)
		}
		if err := f.ca.Revoke(ctx, c.Subject.CommonName); err != nil {
			t.Fatalf("Revoke(%s) = %v", c.Subject.CommonName, err)
		}
		if !f.ca.IsRevoked(ca.SerialHex(c)) {
			t.Errorf("IsRevoked(%s) = false after Revoke", c.Subject.CommonName)
		}
	}
	want := []call{{"web-01", ca.SerialHex(node)}, {"alice", ca.SerialHex(admin)}}
	mu.Lock()
	if diff := cmp.Diff(want, calls); diff != "" {
		t.Errorf("OnRevoke calls (-want +got):\n%s", diff)
	}
	if len(stopped) > 0 {
		t.Errorf("a stopped OnRevoke callback was called: %v", stopped)
	}
	mu.Unlock()

	reopened := f.open(t)
	for _, c := range []*x509.Certificate{node, admin} {
		if !reopened.IsRevoked(ca.SerialHex(c)) {
			t.Errorf("IsRevoked(%s) = false after reopening", c.Subject.CommonName)
		}
	}

	for name, want := range map[string]error{"web-01": ca.ErrNotFound, "nobody": ca.ErrNotFound, "../x": ca.ErrInvalidName} {
		if err := f.ca.Revoke(ctx, name); !errors.Is(err, want) {
			t.Errorf("Revoke(%q) = %v, want %v", name, err, want)
		}
	}
}

func TestIssueAdmin(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	certPEM, keyPEM, err := f.ca.IssueAdmin(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if len(keyPEM) == 0 {
		t.Error("IssueAdmin returned no key")
	}
	admin, err := ca.ParseCertPEM(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.verify(admin, x509.ExtKeyUsageClientAuth); err != nil {
		t.Errorf("admin certificate does not verify: %v", err)
	}
	if _, _, err := f.ca.IssueAdmin(ctx, "alice"); !errors.Is(err, ca.ErrExists) {
		t.Errorf("second IssueAdmin = %v, want ErrExists", err)
	}
	// One namespace: a node cannot take an admin's name, nor the reverse.
	if res, _, err := f.enroll(t, "alice", f.token(t, "", false)); !errors.Is(err, ca.ErrExists) {
		t.Errorf("Enroll(alice) = %+v, %v; want ErrExists", res, err)
	}
	f.mustIssue(t, "web-01")
	if _, _, err := f.ca.IssueAdmin(ctx, "web-01"); !errors.Is(err, ca.ErrExists) {
		t.Errorf("IssueAdmin(web-01) = %v, want ErrExists", err)
	}
	if _, _, err := f.ca.IssueAdmin(ctx, "Alice"); !errors.Is(err, ca.ErrInvalidName) {
		t.Errorf("IssueAdmin(Alice) = %v, want ErrInvalidName", err)
	}
}

func TestIdentity(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	node := f.mustIssue(t, "web-01")
	adminPEM, _, err := f.ca.IssueAdmin(context.Background(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	admin, err := ca.ParseCertPEM(adminPEM)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := f.ca.ServerCert(nil)
	if err != nil {
		t.Fatal(err)
	}
	server := mustParse(t, pair.Certificate[0])
	stranger := foreignCert(t, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "web-02", OrganizationalUnit: []string{"herd-node"}},
		DNSNames:    []string{"web-02"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err := f.verify(stranger, x509.ExtKeyUsageClientAuth); err == nil {
		t.Error("a certificate of another CA verifies against Pool")
	}

	for _, tc := range []struct {
		name      string
		cert      *x509.Certificate
		node      string // "" when NodeName must fail
		admin     string // "" when AdminName must fail
		wantAdmin bool
	}{
		{"node", node, "web-01", "", false},
		{"admin", admin, "", "alice", true},
		{"server", server, "", "", false},
		{"nil", nil, "", "", false},
		// The marks alone, on certificates TLS would refuse: NodeName
		// reads them but relies on verification for the signature.
		{"names differ", foreignCert(t, &x509.Certificate{
			Subject: pkix.Name{CommonName: "web-01", OrganizationalUnit: []string{"herd-node"}}, DNSNames: []string{"web-02"},
		}), "", "", false},
		{"two names", foreignCert(t, &x509.Certificate{
			Subject: pkix.Name{CommonName: "web-01", OrganizationalUnit: []string{"herd-node"}}, DNSNames: []string{"web-01", "web-02"},
		}), "", "", false},
		{"both marks", foreignCert(t, &x509.Certificate{
			Subject: pkix.Name{CommonName: "web-01", OrganizationalUnit: []string{"herd-node", "herd-admin"}}, DNSNames: []string{"web-01"},
		}), "", "", false},
		{"bad name", foreignCert(t, &x509.Certificate{
			Subject: pkix.Name{CommonName: "../x", OrganizationalUnit: []string{"herd-node"}}, DNSNames: []string{"../x"},
		}), "", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got, err := ca.NodeName(tc.cert); got != tc.node || (err == nil) != (tc.node != "") {
				t.Errorf("NodeName = %q, %v; want %q", got, err, tc.node)
			}
			if got, err := ca.AdminName(tc.cert); got != tc.admin || (err == nil) != (tc.admin != "") {
				t.Errorf("AdminName = %q, %v; want %q", got, err, tc.admin)
			}
			if got := ca.IsAdmin(tc.cert); got != tc.wantAdmin {
				t.Errorf("IsAdmin = %v, want %v", got, tc.wantAdmin)
			}
			wantName := tc.node + tc.admin
			if got, admin, err := ca.Identify(tc.cert); got != wantName || admin != tc.wantAdmin || (err == nil) != (wantName != "") {
				t.Errorf("Identify = %q, %v, %v; want %q, %v", got, admin, err, wantName, tc.wantAdmin)
			}
		})
	}
}

func TestList(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	web := f.mustIssue(t, "web-01")
	if err := f.ca.Revoke(ctx, "web-01"); err != nil {
		t.Fatal(err)
	}
	web2 := f.mustIssue(t, "web-01")
	if _, _, err := f.ca.IssueAdmin(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	pub, csr := newCSR(t, "db-01")
	if _, err := f.ca.Enroll(ctx, "db-01", csr, "", ""); err != nil {
		t.Fatal(err)
	}
	fp, _ := ca.Fingerprint(pub)

	got, err := f.ca.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []ca.Listed{
		{Name: "alice", State: ca.StateIssued, Admin: true},
		{Name: "db-01", State: ca.StatePending, Fingerprint: fp},
		{Name: "web-01", State: ca.StateIssued, Serial: ca.SerialHex(web2)},
		{Name: "web-01", State: ca.StateRevoked, Serial: ca.SerialHex(web)},
	}
	ignore := cmpopts.IgnoreFields(ca.Listed{}, "Time", "NotAfter")
	for i := range got {
		if got[i].Name == "alice" {
			got[i].Serial = "" // random
		}
		if got[i].Name != "db-01" {
			if got[i].Fingerprint == "" || got[i].NotAfter.IsZero() {
				t.Errorf("List: %s has no fingerprint or expiry", got[i].Name)
			}
			got[i].Fingerprint = ""
		}
	}
	if diff := cmp.Diff(want, got, ignore); diff != "" {
		t.Errorf("List (-want +got):\n%s", diff)
	}
}

// TestRevocationSurvivesTheStore: the revocation list beside the CA keeps
// a node revoked when the store is restored from a backup older than the
// revocation, or emptied.
func TestRevocationSurvivesTheStore(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	issued := f.mustIssue(t, "web-01")
	serial := ca.SerialHex(issued)
	rec, _, err := f.st.Cert(ctx, "web-01")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.ca.Revoke(ctx, "web-01"); err != nil {
		t.Fatal(err)
	}
	// The backup from before the revocation: the certificate, unrevoked.
	restored := ca.NewMemStore()
	if err := restored.PutCert(ctx, rec); err != nil {
		t.Fatal(err)
	}
	for name, st := range map[string]ca.Store{"restored": restored, "emptied": ca.NewMemStore()} {
		c, err := ca.Open(ctx, f.dir, st, ca.Options{Now: f.clock.Now, Log: testLog(t)})
		if err != nil {
			t.Fatalf("Open with the %s store = %v", name, err)
		}
		if !c.IsRevoked(serial) {
			t.Errorf("with the %s store, serial %s is no longer revoked", name, serial)
		}
	}
	b, err := os.ReadFile(filepath.Join(f.dir, "crl.pem"))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	crl, err := x509.ParseRevocationList(block.Bytes)
	if err != nil || len(crl.RevokedCertificateEntries) != 1 || crl.RevokedCertificateEntries[0].SerialNumber.Cmp(issued.SerialNumber) != 0 {
		t.Fatalf("crl.pem = %v, %v; want web-01's serial", crl, err)
	}

	// A CRL not signed by this CA stops Open: trusting it or dropping it
	// could both be wrong.
	other := newFixture(t)
	forged, err := os.ReadFile(filepath.Join(other.dir, "crl.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.dir, "crl.pem"), forged, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ca.Open(ctx, f.dir, restored, ca.Options{Now: f.clock.Now}); err == nil || !strings.Contains(err.Error(), "not signed by this CA") {
		t.Errorf("Open with another CA's CRL = %v, want an error", err)
	}
}

// TestVerifyClient: only a leaf this CA issued and recorded, unrevoked and
// unexpired, identifies a caller; the verdict is cached but revocation
// and expiry still apply.
func TestVerifyClient(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	node := f.mustIssue(t, "web-01")
	id, err := f.ca.VerifyClient(ctx, []*x509.Certificate{node})
	if err != nil || id.Name != "web-01" || id.Admin || id.Serial != ca.SerialHex(node) {
		t.Fatalf("VerifyClient(node) = %+v, %v", id, err)
	}
	if _, err := f.ca.VerifyClient(ctx, []*x509.Certificate{node}); err != nil {
		t.Errorf("VerifyClient(node) from the cache = %v", err)
	}
	// Same CA, no record: a store that lost it, or a certificate made with
	// the CA key outside Herd.
	other := newFixture(t)
	unrecorded := f.mustIssue(t, "db-01")
	c, err := ca.Open(ctx, f.dir, ca.NewMemStore(), ca.Options{Now: f.clock.Now, Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.VerifyClient(ctx, []*x509.Certificate{unrecorded}); !errors.Is(err, ca.ErrNotIssued) {
		t.Errorf("VerifyClient(unrecorded) = %v, want ErrNotIssued", err)
	}
	if _, err := f.ca.VerifyClient(ctx, []*x509.Certificate{other.mustIssue(t, "web-01")}); err == nil {
		t.Error("VerifyClient accepted another CA's certificate")
	}
	if err := f.ca.Revoke(ctx, "web-01"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.ca.VerifyClient(ctx, []*x509.Certificate{node}); !errors.Is(err, ca.ErrRevoked) {
		t.Errorf("VerifyClient(revoked, cached) = %v, want ErrRevoked", err)
	}
	f.clock.Add(2 * 365 * 24 * time.Hour)
	if _, err := f.ca.VerifyClient(ctx, []*x509.Certificate{unrecorded}); err == nil {
		t.Error("VerifyClient accepted an expired certificate")
	}
	if _, err := f.ca.VerifyClient(ctx, nil); err == nil {
		t.Error("VerifyClient accepted no certificate")
	}
}
