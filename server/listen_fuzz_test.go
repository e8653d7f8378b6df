package server

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"log/slog"
	"math/big"
	"net"
	"testing"
	"time"
)

// FuzzConnRouter feeds the connection router, the first code an
// unauthenticated client reaches, whatever bytes a client could send in
// place of a TLS handshake: route always returns, closes the connection
// and gives its slot back, and never routes it on.
func FuzzConnRouter(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"))
	f.Add([]byte{0x16, 0x03, 0x01, 0x00, 0x05, 0x01, 0x00, 0x00, 0x01, 0x00})
	f.Add([]byte{0x16, 0x03, 0x03, 0xff, 0xff})
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"localhost"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		f.Fatal(err)
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		ClientAuth: tls.VerifyClientCertIfGiven, NextProtos: []string{"h2"}}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	lis.Close()
	f.Fuzz(func(t *testing.T, b []byte) {
		r := newConnRouter(lis, conf, 10, 10, 200*time.Millisecond, slog.New(slog.DiscardHandler), newMetrics())
		r.open.Close()
		r.authed.Close()
		client, server := net.Pipe()
		r.conns.Add(1) // as serve counts it
		done := make(chan struct{})
		go func() {
			r.route(context.Background(), server)
			close(done)
		}()
		go func() {
			client.SetWriteDeadline(time.Now().Add(time.Second))
			client.Write(b)
			client.Close()
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("route did not return")
		}
		if n, a := r.conns.Load(), r.anon.Load(); n != 0 || a != 0 {
			t.Fatalf("after a failed handshake %d connections and %d anonymous ones are counted, want 0", n, a)
		}
	})
}
