package ca_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/herdcm/herd/server/ca"
)

// states lists the CAs' states in order, and their dependents.
func states(t *testing.T, c *ca.CA) []string {
	t.Helper()
	list, err := c.Authorities(context.Background())
	if err != nil {
		t.Fatalf("Authorities() = %v", err)
	}
	var out []string
	for _, a := range list {
		out = append(out, fmt.Sprintf("%s:%d", a.State, a.Dependents))
	}
	return out
}

// bundle parses BundleDER.
func bundle(t *testing.T, c *ca.CA) []*x509.Certificate {
	t.Helper()
	certs, err := x509.ParseCertificates(c.BundleDER())
	if err != nil {
		t.Fatalf("BundleDER does not parse: %v", err)
	}
	return certs
}

// TestRotateThenRetire: after Rotate the new CA issues everything, the
// old one stays trusted and issues the server's certificate while a valid
// certificate depends on it, and Retire retires it (key deleted,
// certificate kept) only once none does; all of it survives a restart.
func TestRotateThenRetire(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	oldCA := mustParse(t, f.ca.CACertDER())
	res, pub, err := f.enroll(t, "web-01", f.token(t, "", true))
	if err != nil {
		t.Fatal(err)
	}
	before := mustParse(t, res.Cert.DER)
	if _, _, err := f.ca.IssueAdmin(ctx, "ops"); err != nil {
		t.Fatal(err)
	}

	cur, retiring, err := f.ca.Rotate(ctx)
	if err != nil {
		t.Fatalf("Rotate() = %v", err)
	}
	newCA := mustParse(t, f.ca.CACertDER())
	if bytes.Equal(newCA.Raw, oldCA.Raw) || cur.Fingerprint != ca.CertFingerprint(newCA) || retiring.Fingerprint != ca.CertFingerprint(oldCA) {
		t.Fatalf("Rotate() = %+v, %+v; want the new CA current and %s retiring", cur, retiring, oldCA.Subject.CommonName)
	}
	if retiring.Dependents != 2 {
		t.Errorf("Rotate(): the retiring CA has %d dependents, want 2 (web-01, ops)", retiring.Dependents)
	}
	if _, _, err := f.ca.Rotate(ctx); !errors.Is(err, ca.ErrRotation) {
		t.Errorf("Rotate() during the overlap = %v, want ErrRotation", err)
	}
	if got := bundle(t, f.ca); len(got) != 2 || !got[0].Equal(oldCA) || !got[1].Equal(newCA) {
		t.Errorf("BundleDER during the overlap holds %d certificates, want the old CA (the server's issuer) then the new", len(got))
	}

	// The overlap: a certificate from the old CA still verifies; new
	// ones, renewals included, come from the new CA.
	caller, err := f.ca.VerifyClient(ctx, []*x509.Certificate{before})
	if err != nil {
		t.Fatalf("VerifyClient(certificate from the old CA) during the overlap = %v", err)
	}
	renewed, err := f.ca.Renew(ctx, caller, pub)
	if err != nil {
		t.Fatal(err)
	}
	for name, der := range map[string][]byte{"renewal": renewed.DER, "enrollment": f.mustIssue(t, "web-02").Raw} {
		if err := mustParse(t, der).CheckSignatureFrom(newCA); err != nil {
			t.Errorf("%s after Rotate is not from the new CA: %v", name, err)
		}
	}
	if _, err := f.ca.VerifyClient(ctx, []*x509.Certificate{mustParse(t, renewed.DER)}); err != nil {
		t.Errorf("VerifyClient(renewed certificate) = %v", err)
	}
	serverIssuer := func(c *ca.CA) *x509.Certificate {
		t.Helper()
		sc, err := c.ServerCert(nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(sc.Certificate) != 2 {
			t.Fatalf("ServerCert chain has %d certificates, want the leaf and its CA", len(sc.Certificate))
		}
		issuer := mustParse(t, sc.Certificate[1])
		if err := sc.Leaf.CheckSignatureFrom(issuer); err != nil {
			t.Fatalf("ServerCert's leaf is not from the CA sent with it: %v", err)
		}
		return issuer
	}
	if !serverIssuer(f.ca).Equal(oldCA) {
		t.Error("during the overlap the server's certificate is not from the old CA, which agents that did not renew trust")
	}

	// web-01's superseded certificate and ops still depend on the old CA.
	if retired, err := f.ca.Retire(ctx); err != nil || retired {
		t.Fatalf("Retire() with dependents = %v, %v; want false", retired, err)
	}
	again := f.open(t)
	if diff := cmp.Diff([]string{"current:2", "retiring:2"}, states(t, again)); diff != "" {
		t.Errorf("after a restart during the overlap (-want +got):\n%s", diff)
	}
	if err := f.ca.Revoke(ctx, "ops"); err != nil {
		t.Fatal(err)
	}
	if retired, err := f.ca.Retire(ctx); err != nil || retired {
		t.Fatalf("Retire() with web-01's superseded certificate valid = %v, %v; want false", retired, err)
	}
	f.clock.Add(30*24*time.Hour + time.Minute) // web-01's first certificate expires
	f.mustIssue(t, "web-03")                   // a dependent of the new CA
	if retired, err := f.ca.Retire(ctx); err != nil || !retired {
		t.Fatalf("Retire() with no dependents = %v, %v; want true", retired, err)
	}
	if _, err := os.Stat(filepath.Join(f.dir, "ca-old.key")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the retired CA's key is still there: %v", err)
	}
	kept, _ := filepath.Glob(filepath.Join(f.dir, "retired", "*.crt"))
	if len(kept) != 1 {
		t.Fatalf("retired/ holds %v, want the retired CA's certificate", kept)
	}
	if b, _ := os.ReadFile(kept[0]); !bytes.Contains(b, []byte("CERTIFICATE")) {
		t.Errorf("%s is not a certificate", kept[0])
	}
	if got := bundle(t, f.ca); len(got) != 1 || !got[0].Equal(newCA) {
		t.Errorf("BundleDER after retirement holds %d certificates, want the new CA alone", len(got))
	}
	if !serverIssuer(f.ca).Equal(newCA) {
		t.Error("after retirement the server's certificate is not from the new CA")
	}
	// A certificate from the retired CA no longer verifies, whatever its dates.
	old := f.ca.Pool()
	if _, err := before.Verify(x509.VerifyOptions{Roots: old, CurrentTime: before.NotBefore.Add(time.Minute)}); err == nil {
		t.Error("the pool still trusts the retired CA")
	}
	for _, c := range []*ca.CA{f.ca, f.open(t)} {
		if diff := cmp.Diff([]string{"current:1", "retired:0"}, states(t, c)); diff != "" {
			t.Errorf("after retirement (-want +got):\n%s", diff)
		}
	}
	if _, _, err := f.ca.Rotate(ctx); err != nil {
		t.Errorf("Rotate() after the previous CA retired = %v", err)
	}
}

// TestRotateIsRefusedForAGivenCA: Herd never writes a CA it was given.
func TestRotateIsRefusedForAGivenCA(t *testing.T) {
	t.Parallel()
	given := newFixture(t)
	c, err := ca.Open(context.Background(), t.TempDir(), ca.NewMemStore(), ca.Options{
		CertFile: filepath.Join(given.dir, "ca.crt"), KeyFile: filepath.Join(given.dir, "ca.key"), Log: testLog(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Rotate(context.Background()); !errors.Is(err, ca.ErrRotation) {
		t.Errorf("Rotate() of a given CA = %v, want ErrRotation", err)
	}
}

// TestOpenFinishesAnInterruptedRotation: whichever step of Rotate or
// Retire a crash cut short, Open makes the files say one thing.
func TestOpenFinishesAnInterruptedRotation(t *testing.T) {
	t.Parallel()
	link := func(t *testing.T, dir, from, to string) {
		t.Helper()
		if err := os.Link(filepath.Join(dir, from), filepath.Join(dir, to)); err != nil {
			t.Fatal(err)
		}
	}
	rename := func(t *testing.T, dir, from, to string) {
		t.Helper()
		if err := os.Rename(filepath.Join(dir, from), filepath.Join(dir, to)); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name string
		// crash leaves dir as a crash would, with next a new CA's files.
		crash       func(t *testing.T, dir, next string)
		wantRotated bool
		wantStates  []string
	}{
		{
			name: "new key written, certificate not",
			crash: func(t *testing.T, dir, next string) {
				copyFile(t, filepath.Join(next, "ca.key"), filepath.Join(dir, "ca-next.key"))
			},
			wantStates: []string{"current:1"},
		},
		{
			name: "new CA whole, not moved",
			crash: func(t *testing.T, dir, next string) {
				copyFile(t, filepath.Join(next, "ca.key"), filepath.Join(dir, "ca-next.key"))
				copyFile(t, filepath.Join(next, "ca.crt"), filepath.Join(dir, "ca-next.crt"))
			},
			wantRotated: true,
			wantStates:  []string{"current:0", "retiring:1"},
		},
		{
			name: "old CA linked, new key moved",
			crash: func(t *testing.T, dir, next string) {
				copyFile(t, filepath.Join(next, "ca.key"), filepath.Join(dir, "ca-next.key"))
				copyFile(t, filepath.Join(next, "ca.crt"), filepath.Join(dir, "ca-next.crt"))
				link(t, dir, "ca.key", "ca-old.key")
				link(t, dir, "ca.crt", "ca-old.crt")
				rename(t, dir, "ca-next.key", "ca.key")
			},
			wantRotated: true,
			wantStates:  []string{"current:0", "retiring:1"},
		},
		{
			name: "retiring CA's key deleted, certificate not kept yet",
			crash: func(t *testing.T, dir, next string) {
				copyFile(t, filepath.Join(next, "ca.key"), filepath.Join(dir, "ca-next.key"))
				copyFile(t, filepath.Join(next, "ca.crt"), filepath.Join(dir, "ca-next.crt"))
				link(t, dir, "ca.crt", "ca-old.crt")
				rename(t, dir, "ca-next.key", "ca.key")
				rename(t, dir, "ca-next.crt", "ca.crt")
			},
			wantRotated: true,
			wantStates:  []string{"current:0", "retired:0"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			next := newFixture(t)
			before, nextCA := f.ca.CACertDER(), next.ca.CACertDER()
			f.mustIssue(t, "db-01") // keeps the old CA from retiring at Open
			tc.crash(t, f.dir, next.dir)
			c := f.open(t)
			want := before
			if tc.wantRotated {
				want = nextCA
			}
			if !bytes.Equal(c.CACertDER(), want) {
				t.Errorf("after Open the current CA is not the %s one", map[bool]string{true: "new", false: "old"}[tc.wantRotated])
			}
			if diff := cmp.Diff(tc.wantStates, states(t, c)); diff != "" {
				t.Errorf("states after Open (-want +got):\n%s", diff)
			}
			left, _ := filepath.Glob(filepath.Join(f.dir, "ca-next.*"))
			if len(left) != 0 {
				t.Errorf("Open left %v", left)
			}
			// What the reopened CA issues verifies with its pool.
			cert := (&fixture{ca: c, st: f.st, clock: f.clock, dir: f.dir}).mustIssue(t, "web-01")
			if _, err := c.VerifyClient(context.Background(), []*x509.Certificate{cert}); err != nil {
				t.Errorf("VerifyClient(new certificate) = %v", err)
			}
		})
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestListPage: paging through ListPage, at any page size, gives what
// List gives, a name with several certificates spanning pages; a token
// that is not one is refused.
func TestListPage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	for _, name := range []string{"db-01", "web-01", "web-02"} {
		f.mustIssue(t, name)
	}
	// web-01 gets more records: renewed twice.
	res, pub, err := f.enroll(t, "app-01", f.token(t, "", true))
	if err != nil {
		t.Fatal(err)
	}
	leaf := mustParse(t, res.Cert.DER)
	for range 2 {
		caller, err := f.ca.VerifyClient(ctx, []*x509.Certificate{leaf})
		if err != nil {
			t.Fatal(err)
		}
		next, err := f.ca.Renew(ctx, caller, pub)
		if err != nil {
			t.Fatal(err)
		}
		leaf = mustParse(t, next.DER)
	}
	if _, err := f.ca.Enroll(ctx, "zz-pending", mustCSR(t, "zz-pending"), "", "192.0.2.1:1234"); err != nil {
		t.Fatal(err)
	}
	all, err := f.ca.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 7 {
		t.Fatalf("List() has %d entries, want 7", len(all))
	}
	for size := 1; size <= 8; size++ {
		var got []ca.Listed
		token, pages := "", 0
		for {
			page, next, err := f.ca.ListPage(ctx, token, size)
			if err != nil {
				t.Fatalf("ListPage(%q, %d) = %v", token, size, err)
			}
			if len(page) > size {
				t.Fatalf("ListPage(%q, %d) gave %d entries", token, size, len(page))
			}
			got = append(got, page...)
			if pages++; next == "" || pages > 20 {
				break
			}
			token = next
		}
		if diff := cmp.Diff(all, got); diff != "" {
			t.Errorf("paging by %d (-List +pages):\n%s", size, diff)
		}
	}
	for _, bad := range []string{"x", "0:web-01", "-1:web-01", "01:web-01", "1:", "1:Web 01\n", "99999999999999999999:a"} {
		if _, _, err := f.ca.ListPage(ctx, bad, 2); !errors.Is(err, ca.ErrInvalid) {
			t.Errorf("ListPage(%q) = %v, want ErrInvalid", bad, err)
		}
	}
}

func mustCSR(t *testing.T, name string) []byte {
	t.Helper()
	_, csr := newCSR(t, name)
	return csr
}
