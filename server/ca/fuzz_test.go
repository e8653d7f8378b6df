package ca_test

import (
	"context"
	"crypto"
	"crypto/x509"
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
		res, err := fx.ca.Enroll(context.Background(), name, csr, token)
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
		res, err := fx.ca.Enroll(context.Background(), "web-01", der, token)
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
