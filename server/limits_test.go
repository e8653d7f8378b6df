package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/herdcm/herd/api/herdv1"
)

// startWith runs a server with opts changed by set.
func startWith(t *testing.T, set func(*Options)) *Server {
	t.Helper()
	site := t.TempDir()
	writeFiles(t, site, testSite)
	opts := testOptions(t, site, t.TempDir())
	set(&opts)
	s, err := New(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// rawTLS opens a TLS connection without a client certificate, as an
// attacker would, trusting the server's CA.
func rawTLS(t *testing.T, s *Server) *tls.Conn {
	t.Helper()
	c, err := tls.Dial("tcp", s.Addr, &tls.Config{RootCAs: s.ca.Pool(), ServerName: "localhost", MinVersion: tls.VersionTLS13, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// h2Call starts a gRPC call by hand on c: the preface, settings, the
// request headers, and a DATA frame whose gRPC prefix announces announce
// bytes of which it carries only send. It does not end the stream.
func h2Call(t *testing.T, c net.Conn, method string, announce, send int) *http2.Framer {
	t.Helper()
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(c, c)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{{":method", "POST"}, {":scheme", "https"}, {":path", method}, {":authority", "localhost"},
		{"content-type", "application/grpc"}, {"te", "trailers"}} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	msg := make([]byte, 5+send)
	binary.BigEndian.PutUint32(msg[1:5], uint32(announce))
	if err := fr.WriteData(1, false, msg); err != nil {
		t.Fatal(err)
	}
	return fr
}

// awaitStreamEnd reads frames until stream 1 ends (trailers with a
// grpc-status, a reset) or the connection closes, and returns the
// grpc-status seen ("" for a reset or a close).
func awaitStreamEnd(t *testing.T, c net.Conn, fr *http2.Framer, within time.Duration) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(within))
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("the stream was still open after %s", within)
			}
			return "" // the connection closed
		}
		switch f := f.(type) {
		case *http2.MetaHeadersFrame:
			if v := f.PseudoValue("status"); v != "" && v != "200" {
				return "http " + v
			}
			for _, h := range f.RegularFields() {
				if h.Name == "grpc-status" {
					return h.Value
				}
			}
		case *http2.RSTStreamFrame:
			return ""
		case *http2.GoAwayFrame:
			return ""
		}
	}
}

// TestUnauthenticatedMessagesAreSmall: without a client certificate a
// message is refused from its announced size, before its bytes are read,
// while a node sends a large one on its own connection.
func TestUnauthenticatedMessagesAreSmall(t *testing.T) {
	t.Parallel()
	s := startWith(t, func(o *Options) {})
	c := rawTLS(t, s)
	fr := h2Call(t, c, herdv1.Enroll_Enroll_FullMethodName, 8<<20, 16)
	if got := awaitStreamEnd(t, c, fr, 10*time.Second); got != fmt.Sprint(int(codes.ResourceExhausted)) {
		t.Errorf("an 8 MiB Enroll without a certificate ended with grpc-status %q, want %d (RESOURCE_EXHAUSTED)", got, codes.ResourceExhausted)
	}
	// Through a real gRPC client too.
	big := bytes.Repeat([]byte{1}, 1<<20)
	_, err := herdv1.NewEnrollClient(dial(t, s, nil)).Enroll(context.Background(), &herdv1.EnrollRequest{Name: "x", CsrDer: big})
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("a 1 MiB Enroll = %v, want RESOURCE_EXHAUSTED", err)
	}
	// A node's connection keeps the large limit.
	cert := enroll(t, s, "a-01")
	nc := herdv1.NewNodeClient(dial(t, s, &cert))
	checkin(t, nc, map[string]any{}, "")
	_, err = nc.SendReport(context.Background(), &herdv1.SendReportRequest{Report: &herdv1.Report{RunId: "r1",
		Events: []*herdv1.Event{{Id: "exec:x", Type: "exec", Status: "failed", Output: strings.Repeat("o", 2<<20)}}}})
	if err != nil {
		t.Errorf("a 2 MiB report from a node = %v, want it stored", err)
	}
}

// TestStalledUnauthenticatedCallEnds: a client that announces a message
// and stalls is cut off after AnonymousTimeout.
func TestStalledUnauthenticatedCallEnds(t *testing.T) {
	t.Parallel()
	s := startWith(t, func(o *Options) { o.AnonymousTimeout = 300 * time.Millisecond })
	c := rawTLS(t, s)
	fr := h2Call(t, c, herdv1.Enroll_Enroll_FullMethodName, 60<<10, 100)
	got := awaitStreamEnd(t, c, fr, 15*time.Second)
	if got != "" && got != fmt.Sprint(int(codes.DeadlineExceeded)) && got != fmt.Sprint(int(codes.Canceled)) {
		t.Errorf("a stalled Enroll ended with grpc-status %q, want DEADLINE_EXCEEDED or a reset", got)
	}
}

