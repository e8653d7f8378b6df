package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/herdcm/herd/api/herdv1"
	"github.com/herdcm/herd/catalogs"
	"github.com/herdcm/herd/facts"
)

// testLog routes a component's logs to t.Log.
func testLog(t *testing.T) *slog.Logger {
	t.Helper()
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// waitFor polls cond until it holds or the deadline passes. The deadline
// only bounds a hang; the outcome is cond's.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// testCA is a certificate authority made for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

var serial struct {
	sync.Mutex
	n int64
}

func nextSerial() *big.Int {
	serial.Lock()
	defer serial.Unlock()
	serial.n++
	return big.NewInt(serial.n)
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: nextSerial(), Subject: pkix.Name{CommonName: "herd test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key}
}

func (ca *testCA) issue(pub any, tmpl *x509.Certificate) ([]byte, error) {
	tmpl.SerialNumber = nextSerial()
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour)
	return x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
}

// serverCert is a server certificate for 127.0.0.1, sent with the CA in
// its chain (as the real server does, so that a fingerprint can be pinned).
func (ca *testCA) serverCert(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := ca.issue(&key.PublicKey, &x509.Certificate{
		Subject: pkix.Name{CommonName: "herd server"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der, ca.cert.Raw}, PrivateKey: key}
}

// signCSR issues a client certificate for name, taking only the key from
// the request, as the real CA does.
func (ca *testCA) signCSR(csrDER []byte, name string) ([]byte, error) {
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, err
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, err
	}
	return ca.issue(csr.PublicKey, &x509.Certificate{
		Subject: pkix.Name{CommonName: name}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
}

// fakeServer implements the Enroll and Node services over real mutual TLS
// on 127.0.0.1, and records what agents did.
type fakeServer struct {
	herdv1.UnimplementedEnrollServer
	herdv1.UnimplementedNodeServer

	t       *testing.T
	ca      *testCA
	signKey ed25519.PrivateKey
	addr    string
	srv     *grpc.Server
	served  chan struct{}

	mu sync.Mutex
	// Enroll.
	token       string
	approved    map[string]bool
	enrollCalls int
	pending     int
	csrKeys     []string // the public keys of the requests, in order
	returnCA    *testCA  // a different CA to return (a lying server)
	// Node.
	catalog, sig  []byte
	etag, version string
	files         map[string][]byte
	corruptFiles  bool
	knownFacts    map[string]bool
	checkins      []checkinRecord
	getFiles      int
	exhaust       int            // fail this many more Node calls with RESOURCE_EXHAUSTED
	revoked       bool           // refuse check-ins as the server refuses a revoked certificate
	receipts      map[string]int // run id → times received
	stored        []string       // run ids, in the order first received
	last          *herdv1.Report
	watchers      map[chan *herdv1.WatchEvent]bool
	nextCheckin   time.Time
	rehearsal     *herdv1.Rehearsal // sent with every answer but NEED_FACTS
	reports       []*herdv1.Report  // every report stored, in order
	reportDelay   time.Duration     // SendReport answers after this long (a slow server)
	// SendReports: a server older than it answers UNIMPLEMENTED.
	batches     bool
	batchCalls  int                              // SendReports calls answered
	dropAcks    int                              // store this many more batches, then answer UNAVAILABLE (a lost answer)
	refuseBatch map[string]*herdv1.RefusedReport // run id → refusal, in place of storing it
}

type checkinRecord struct {
	node      string
	digest    string
	factsSent bool
	etag      string
	answer    herdv1.CheckinResponse_Status
}

func newFakeServer(t *testing.T) *fakeServer {
	t.Helper()
	_, sk, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	fs := &fakeServer{
		t: t, ca: newTestCA(t), signKey: sk, token: "join-me", approved: map[string]bool{},
		files: map[string][]byte{}, knownFacts: map[string]bool{}, receipts: map[string]int{},
		watchers: map[chan *herdv1.WatchEvent]bool{},
	}
	fs.start()
	t.Cleanup(fs.stop)
	return fs
}

// start serves on a fresh port the first time, and on the same address
// after a stop (the server coming back).
func (fs *fakeServer) start() {
	fs.t.Helper()
	addr := fs.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	var lis net.Listener
	var err error
	for range 100 {
		if lis, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond) // the old socket may linger a moment
	}
	if err != nil {
		fs.t.Fatal(err)
	}
	fs.addr = lis.Addr().String()
	pool := x509.NewCertPool()
	pool.AddCert(fs.ca.cert)
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{fs.ca.serverCert(fs.t)},
		// Enroll has no client certificate yet; Node calls check it.
		ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: pool,
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(cfg)))
	herdv1.RegisterEnrollServer(srv, fs)
	herdv1.RegisterNodeServer(srv, fs)
	fs.mu.Lock()
	fs.srv = srv
	fs.served = make(chan struct{})
	served := fs.served
	fs.mu.Unlock()
	go func() {
		defer close(served)
		_ = srv.Serve(lis)
	}()
}

