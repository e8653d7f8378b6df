package agent

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"
)

func TestRenewDue(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	end := start.Add(30 * 24 * time.Hour)
	for _, tc := range []struct {
		at   time.Duration
		want bool
	}{
		{0, false},
		{19 * 24 * time.Hour, false},
		{20*24*time.Hour - time.Second, false},
		{20 * 24 * time.Hour, true},
		{29 * 24 * time.Hour, true},
		{31 * 24 * time.Hour, true},
	} {
		if got := renewDue(start, end, start.Add(tc.at)); got != tc.want {
			t.Errorf("renewDue(30 days, at %v) = %v, want %v", tc.at, got, tc.want)
		}
	}
	if renewDue(end, start, end) {
		t.Error("renewDue of a certificate with no life = true")
	}
}

// rootCA makes a self-signed CA certificate.
func rootCA(t testing.TB, name string) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestRenewedBundle: a Renew answer's CA bundle may add the CA a
// rotation made and drop the one that retired, but must keep a CA the
// node trusts and hold only CAs.
func TestRenewedBundle(t *testing.T) {
	t.Parallel()
	oldCA, newCA, otherCA := rootCA(t, "old"), rootCA(t, "new"), rootCA(t, "other")
	pool := func(cs ...*x509.Certificate) *x509.CertPool {
		p := x509.NewCertPool()
		for _, c := range cs {
			p.AddCert(c)
		}
		return p
	}
	der := func(cs ...*x509.Certificate) []byte {
		var b []byte
		for _, c := range cs {
			b = append(b, c.Raw...)
		}
		return b
	}
	for _, tc := range []struct {
		name        string
		roots       *x509.CertPool
		answer      []byte
		wantChanged bool
		wantErr     bool
		want        *x509.CertPool
	}{
		{name: "no bundle (an older server)", roots: pool(oldCA), answer: nil, want: pool(oldCA)},
		{name: "the same bundle", roots: pool(oldCA), answer: der(oldCA), want: pool(oldCA)},
		{name: "rotation adds the new CA", roots: pool(oldCA), answer: der(newCA, oldCA), wantChanged: true, want: pool(newCA, oldCA)},
		{name: "retirement drops the old CA", roots: pool(newCA, oldCA), answer: der(newCA), wantChanged: true, want: pool(newCA)},
		{name: "a wholly other CA", roots: pool(oldCA), answer: der(otherCA), wantErr: true},
		{name: "garbage", roots: pool(oldCA), answer: []byte("garbage"), wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, changed, err := renewedBundle(tc.answer, tc.roots)
			if (err != nil) != tc.wantErr || changed != tc.wantChanged {
				t.Fatalf("renewedBundle = changed %v, %v; want changed %v, error %v", changed, err, tc.wantChanged, tc.wantErr)
			}
			if err == nil && !got.pool.Equal(tc.want) {
				t.Errorf("renewedBundle gave another pool than the one wanted")
			}
			if changed && bytes.Count(got.pem, []byte("BEGIN CERTIFICATE")) != len(mustCerts(t, tc.answer)) {
				t.Errorf("renewedBundle's PEM does not hold every CA of the answer")
			}
		})
	}
}

func mustCerts(t *testing.T, der []byte) []*x509.Certificate {
	t.Helper()
	cs, err := x509.ParseCertificates(der)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// FuzzRenewedBundle: the CA bundle of a Renew answer comes from the
// network; whatever it holds, renewedBundle never panics, and a bundle it
// takes holds only CAs, among them one the node already trusted.
func FuzzRenewedBundle(f *testing.F) {
	oldCA, newCA := rootCA(f, "old"), rootCA(f, "new")
	roots := x509.NewCertPool()
	roots.AddCert(oldCA)
	for _, seed := range [][]byte{nil, oldCA.Raw, append(append([]byte{}, newCA.Raw...), oldCA.Raw...), newCA.Raw, []byte("garbage"), oldCA.Raw[:len(oldCA.Raw)/2]} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, der []byte) {
		b, changed, err := renewedBundle(der, roots)
		if err != nil || !changed {
			return
		}
		cas, perr := x509.ParseCertificates(der)
		if perr != nil {
			t.Fatalf("renewedBundle took a bundle that does not parse: %v", perr)
		}
		kept := false
		for _, c := range cas {
			if !c.IsCA {
				t.Fatalf("renewedBundle took a bundle holding %q, not a CA", c.Subject.CommonName)
			}
			kept = kept || c.Equal(oldCA)
		}
		if !kept || !bytes.Contains(b.pem, []byte("BEGIN CERTIFICATE")) {
			t.Fatal("renewedBundle took a bundle without the CA the node trusted")
		}
	})
}
