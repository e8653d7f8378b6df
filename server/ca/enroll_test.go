package ca_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/herdcm/herd/server/ca"
)

// TestEnrollTakesOnlyTheKey sends requests that ask for more than a
// name and checks that the certificate has the name and nothing else.
func TestEnrollTakesOnlyTheKey(t *testing.T) {
	t.Parallel()
	basicCA, err := asn1.Marshal(struct{ IsCA bool }{true})
	if err != nil {
		t.Fatal(err)
	}
	ekuServer, err := asn1.Marshal([]asn1.ObjectIdentifier{{1, 3, 6, 1, 5, 5, 7, 3, 1}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		req  x509.CertificateRequest
	}{
		{"plain", x509.CertificateRequest{Subject: pkix.Name{CommonName: "web-01"}}},
		{"wildcard SAN", x509.CertificateRequest{Subject: pkix.Name{CommonName: "web-01"}, DNSNames: []string{"web-01", "*.example.com"}}},
		{"other common name", x509.CertificateRequest{Subject: pkix.Name{CommonName: "db-01"}, DNSNames: []string{"db-01"}}},
		{"IP, email and URI SANs", x509.CertificateRequest{
			IPAddresses:    []net.IP{net.ParseIP("127.0.0.1")},
			EmailAddresses: []string{"root@example.com"},
			URIs:           []*url.URL{{Scheme: "spiffe", Host: "example.com", Path: "/admin"}},
		}},
		{"CA and server extensions", x509.CertificateRequest{ExtraExtensions: []pkix.Extension{
			{Id: asn1.ObjectIdentifier{2, 5, 29, 19}, Critical: true, Value: basicCA},
			{Id: asn1.ObjectIdentifier{2, 5, 29, 37}, Value: ekuServer},
		}}},
		{"forged admin mark", x509.CertificateRequest{Subject: pkix.Name{CommonName: "web-01", OrganizationalUnit: []string{"herd-admin"}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			csr, err := x509.CreateCertificateRequest(rand.Reader, &tc.req, key)
			if err != nil {
				t.Fatal(err)
			}
			res, err := f.ca.Enroll(context.Background(), "web-01", csr, f.token(t, "", false), "")
			if err != nil || res.State != ca.StateIssued {
				t.Fatalf("Enroll = %+v, %v; want issued", res, err)
			}
			cert := mustParse(t, res.Cert.DER)
			if err := f.verify(cert, x509.ExtKeyUsageClientAuth); err != nil {
				t.Errorf("certificate does not verify for client auth: %v", err)
			}
			if f.verify(cert, x509.ExtKeyUsageServerAuth) == nil {
				t.Error("certificate verifies for server auth")
			}
			var exts []string
			for _, e := range cert.Extensions {
				exts = append(exts, e.Id.String())
			}
			got := fmt.Sprintf("subject=%s DNS=%v IP=%v email=%v URI=%v CA=%v EKU=%v%v extensions=%v",
				cert.Subject, cert.DNSNames, cert.IPAddresses, cert.EmailAddresses, cert.URIs,
				cert.IsCA, cert.ExtKeyUsage, cert.UnknownExtKeyUsage, exts)
			// Key usage, extended key usage, basic constraints, authority
			// key id, SAN: what the CA puts there, nothing of the request's.
			want := "subject=CN=web-01,OU=herd-node DNS=[web-01] IP=[] email=[] URI=[] CA=false EKU=[clientAuth][] " +
				"extensions=[2.5.29.15 2.5.29.37 2.5.29.19 2.5.29.35 2.5.29.17]"
			if got != want {
				t.Errorf("certificate:\n got %s\nwant %s", got, want)
			}
			if !key.PublicKey.Equal(cert.PublicKey) {
				t.Error("certificate is not for the request's key")
			}
			if n := cert.SerialNumber.BitLen(); n < 100 || n > 128 {
				t.Errorf("serial is %d bits, want 128 random bits", n)
			}
			if life := cert.NotAfter.Sub(f.clock.Now()); life < 29*24*time.Hour || life > 31*24*time.Hour {
				t.Errorf("certificate valid for %v, want 30 days", life)
			}
			if ca.IsAdmin(cert) {
				t.Error("node certificate is an admin's")
			}
			if name, err := ca.NodeName(cert); name != "web-01" || err != nil {
				t.Errorf("NodeName = %q, %v; want web-01", name, err)
			}
			if ca.SerialHex(cert) != res.Cert.Serial {
				t.Errorf("SerialHex = %s, stored serial %s", ca.SerialHex(cert), res.Cert.Serial)
			}
		})
	}
}

func TestEnrollTokens(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		node       string
		pattern    string
		token      func(secret string) string
		wait       time.Duration
		wantState  ca.State
		wantReason string
	}{
		{name: "valid", node: "web-01", wantState: ca.StateIssued},
		{name: "none", node: "web-01", token: func(string) string { return "" }, wantState: ca.StatePending, wantReason: "no join token"},
		{name: "wrong", node: "web-01", token: func(s string) string { return s + "x" }, wantState: ca.StatePending, wantReason: "unknown"},
		{name: "expired", node: "web-01", wait: 2 * time.Hour, wantState: ca.StatePending, wantReason: "expired"},
		{name: "pattern matches", node: "web-01", pattern: "web-*", wantState: ca.StateIssued},
		{name: "pattern refuses", node: "db-01", pattern: "web-*", wantState: ca.StatePending, wantReason: `"web-*"`},
		// A '*' stays within one label: the pattern matches whole names.
		{name: "pattern refuses more labels", node: "web-01.evil.example", pattern: "web-*", wantState: ca.StatePending, wantReason: `"web-*"`},
		{name: "pattern with labels matches", node: "web-01.dc1.example", pattern: "web-*.*.example", wantState: ca.StateIssued},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			secret := f.token(t, tc.pattern, false) // valid for an hour
			if tc.token != nil {
				secret = tc.token(secret)
			}
			f.clock.Add(tc.wait)
			res, _, err := f.enroll(t, tc.node, secret)
			if err != nil {
				t.Fatalf("Enroll = %v", err)
			}
			if res.State != tc.wantState || !strings.Contains(res.Reason, tc.wantReason) {
				t.Errorf("Enroll = %s (%q), want %s (%q)", res.State, res.Reason, tc.wantState, tc.wantReason)
			}
			if res.State == ca.StatePending && res.RetryAfter <= 0 {
				t.Errorf("pending with RetryAfter %v", res.RetryAfter)
			}
		})
	}
}