// stop takes the server away: the listener closes and every connection
// drops.
func (fs *fakeServer) stop() {
	fs.mu.Lock()
	srv, served := fs.srv, fs.served
	fs.srv = nil
	fs.mu.Unlock()
	if srv != nil {
		srv.Stop()
		<-served
	}
}

func (fs *fakeServer) caFingerprint() string {
	sum := sha256Sum(fs.ca.cert.Raw)
	return "sha256:" + sum
}

func (fs *fakeServer) Enroll(_ context.Context, req *herdv1.EnrollRequest) (*herdv1.EnrollResponse, error) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.enrollCalls++
	csr, err := x509.ParseCertificateRequest(req.CsrDer)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	pub, _ := x509.MarshalPKIXPublicKey(csr.PublicKey)
	fs.csrKeys = append(fs.csrKeys, string(pub))
	if req.JoinToken != fs.token && !fs.approved[req.Name] {
		fs.pending++
		return &herdv1.EnrollResponse{Status: herdv1.EnrollResponse_PENDING, RetryAfterMs: 5}, nil
	}
	der, err := fs.ca.signCSR(req.CsrDer, req.Name)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	ca := fs.ca
	if fs.returnCA != nil {
		ca = fs.returnCA
	}
	return &herdv1.EnrollResponse{
		Status: herdv1.EnrollResponse_ISSUED, CertificateDer: der, CaCertificateDer: ca.cert.Raw,
		SigningPublicKey: fs.signKey.Public().(ed25519.PublicKey),
	}, nil
}

// peerNode is the caller's name, from its verified certificate only.
func peerNode(ctx context.Context) (string, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return "", status.Error(codes.Unauthenticated, "no peer")
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.VerifiedChains) == 0 {
		return "", status.Error(codes.Unauthenticated, "a client certificate is required")
	}
	return ti.State.VerifiedChains[0][0].Subject.CommonName, nil
}

// overloaded fails a call the way an overloaded server does: with
// RESOURCE_EXHAUSTED and a retry hint in the trailer.
func (fs *fakeServer) overloaded(ctx context.Context) error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.exhaust == 0 {
		return nil
	}
	fs.exhaust--
	_ = grpc.SetTrailer(ctx, metadata.Pairs(RetryAfterKey, "1234"))
	return status.Error(codes.ResourceExhausted, "server busy")
}

