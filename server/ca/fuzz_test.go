package ca_test

import (
	"context"
	"crypto"
	"crypto/x509"
	"strconv"
	"strings"
	"testing"

	"github.com/herdcm/herd/catalogs"
	"github.com/herdcm/herd/server/ca"
)

// FuzzEnrollName enrolls any name: no panic, and whatever is issued is
// a valid node name, safe in a path and a glob, and what NodeName reads
// back from the certificate.
func FuzzEnrollName(f *testing.F) {
	for _, s := range []string{"web-01", "", "../x", "a/b", "*", ".", "..", "a\x00", "Web-01", "127.0.0.1", "web-01.example.com", "x-", "é", strings.Repeat("a", 254)} {
		f.Add(s)
	}
	fx := newFixture(f)
	token := fx.token(f, "", false)
	_, csr := newCSR(f, "web-01")
	f.Fuzz(func(t *testing.T, name string) {
		res, err := fx.ca.Enroll(context.Background(), name, csr, token, "")
		if err != nil {
			return
		}
		if err := catalogs.ValidNodeName(name); err != nil {
			t.Fatalf("Enroll(%q) issued a name ValidNodeName refuses: %v", name, err)
		}
		if strings.ContainsAny(name, "/*\x00") {
			t.Fatalf("Enroll(%q) issued a name with '/', '*' or NUL", name)
		}
		cert, err := x509.ParseCertificate(res.Cert.DER)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := ca.NodeName(cert); got != name || err != nil {
			t.Fatalf("NodeName of the certificate for %q = %q, %v", name, got, err)
		}
	})
}

// FuzzParseCSR enrolls arbitrary bytes as a request: no panic, and an
// issued certificate is for the request's key.
func FuzzParseCSR(f *testing.F) {
	_, good := newCSR(f, "web-01")
	for _, s := range [][]byte{good, good[:len(good)-1], nil, {0x30, 0x80}, {0x30, 0x82, 0xff, 0xff}} {
		f.Add(s)
	}
	fx := newFixture(f)
	token := fx.token(f, "", false)
	f.Fuzz(func(t *testing.T, der []byte) {
		res, err := fx.ca.Enroll(context.Background(), "web-01", der, token, "")
		if err != nil {
			return
		}
		csr, err := x509.ParseCertificateRequest(der)
		if err != nil {
			t.Fatalf("Enroll accepted a request x509 cannot parse: %v", err)
		}
		cert, err := x509.ParseCertificate(res.Cert.DER)
		if err != nil {
			t.Fatal(err)
		}
		if !cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(csr.PublicKey) {
			t.Fatal("certificate is not for the request's key")
		}
	})
}

// FuzzMatchName: a token pattern never lets a name with more labels than
// it has through, and a '*' never matches a dot.
func FuzzMatchName(f *testing.F) {
	for _, s := range [][2]string{{"web-*", "web-01"}, {"web-*", "web-01.evil.example"}, {"web-*.*", "web-1.a"}, {"", "x"}, {"[", "x"}, {"*", "."}, {"a.*", "a."}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, name string) {
		if !ca.MatchName(pattern, name) || pattern == "" {
			return
		}
		if strings.Count(pattern, ".") != strings.Count(name, ".") {
			t.Fatalf("MatchName(%q, %q) with a different number of labels", pattern, name)
		}
	})
}

// FuzzAdminCalls: the operator calls that take a name, a fingerprint or a
// token id (Sign, Reject, RevokeToken) take any bytes without panicking,
// never sign for a fingerprint other than the request's, and a token
// survives every id but its own.
func FuzzAdminCalls(f *testing.F) {
	for _, s := range []string{"web-01", "", "sha256:", "../x", "0123456789abcdef", "ZZZZZZZZZZZZZZZZ", "\x00", strings.Repeat("f", 64)} {
		f.Add(s, s)
	}
	fx := newFixture(f)
	ctx := context.Background()
	secret := fx.token(f, "", false)
	id := ca.TokenID(secret)
	f.Fuzz(func(t *testing.T, name, arg string) {
		pub, csr := newCSR(t, "web-01")
		fp, _ := ca.Fingerprint(pub)
		if _, err := fx.ca.Enroll(ctx, "web-01", csr, "", ""); err != nil {
			return // held by an earlier iteration's request
		}
		if _, err := fx.ca.Sign(ctx, "web-01", arg); err == nil {
			if arg != "" && !strings.EqualFold(strings.ReplaceAll(strings.TrimPrefix(strings.ToLower(strings.TrimSpace(arg)), "sha256:"), ":", ""), strings.TrimPrefix(fp, "sha256:")) {
				t.Fatalf("Sign with fingerprint %q signed a request for %s", arg, fp)
			}
			if err := fx.ca.Revoke(ctx, "web-01"); err != nil {
				t.Fatal(err)
			}
		} else {
			_ = fx.ca.Reject(ctx, "web-01")
		}
		_ = fx.ca.Reject(ctx, name)
		if err := fx.ca.RevokeToken(ctx, arg); err == nil && !strings.EqualFold(strings.TrimSpace(arg), id) {
			t.Fatalf("RevokeToken(%q) revoked token %s", arg, id)
		}
	})
}

// FuzzIssueAdminFor: the Local socket's entry point takes any name and
// bytes; what it issues is an admin certificate for the request's key.
func FuzzIssueAdminFor(f *testing.F) {
	_, good := newCSR(f, "ops")
	for _, s := range []string{"ops", "", "../x", "Ops", "a*"} {
		f.Add(s, good)
		f.Add(s, good[:len(good)/2])
	}
	fx := newFixture(f)
	f.Fuzz(func(t *testing.T, name string, der []byte) {
		cert, err := fx.ca.IssueAdminFor(context.Background(), name, der)
		if err != nil {
			return
		}
		x, err := x509.ParseCertificate(cert.DER)
		if err != nil {
			t.Fatal(err)
		}
		csr, err := x509.ParseCertificateRequest(der)
		if err != nil || !x.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(csr.PublicKey) {
			t.Fatalf("IssueAdminFor(%q) issued for a key not the request's (%v)", name, err)
		}
		if got, err := ca.AdminName(x); got != name || err != nil {
			t.Fatalf("AdminName = %q, %v; want %q", got, err, name)
		}
		if err := fx.ca.Revoke(context.Background(), name); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzParsePageToken: a page token comes from a client; whatever it
// holds, parsing returns an error or a valid name and a positive count,
// and a token it accepts is the one ListPage would make.
func FuzzParsePageToken(f *testing.F) {
	for _, s := range []string{"", "1:web-01", "3:db-01.example", "0:web-01", "1:", ":", "x:y", "-1:a", "1:a:b", "01:a", "1:\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, token string) {
		name, n, err := ca.ParsePageToken(token)
		if err != nil || token == "" {
			return
		}
		if n <= 0 || ca.CheckName(name) != nil {
			t.Fatalf("ParsePageToken(%q) = %q, %d: want an error", token, name, n)
		}
		if again := strconv.Itoa(n) + ":" + name; again != token {
			t.Fatalf("ParsePageToken(%q) = %q, %d, which encode as %q", token, name, n, again)
		}
	})
}