// TestConnectionLimits: connections past MaxConnections are closed at
// once, anonymous ones past MaxAnonymousConnections after the handshake,
// and idle ones after IdleTimeout; a node still gets through.
func TestConnectionLimits(t *testing.T) {
	t.Parallel()
	s := startWith(t, func(o *Options) {
		o.MaxConnections = 6
		o.MaxAnonymousConnections = 2
		o.IdleTimeout = 500 * time.Millisecond
	})
	closed := func(c net.Conn) bool {
		t.Helper()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err := c.Read(make([]byte, 1))
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return false
		}
		return err != nil
	}
	// Two anonymous connections are kept (for a while), a third closed.
	a1, a2 := rawTLS(t, s), rawTLS(t, s)
	for _, c := range []*tls.Conn{a1, a2} {
		io.WriteString(c, http2.ClientPreface)
		http2.NewFramer(c, c).WriteSettings()
		// The client's handshake may end before the server's: the
		// server's first frame says it counted this connection, so that
		// the third is the one past the cap.
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := http2.NewFramer(io.Discard, c).ReadFrame(); err != nil {
			t.Fatalf("an anonymous connection within the cap: %v", err)
		}
	}
	a3 := rawTLS(t, s)
	if !closed(a3) {
		t.Error("a third anonymous connection stayed open past MaxAnonymousConnections = 2")
	}
	// Idle: the first two go after IdleTimeout (and the anonymous cap
	// of 30s at most), with a GOAWAY then a close.
	for _, c := range []*tls.Conn{a1, a2} {
		fr := http2.NewFramer(io.Discard, c)
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		for {
			if _, err := fr.ReadFrame(); err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					t.Fatal("an idle connection was still open after 10s")
				}
				break
			}
		}
	}
	// A node gets through while anonymous connections are refused.
	cert := enroll(t, s, "a-01")
	checkin(t, herdv1.NewNodeClient(dial(t, s, &cert)), map[string]any{}, "")
	// Plain TCP connections fill the total; the next is closed at once.
	var held []net.Conn
	for range 8 {
		c, err := net.Dial("tcp", s.Addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		held = append(held, c)
	}
	refused := 0
	for _, c := range held {
		c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); err == io.EOF {
			refused++
		}
	}
	if refused < 2 {
		t.Errorf("%d of 8 connections past MaxConnections = 6 were closed at once, want at least 2", refused)
	}
}

// TestWatchStreamsPerNodeAreBounded: a node's Watch streams past
// MaxWatchesPerNode end its oldest.
func TestWatchStreamsPerNodeAreBounded(t *testing.T) {
	t.Parallel()
	s := startWith(t, func(o *Options) { o.MaxWatchesPerNode = 2 })
	cert := enroll(t, s, "a-01")
	nc := herdv1.NewNodeClient(dial(t, s, &cert))
	resp := checkin(t, nc, map[string]any{}, "")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var streams []herdv1.Node_WatchClient
	for i := range 3 {
		st, err := nc.Watch(ctx, &herdv1.WatchRequest{Etag: resp.Etag})
		if err != nil {
			t.Fatal(err)
		}
		streams = append(streams, st)
		// Wait until the server holds it, so that the order is known.
		for n := 0; ; n++ {
			s.watch.mu.Lock()
			held := len(s.watch.m["a-01"])
			s.watch.mu.Unlock()
			if held == min(i+1, 2) && (i < 2 || metricsWatchersSettled(s, 2)) {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("the server holds %d streams, want %d", held, min(i+1, 2))
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	if _, err := streams[0].Recv(); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("the oldest stream past the bound: Recv() = %v, want RESOURCE_EXHAUSTED", err)
	}
	if n := s.metricsWatchers(); n != 2 {
		t.Errorf("open Watch streams = %d, want 2", n)
	}
}

func metricsWatchersSettled(s *Server, want int) bool { return s.metricsWatchers() == want }

// TestReceiveTimeout: on a node's connection a request that stalls is cut
// after ReceiveTimeout, while a Watch stream, its request in, lives on.
func TestReceiveTimeout(t *testing.T) {
	t.Parallel()
	s := startWith(t, func(o *Options) { o.ReceiveTimeout = 300 * time.Millisecond })
	cert := enroll(t, s, "a-01")
	nc := herdv1.NewNodeClient(dial(t, s, &cert))
	resp := checkin(t, nc, map[string]any{}, "")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	watch, err := nc.Watch(ctx, &herdv1.WatchRequest{Etag: resp.Etag})
	if err != nil {
		t.Fatal(err)
	}

	c, err := tls.Dial("tcp", s.Addr, &tls.Config{RootCAs: s.ca.Pool(), ServerName: "localhost", MinVersion: tls.VersionTLS13,
		NextProtos: []string{"h2"}, Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fr := h2Call(t, c, herdv1.Node_SendReport_FullMethodName, 8<<20, 1000)
	start := time.Now()
	got := awaitStreamEnd(t, c, fr, 15*time.Second)
	if got != "" && got != fmt.Sprint(int(codes.DeadlineExceeded)) && got != fmt.Sprint(int(codes.Canceled)) {
		t.Errorf("a stalled SendReport ended with grpc-status %q, want DEADLINE_EXCEEDED, CANCELLED or a reset", got)
	}
	// The Watch stream outlived the timeout: a site change still reaches it.
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Fatalf("the stalled call ended after %s, before the timeout", d)
	}
	s.compiles.mu.Lock()
	delete(s.compiles.catalogs, "a-01")
	s.compiles.mu.Unlock()
	s.watch.notify("a-01", "sha256:new", "v2", false)
	ev, err := watch.Recv()
	if err != nil || ev.Etag != "sha256:new" {
		t.Errorf("Watch after the receive timeout = %v, %v; want the new etag", ev, err)
	}
}