func (fs *fakeServer) Checkin(ctx context.Context, req *herdv1.CheckinRequest) (*herdv1.CheckinResponse, error) {
	node, err := peerNode(ctx)
	if err != nil {
		return nil, err
	}
	if err := fs.overloaded(ctx); err != nil {
		return nil, err
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.revoked {
		return nil, status.Error(codes.Unauthenticated, "certificate revoked: \"web-01\": an operator revoked this certificate")
	}
	rec := checkinRecord{node: node, digest: req.FactsDigest, factsSent: len(req.FactsJson) > 0, etag: req.CatalogEtag}
	resp := &herdv1.CheckinResponse{}
	if !fs.nextCheckin.IsZero() {
		resp.NextCheckinUnixMs = fs.nextCheckin.UnixMilli()
	}
	switch {
	case len(req.FactsJson) > 0 && catalogs.Digest(req.FactsJson) != req.FactsDigest:
		return nil, status.Error(codes.InvalidArgument, "facts_digest is not the digest of facts_json")
	case len(req.FactsJson) > 0:
		fs.knownFacts[req.FactsDigest] = true
	}
	switch {
	case !fs.knownFacts[req.FactsDigest]:
		resp.Status = herdv1.CheckinResponse_NEED_FACTS
	case fs.etag == "":
		resp.Status = herdv1.CheckinResponse_NO_CATALOG
	case req.CatalogEtag == fs.etag:
		resp.Status = herdv1.CheckinResponse_UNCHANGED
	default:
		resp.Status = herdv1.CheckinResponse_NEW_CATALOG
		resp.Catalog, resp.Signature, resp.Etag = fs.catalog, fs.sig, fs.etag
	}
	if resp.Status != herdv1.CheckinResponse_NEED_FACTS {
		resp.Rehearsal = fs.rehearsal
	}
	rec.answer = resp.Status
	fs.checkins = append(fs.checkins, rec)
	return resp, nil
}

func (fs *fakeServer) GetFile(req *herdv1.GetFileRequest, stream grpc.ServerStreamingServer[herdv1.FileChunk]) error {
	if _, err := peerNode(stream.Context()); err != nil {
		return err
	}
	fs.mu.Lock()
	fs.getFiles++
	b, ok := fs.files[req.Digest]
	corrupt := fs.corruptFiles
	fs.mu.Unlock()
	if !ok {
		return status.Error(codes.NotFound, "no such file in your catalog")
	}
	if corrupt {
		b = append([]byte(nil), b...)
		b[0] ^= 0xff
	}
	// Small chunks, so that reassembly is exercised.
	for len(b) > 0 {
		n := min(len(b), 7)
		if err := stream.Send(&herdv1.FileChunk{Data: b[:n]}); err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

func (fs *fakeServer) SendReport(ctx context.Context, req *herdv1.SendReportRequest) (*herdv1.SendReportResponse, error) {
	if _, err := peerNode(ctx); err != nil {
		return nil, err
	}
	fs.mu.Lock()
	delay := fs.reportDelay
	fs.mu.Unlock()
	time.Sleep(delay)
	fs.mu.Lock()
	defer fs.mu.Unlock()
	id := req.Report.GetRunId()
	fs.receipts[id]++
	if fs.receipts[id] > 1 {
		return &herdv1.SendReportResponse{Duplicate: true}, nil
	}
	fs.stored = append(fs.stored, id)
	fs.last = req.Report
	fs.reports = append(fs.reports, req.Report)
	return &herdv1.SendReportResponse{}, nil
}

func (fs *fakeServer) SendReports(ctx context.Context, req *herdv1.SendReportsRequest) (*herdv1.SendReportsResponse, error) {
	if _, err := peerNode(ctx); err != nil {
		return nil, err
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if !fs.batches {
		return nil, status.Error(codes.Unimplemented, "unknown method SendReports for service herd.v1.Node")
	}
	fs.batchCalls++
	resp := &herdv1.SendReportsResponse{}
	for _, r := range req.Reports {
		id := r.GetRunId()
		if rr := fs.refuseBatch[id]; rr != nil {
			resp.Refused = append(resp.Refused, rr)
			continue
		}
		fs.receipts[id]++
		resp.AckedRunIds = append(resp.AckedRunIds, id)
		if fs.receipts[id] > 1 {
			resp.DuplicateRunIds = append(resp.DuplicateRunIds, id)
			continue
		}
		fs.stored = append(fs.stored, id)
		fs.last = r
		fs.reports = append(fs.reports, r)
	}
	if fs.dropAcks > 0 {
		fs.dropAcks--
		return nil, status.Error(codes.Unavailable, "the answer was lost")
	}
	return resp, nil
}

func (fs *fakeServer) Watch(req *herdv1.WatchRequest, stream grpc.ServerStreamingServer[herdv1.WatchEvent]) error {
	if _, err := peerNode(stream.Context()); err != nil {
		return err
	}
	ch := make(chan *herdv1.WatchEvent, 1)
	fs.mu.Lock()
	fs.watchers[ch] = true
	if fs.etag != "" && fs.etag != req.Etag {
		ch <- &herdv1.WatchEvent{Etag: fs.etag, Version: fs.version}
	}
	fs.mu.Unlock()
	defer func() {
		fs.mu.Lock()
		delete(fs.watchers, ch)
		fs.mu.Unlock()
	}()
	for {
		select {
		case <-stream.Context().Done():
			return nil
		case ev := <-ch:
			if err := stream.Send(ev); err != nil {
				return err
			}
		}
	}
}

// publish makes cat the node's catalog, signed by the server's key (or
// by another when badSig), ships files, and tells the watchers (the
// latest event only, as the real server does).
func (fs *fakeServer) publish(cat *catalogs.Catalog, files map[string][]byte, badSig bool) string {
	fs.t.Helper()
	b, err := cat.Encode()
	if err != nil {
		fs.t.Fatal(err)
	}
	key := fs.signKey
	if badSig {
		_, key, _ = ed25519.GenerateKey(rand.Reader)
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.catalog, fs.sig, fs.etag, fs.version = b, ed25519.Sign(key, b), catalogs.Digest(b), cat.Version
	for d, c := range files {
		fs.files[d] = c
	}
	for ch := range fs.watchers {
		select {
		case <-ch:
		default:
		}
		ch <- &herdv1.WatchEvent{Etag: fs.etag, Version: fs.version}
	}
	return fs.etag
}

// rehearse asks the node to rehearse cat (signed by the server's key, or
// by another when badSig) from its next check-in on, and ships files;
// mangle, when set, changes the rehearsal before it is served (a lying
// server). It returns the rehearsal's etag.
func (fs *fakeServer) rehearse(cat *catalogs.Catalog, files map[string][]byte, badSig bool, mangle func(*herdv1.Rehearsal)) string {
	fs.t.Helper()
	b, err := cat.Encode()
	if err != nil {
		fs.t.Fatal(err)
	}
	key := fs.signKey
	if badSig {
		_, key, _ = ed25519.GenerateKey(rand.Reader)
	}
	reh := &herdv1.Rehearsal{Catalog: b, Signature: ed25519.Sign(key, b), Etag: catalogs.Digest(b), Version: cat.Version}
	if mangle != nil {
		mangle(reh)
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.rehearsal = reh
	for d, c := range files {
		fs.files[d] = c
	}
	return reh.Etag
}

// sendWatch sends ev on every open Watch stream (replacing an event not
// yet sent).
func (fs *fakeServer) sendWatch(ev *herdv1.WatchEvent) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	for ch := range fs.watchers {
		select {
		case <-ch:
		default:
		}
		ch <- ev
	}
}

// watching says how many Watch streams are open.
func (fs *fakeServer) watching() int {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return len(fs.watchers)
}

// reportsOf returns the reports stored whose catalog digest is etag.
func (fs *fakeServer) reportsOf(etag string) []*herdv1.Report {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	var out []*herdv1.Report
	for _, r := range fs.reports {
		if r.CatalogDigest == etag {
			out = append(out, r)
		}
	}
	return out
}

func (fs *fakeServer) checkinLog() []checkinRecord {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return slices.Clone(fs.checkins)
}

func (fs *fakeServer) storedIDs() []string {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return slices.Clone(fs.stored)
}

func (fs *fakeServer) lastReport() *herdv1.Report {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.last
}

func TestRetryAfter(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		in   []string
		want time.Duration
	}{
		{nil, 0},
		{[]string{"1500"}, 1500 * time.Millisecond},
		{[]string{" 20 "}, 20 * time.Millisecond},
		{[]string{"0"}, 0},
		{[]string{"-5"}, 0},
		{[]string{"soon"}, 0},
		{[]string{"1e3"}, 0},
		{[]string{"86400001"}, 0}, // more than a day: ignored, never obeyed
		{[]string{"10", "20"}, 10 * time.Millisecond},
	} {
		md := metadata.MD{}
		if tt.in != nil {
			md[RetryAfterKey] = tt.in
		}
		if got := retryAfter(md); got != tt.want {
			t.Errorf("retryAfter(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
	err := rpcError("checking in", status.Error(codes.ResourceExhausted, "busy"), metadata.Pairs(RetryAfterKey, "250"))
	if got := retryHint(fmt.Errorf("run: %w", err)); got != 250*time.Millisecond {
		t.Errorf("retryHint through a wrapped error = %v, want 250ms", got)
	}
	var re *RPCError
	if !errors.As(err, &re) || re.Code() != codes.ResourceExhausted {
		t.Errorf("rpcError code = %v, want ResourceExhausted", err)
	}
}

// TestFactsPayload: the volatile facts are left out, so that the digest
// of the same host is the same from one run to the next, and the digest is
// that of exactly the bytes sent.
func TestFactsPayload(t *testing.T) {
	t.Parallel()
	mk := func(uptime, avail int64) facts.Facts {
		return facts.Facts{
			"os":     map[string]any{"family": "debian"},
			"uptime": map[string]any{"seconds": uptime, "boot_time": "2026-01-01T00:00:00Z"},
			"memory": map[string]any{"total_bytes": int64(1 << 30), "available_bytes": avail, "swap_free_bytes": avail},
			"mounts": map[string]any{"/": map[string]any{"fstype": "ext4", "available_bytes": avail, "used_bytes": avail, "size_bytes": int64(100)}},
		}
	}
	b1, d1, err := factsPayload(mk(10, 1000))
	if err != nil {
		t.Fatal(err)
	}
	b2, d2, err := factsPayload(mk(99, 5))
	if err != nil {
		t.Fatal(err)
	}
	if d1 != d2 || string(b1) != string(b2) {
		t.Errorf("facts differing only in volatile values give %s and %s", d1, d2)
	}
	if d1 != catalogs.Digest(b1) {
		t.Errorf("digest %s is not the digest of the payload", d1)
	}
	var got map[string]any
	if err := json.Unmarshal(b1, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"os":     map[string]any{"family": "debian"},
		"uptime": map[string]any{"boot_time": "2026-01-01T00:00:00Z"},
		"memory": map[string]any{"total_bytes": float64(1 << 30)},
		"mounts": map[string]any{"/": map[string]any{"fstype": "ext4", "size_bytes": float64(100)}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("payload (-want +got):\n%s", diff)
	}
	_, d3, _ := factsPayload(facts.Facts{"os": map[string]any{"family": "redhat"}})
	if d3 == d1 {
		t.Error("different facts give the same digest")
	}
}

// TestFetchFileVerifies: a file from the server enters the cache only with
// the digest and size the catalog names.
func TestFetchFileVerifies(t *testing.T) {
	t.Parallel()
	fs := newFakeServer(t)
	a := newTestAgent(t, fs)
	content := []byte("listen 8080\nworkers 4\n")
	d := catalogs.Digest(content)
	fs.publish(testCatalog("web-01", "v1"), map[string][]byte{d: content}, false)
	cache := fileCache{dir: t.TempDir()}
	cat := &catalogs.Catalog{Files: []catalogs.FileRef{{Digest: d, Path: "files/app.conf", Size: int64(len(content))}}}

	fs.mu.Lock()
	fs.corruptFiles = true
	fs.mu.Unlock()
	err := fetchFiles(context.Background(), a.d.node, cache, cat)
	if err == nil || !strings.Contains(err.Error(), "got content") {
		t.Fatalf("fetching a corrupt file: err = %v, want a digest mismatch", err)
	}
	if cache.has(d) {
		t.Fatal("a corrupt file entered the cache")
	}

	// A size the stream exceeds is refused as soon as it is exceeded.
	short := &catalogs.Catalog{Files: []catalogs.FileRef{{Digest: d, Path: "files/app.conf", Size: 3}}}
	fs.mu.Lock()
	fs.corruptFiles = false
	fs.mu.Unlock()
	if err := fetchFiles(context.Background(), a.d.node, cache, short); !errors.Is(err, errTooLong) {
		t.Fatalf("fetching more than the catalog's size: err = %v, want errTooLong", err)
	}

	if err := fetchFiles(context.Background(), a.d.node, cache, cat); err != nil {
		t.Fatal(err)
	}
	rc, err := cache.files(cat)(context.Background(), d)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || string(got) != string(content) {
		t.Fatalf("cached content = %q, %v; want %q", got, err, content)
	}
	fs.mu.Lock()
	calls := fs.getFiles
	fs.mu.Unlock()
	if err := fetchFiles(context.Background(), a.d.node, cache, cat); err != nil {
		t.Fatal(err)
	}
	fs.mu.Lock()
	again := fs.getFiles
	fs.mu.Unlock()
	if again != calls {
		t.Errorf("a cached file was fetched again (%d GetFile calls, then %d)", calls, again)
	}
	if _, err := cache.files(cat)(context.Background(), catalogs.Digest([]byte("other"))); err == nil {
		t.Error("the cache served a digest the catalog does not ship")
	}
}

// TestRPCOverloadHint: RESOURCE_EXHAUSTED with the retry-after-ms trailer
// reaches the schedule as a floor for the next attempt.
func TestRPCOverloadHint(t *testing.T) {
	t.Parallel()
	fs := newFakeServer(t)
	a := newTestAgent(t, fs)
	fs.mu.Lock()
	fs.exhaust = 1
	fs.mu.Unlock()
	_, out := a.d.cycle(context.Background(), TriggerManual)
	if out.checkinErr == nil {
		t.Fatal("check-in against an overloaded server succeeded")
	}
	if got := retryHint(out.checkinErr); got != 1234*time.Millisecond {
		t.Errorf("retry hint = %v, want 1.234s (err %v)", got, out.checkinErr)
	}
	st := ScheduleState{LastRun: time.Unix(0, 0), Failures: 1, RetryAfter: retryHint(out.checkinErr)}
	sched := Schedule{MinBackoff: time.Millisecond}
	if next := sched.Next(time.Unix(0, 0), st); next.Before(time.Unix(0, 0).Add(1234 * time.Millisecond)) {
		t.Errorf("next attempt at %v, sooner than the server's hint", next)
	}
}

func sha256Sum(b []byte) string {
	return strings.TrimPrefix(catalogs.Digest(b), "sha256:")
}