func TestSingleUseToken(t *testing.T) {
	t.Parallel()
	t.Run("sequential", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		secret := f.token(t, "", true)
		if res, _, err := f.enroll(t, "web-01", secret); err != nil || res.State != ca.StateIssued {
			t.Fatalf("first Enroll = %+v, %v; want issued", res, err)
		}
		if res, _, err := f.enroll(t, "web-02", secret); err != nil || res.State != ca.StatePending {
			t.Fatalf("second Enroll = %+v, %v; want pending", res, err)
		}
	})
	t.Run("spent only by what it issues", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		secret := f.token(t, "web-*", true)
		// A name outside the pattern does not spend it.
		if res, _, err := f.enroll(t, "db-01", secret); err != nil || res.State != ca.StatePending {
			t.Fatalf("Enroll db-01 = %+v, %v; want pending", res, err)
		}
		if res, _, err := f.enroll(t, "web-01", secret); err != nil || res.State != ca.StateIssued {
			t.Fatalf("Enroll web-01 after a refused use = %+v, %v; want issued", res, err)
		}
	})
	t.Run("concurrent", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		secret := f.token(t, "", true)
		states := make([]ca.State, 10)
		var wg sync.WaitGroup
		for i := range states {
			_, csr := newCSR(t, "x")
			wg.Go(func() {
				res, err := f.ca.Enroll(context.Background(), fmt.Sprintf("web-%02d", i), csr, secret, "")
				if err != nil {
					t.Errorf("Enroll = %v", err)
				}
				states[i] = res.State
			})
		}
		wg.Wait()
		count := map[ca.State]int{}
		for _, s := range states {
			count[s]++
		}
		if diff := cmp.Diff(map[ca.State]int{ca.StateIssued: 1, ca.StatePending: 9}, count); diff != "" {
			t.Errorf("10 enrollments with one single-use token (-want +got):\n%s", diff)
		}
	})
	t.Run("concurrent same name", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		secret := f.token(t, "", false)
		var wg sync.WaitGroup
		var mu sync.Mutex
		count := map[string]int{}
		for range 10 {
			_, csr := newCSR(t, "web-01")
			wg.Go(func() {
				res, err := f.ca.Enroll(context.Background(), "web-01", csr, secret, "")
				mu.Lock()
				defer mu.Unlock()
				switch {
				case errors.Is(err, ca.ErrExists):
					count["exists"]++
				case err != nil:
					t.Errorf("Enroll = %v", err)
				default:
					count[string(res.State)]++
				}
			})
		}
		wg.Wait()
		if diff := cmp.Diff(map[string]int{"issued": 1, "exists": 9}, count); diff != "" {
			t.Errorf("10 keys enrolling one name (-want +got):\n%s", diff)
		}
	})
}

func TestNewTokenRefuses(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for _, tc := range []struct {
		pattern string
		ttl     time.Duration
	}{
		{"web-[", time.Hour},
		{"web-*", 0},
		{"web-*", -time.Hour},
		{"web-*", 31 * 24 * time.Hour}, // past MaxTokenTTL's default
	} {
		if _, _, err := f.ca.NewToken(context.Background(), tc.pattern, tc.ttl, false); !errors.Is(err, ca.ErrInvalid) {
			t.Errorf("NewToken(%q, %v) = %v, want ErrInvalid", tc.pattern, tc.ttl, err)
		}
	}
	secret, expires, err := f.ca.NewToken(context.Background(), "", time.Hour, false)
	if err != nil || len(secret) != 43 || !expires.Equal(f.clock.Now().Add(time.Hour)) {
		t.Errorf("NewToken = %q, %v, %v; want 43 characters expiring in an hour", secret, expires, err)
	}
}

// TestEnrollExistsUntilRevoked checks that a name is issued once: the same
// key gets its certificate again, another key is refused until revocation.
func TestEnrollExistsUntilRevoked(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	token := f.token(t, "", false)
	_, csrA := newCSR(t, "web-01")
	_, csrB := newCSR(t, "web-01")

	first, err := f.ca.Enroll(ctx, "web-01", csrA, token, "")
	if err != nil || first.State != ca.StateIssued {
		t.Fatalf("Enroll = %+v, %v; want issued", first, err)
	}
	if _, err := f.ca.Enroll(ctx, "web-01", csrB, token, ""); !errors.Is(err, ca.ErrExists) {
		t.Fatalf("Enroll with another key = %v, want ErrExists", err)
	}
	if _, err := f.ca.Enroll(ctx, "web-01", csrB, "", ""); !errors.Is(err, ca.ErrExists) {
		t.Fatalf("Enroll with another key and no token = %v, want ErrExists", err)
	}
	again, err := f.ca.Enroll(ctx, "web-01", csrA, "", "")
	if err != nil || again.State != ca.StateIssued || again.Cert.Serial != first.Cert.Serial {
		t.Fatalf("Enroll with the same key = %+v, %v; want the first certificate", again, err)
	}

	if err := f.ca.Revoke(ctx, "web-01"); err != nil {
		t.Fatal(err)
	}
	next, err := f.ca.Enroll(ctx, "web-01", csrB, token, "")
	if err != nil || next.State != ca.StateIssued || next.Cert.Serial == first.Cert.Serial {
		t.Fatalf("Enroll after Revoke = %+v, %v; want a new certificate", next, err)
	}
	if !f.ca.IsRevoked(first.Cert.Serial) || f.ca.IsRevoked(next.Cert.Serial) {
		t.Error("IsRevoked: want the first certificate revoked and the second not")
	}
	// The revoked key cannot come back as the holder of the name.
	if _, err := f.ca.Enroll(ctx, "web-01", csrA, token, ""); !errors.Is(err, ca.ErrExists) {
		t.Errorf("Enroll with the revoked key = %v, want ErrExists", err)
	}
}

func TestPendingThenSign(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	pubA, csrA := newCSR(t, "db-01")
	pubB, csrB := newCSR(t, "db-01")
	fpA, _ := ca.Fingerprint(pubA)
	fpB, _ := ca.Fingerprint(pubB)

	pendingOf := func() ca.Listed {
		t.Helper()
		list, err := f.ca.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != 1 || list[0].State != ca.StatePending {
			t.Fatalf("List = %+v, want one pending request", list)
		}
		return list[0]
	}

	res, err := f.ca.Enroll(ctx, "db-01", csrA, "", "192.0.2.1:4000")
	if err != nil || res.State != ca.StatePending {
		t.Fatalf("Enroll = %+v, %v; want pending", res, err)
	}
	first := pendingOf()
	if first.Fingerprint != fpA {
		t.Errorf("pending fingerprint = %s, want %s", first.Fingerprint, fpA)
	}
	f.clock.Add(time.Minute)
	if res, err := f.ca.Enroll(ctx, "db-01", csrA, "", ""); err != nil || res.State != ca.StatePending {
		t.Fatalf("Enroll again = %+v, %v; want pending", res, err)
	}
	if got := pendingOf(); !got.Time.Equal(first.Time) {
		t.Errorf("same key asking again rewrote the request (time %v, was %v)", got.Time, first.Time)
	}
	// The first request holds the name: another key (the attacker) is
	// refused and the request stays the first one's.
	if _, err := f.ca.Enroll(ctx, "db-01", csrB, "", "203.0.113.9:5555"); !errors.Is(err, ca.ErrPendingOther) {
		t.Fatalf("Enroll with another key = %v; want ErrPendingOther", err)
	}
	if got := pendingOf(); got.Fingerprint != fpA || got.Source != "192.0.2.1:4000" {
		t.Errorf("another key changed the request: fingerprint %s source %s, want %s from 192.0.2.1:4000", got.Fingerprint, got.Source, fpA)
	}
	// Signing names the key the operator compared.
	if _, err := f.ca.Sign(ctx, "db-01", fpB); !errors.Is(err, ca.ErrFingerprint) {
		t.Fatalf("Sign with the other key's fingerprint = %v, want ErrFingerprint", err)
	}
	cert, err := f.ca.Sign(ctx, "db-01", strings.ToUpper(strings.TrimPrefix(fpA, "sha256:")))
	if err != nil {
		t.Fatalf("Sign = %v", err)
	}
	x := mustParse(t, cert.DER)
	if !pubA.(*ecdsa.PublicKey).Equal(x.PublicKey) {
		t.Error("Sign issued for a key other than the first request's")
	}
	if err := f.verify(x, x509.ExtKeyUsageClientAuth); err != nil {
		t.Errorf("signed certificate does not verify: %v", err)
	}
	if _, err := f.ca.Sign(ctx, "db-01", ""); !errors.Is(err, ca.ErrNotFound) {
		t.Errorf("Sign with nothing pending = %v, want ErrNotFound", err)
	}
	// The node asks again and gets what the operator signed.
	if res, err := f.ca.Enroll(ctx, "db-01", csrA, "", ""); err != nil || res.State != ca.StateIssued || res.Cert.Serial != cert.Serial {
		t.Errorf("Enroll after Sign = %+v, %v; want the signed certificate", res, err)
	}
	if _, err := f.ca.Enroll(ctx, "db-01", csrB, "", ""); !errors.Is(err, ca.ErrExists) {
		t.Errorf("Enroll with the other key after Sign = %v, want ErrExists", err)
	}

	// A stale request beside an issued certificate is not signed.
	if err := f.st.PutPending(ctx, ca.Pending{Name: "db-01", CSR: csrB, Requested: f.clock.Now()}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.ca.Sign(ctx, "db-01", ""); !errors.Is(err, ca.ErrExists) {
		t.Errorf("Sign beside an issued certificate = %v, want ErrExists", err)
	}
	if _, err := f.ca.Sign(ctx, "../db", ""); !errors.Is(err, ca.ErrInvalidName) {
		t.Errorf("Sign(../db) = %v, want ErrInvalidName", err)
	}
}

// TestRejectAndExpiry: a squatted name is freed by `herd ca reject` or by
// the request expiring, and the real node's key may then ask.
func TestRejectAndExpiry(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	_, attacker := newCSR(t, "web-01")
	_, node := newCSR(t, "web-01")
	if _, err := f.ca.Enroll(ctx, "web-01", attacker, "", "203.0.113.9:1"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.ca.Enroll(ctx, "web-01", node, "", "192.0.2.1:1"); !errors.Is(err, ca.ErrPendingOther) {
		t.Fatalf("Enroll of the real node while squatted = %v, want ErrPendingOther", err)
	}
	if err := f.ca.Reject(ctx, "web-01"); err != nil {
		t.Fatalf("Reject = %v", err)
	}
	if err := f.ca.Reject(ctx, "web-01"); !errors.Is(err, ca.ErrNotFound) {
		t.Errorf("Reject again = %v, want ErrNotFound", err)
	}
	if res, err := f.ca.Enroll(ctx, "web-01", node, "", "192.0.2.1:1"); err != nil || res.State != ca.StatePending {
		t.Fatalf("Enroll after Reject = %+v, %v; want pending", res, err)
	}
	// Past the TTL the request no longer holds the name nor can be signed.
	f.clock.Add(8 * 24 * time.Hour)
	if _, err := f.ca.Sign(ctx, "web-01", ""); !errors.Is(err, ca.ErrNotFound) {
		t.Errorf("Sign of an expired request = %v, want ErrNotFound", err)
	}
	if res, err := f.ca.Enroll(ctx, "web-01", attacker, "", "203.0.113.9:1"); err != nil || res.State != ca.StatePending {
		t.Errorf("Enroll after expiry = %+v, %v; want pending", res, err)
	}
}

// TestPendingCap: past MaxPending new requests are refused until expired
// ones are dropped; asking again for a held name still answers pending.
func TestPendingCap(t *testing.T) {
	t.Parallel()
	st, clk := ca.NewMemStore(), newClock()
	c, err := ca.Open(context.Background(), t.TempDir(), st, ca.Options{Now: clk.Now, Log: testLog(t), MaxPending: 3, PendingTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	csrs := map[string][]byte{}
	for i := range 3 {
		name := fmt.Sprintf("n-%d", i)
		_, csrs[name] = newCSR(t, name)
		if _, err := c.Enroll(ctx, name, csrs[name], "", ""); err != nil {
			t.Fatal(err)
		}
	}
	_, extra := newCSR(t, "n-3")
	if _, err := c.Enroll(ctx, "n-3", extra, "", ""); !errors.Is(err, ca.ErrTooMany) {
		t.Fatalf("Enroll past the cap = %v, want ErrTooMany", err)
	}
	if res, err := c.Enroll(ctx, "n-0", csrs["n-0"], "", ""); err != nil || res.State != ca.StatePending {
		t.Errorf("Enroll again of a held name at the cap = %+v, %v; want pending", res, err)
	}
	clk.Add(2 * time.Hour)
	if res, err := c.Enroll(ctx, "n-3", extra, "", ""); err != nil || res.State != ca.StatePending {
		t.Fatalf("Enroll after the others expired = %+v, %v; want pending", res, err)
	}
	if n, _ := st.CountPending(ctx); n != 1 {
		t.Errorf("%d pending after expiry pruning, want 1", n)
	}
}

// TestRenewAndExpiry: a node renews over its identity with no operator
// step; the old certificate stays valid until it expires, a lost answer
// is given again, a stale serial is refused, a revocation covers both,
// and a node whose certificate expired enrolls again with a token.
func TestRenewAndExpiry(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	res, pub, err := f.enroll(t, "web-01", f.token(t, "", false))
	if err != nil {
		t.Fatal(err)
	}
	leaf := mustParse(t, res.Cert.DER)
	caller, err := f.ca.VerifyClient(ctx, []*x509.Certificate{leaf})
	if err != nil {
		t.Fatal(err)
	}
	f.clock.Add(21 * 24 * time.Hour)
	renewed, err := f.ca.Renew(ctx, caller, pub)
	if err != nil {
		t.Fatalf("Renew = %v", err)
	}
	if renewed.Supersedes != caller.Serial || !renewed.NotAfter.After(res.Cert.NotAfter) {
		t.Errorf("Renew = %+v; want a later certificate superseding %s", renewed, caller.Serial)
	}
	if again, err := f.ca.Renew(ctx, caller, pub); err != nil || again.Serial != renewed.Serial {
		t.Errorf("Renew again with the old certificate = %v, %v; want the same renewal", again.Serial, err)
	}
	if _, err := f.ca.VerifyClient(ctx, []*x509.Certificate{leaf}); err != nil {
		t.Errorf("the superseded certificate before its expiry: %v", err)
	}
	newLeaf := mustParse(t, renewed.DER)
	newCaller, err := f.ca.VerifyClient(ctx, []*x509.Certificate{newLeaf})
	if err != nil {
		t.Fatal(err)
	}
	// An old serial cannot renew once a newer certificate was renewed.
	if _, err := f.ca.Renew(ctx, newCaller, pub); err != nil {
		t.Fatal(err)
	}
	if _, err := f.ca.Renew(ctx, caller, pub); !errors.Is(err, ca.ErrExists) {
		t.Errorf("Renew with a twice-superseded certificate = %v, want ErrExists", err)
	}
	if err := f.ca.Revoke(ctx, "web-01"); err != nil {
		t.Fatal(err)
	}
	if !f.ca.IsRevoked(caller.Serial) || !f.ca.IsRevoked(newCaller.Serial) {
		t.Error("Revoke left a superseded, still valid certificate unrevoked")
	}

	// Offline past expiry: the name is free for a token enrollment.
	res, pub, err = f.enroll(t, "db-01", f.token(t, "", false))
	if err != nil {
		t.Fatal(err)
	}
	f.clock.Add(31 * 24 * time.Hour)
	if _, err := f.ca.Renew(ctx, ca.Caller{Name: "db-01", Serial: res.Cert.Serial}, pub); err == nil {
		t.Error("Renew of an expired certificate succeeded")
	}
	again, _, err := f.enroll(t, "db-01", f.token(t, "", false))
	if err != nil || again.State != ca.StateIssued {
		t.Fatalf("Enroll after expiry = %+v, %v; want issued", again, err)
	}
}

func TestTokenIssuesPending(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	_, csr := newCSR(t, "web-01")
	if res, err := f.ca.Enroll(ctx, "web-01", csr, "", ""); err != nil || res.State != ca.StatePending {
		t.Fatalf("Enroll = %+v, %v; want pending", res, err)
	}
	if res, err := f.ca.Enroll(ctx, "web-01", csr, f.token(t, "web-*", true), ""); err != nil || res.State != ca.StateIssued {
		t.Fatalf("Enroll with a token = %+v, %v; want issued", res, err)
	}
	if _, ok, _ := f.st.Pending(ctx, "web-01"); ok {
		t.Error("request still pending after a token issued it")
	}
}

func TestCheckName(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("a", 300)
	label64 := strings.Repeat("a", 64)
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"web-01", true},
		{"web-01.example.com", true},
		{"a", true},
		{"db_1", true},
		{"0web", true},
		{strings.Repeat("a", 63) + ".example", true},
		{"", false},
		{"../x", false},
		{"a/b", false},
		{`a\b`, false},
		{"*", false},
		{"web-*", false},
		{"web-?", false},
		{"web-[0]", false},
		{".", false},
		{"..", false},
		{"a..b", false},
		{".web", false},
		{"web.", false},
		{"a\x00", false},
		{"a\nb", false},
		{"a\x7f", false},
		{long, false},
		{label64 + ".example", false},
		{" spaced", false},
		{"UPPER ok?", false},
		{"Web-01", false},
		{"-web", false},
		{"web-", false},
		{"web-.example", false},
		{"127.0.0.1", false},
		{"::1", false},
		{"wéb", false},
		{"web 01", false},
	} {
		err := ca.CheckName(tc.name)
		if (err == nil) != tc.ok {
			t.Errorf("CheckName(%q) = %v, want ok %v", tc.name, err, tc.ok)
		}
		if err != nil && (!errors.Is(err, ca.ErrInvalidName) || !errors.Is(err, ca.ErrInvalid) || errors.Is(err, ca.ErrInvalidCSR)) {
			t.Errorf("CheckName(%q) = %v, want ErrInvalidName", tc.name, err)
		}
	}

	// Enroll applies it before anything else, and stores nothing.
	f := newFixture(t)
	_, csr := newCSR(t, "web-01")
	for _, name := range []string{"", "../x", "*", "Web-01", long} {
		if _, err := f.ca.Enroll(context.Background(), name, csr, f.token(t, "", false), ""); !errors.Is(err, ca.ErrInvalidName) {
			t.Errorf("Enroll(%q) = %v, want ErrInvalidName", name, err)
		}
	}
	if list, _ := f.ca.List(context.Background()); len(list) != 0 {
		t.Errorf("bad names left records: %+v", list)
	}
}

func TestEnrollRefusesRequests(t *testing.T) {
	t.Parallel()
	request := func(key any) []byte {
		t.Helper()
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "web-01"}}, key)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	_, good := newCSR(t, "web-01")
	broken := append([]byte(nil), good...)
	broken[len(broken)-1] ^= 0xff // in the signature
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name string
		csr  []byte
		ok   bool
	}{
		{"good", good, true},
		{"ed25519", request(edKey), true},
		{"broken signature", broken, false},
		{"empty", nil, false},
		{"garbage", []byte("not a request"), false},
		{"truncated", good[:len(good)/2], false},
		{"trailing data", append(append([]byte(nil), good...), 0), false},
		{"a certificate", newFixture(t).mustIssue(t, "web-01").Raw, false},
		{"RSA", request(rsaKey), false},
		{"P-224", request(p224), false},
		{"huge", append(append([]byte(nil), good...), make([]byte, 16<<10)...), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			res, err := f.ca.Enroll(context.Background(), "web-01", tc.csr, f.token(t, "", false), "")
			if tc.ok {
				if err != nil || res.State != ca.StateIssued {
					t.Errorf("Enroll = %+v, %v; want issued", res, err)
				}
				return
			}
			if !errors.Is(err, ca.ErrInvalidCSR) || !errors.Is(err, ca.ErrInvalid) {
				t.Errorf("Enroll = %+v, %v; want ErrInvalidCSR", res, err)
			}
		})
	}
}
