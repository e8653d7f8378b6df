package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/herdcm/herd/api/herdv1"
	"github.com/herdcm/herd/catalogs"
	"github.com/herdcm/herd/server/ca"
)

// testSite is a small site whose nodes get one file each and share a
// static file, so that GetFile has something to guard.
var testSite = map[string]string{
	"nodes.toml": "[[node]]\nroles = [\"r\"]\n",
	"roles/r.toml": `
[[file]]
path = "/etc/motd"
content = "hello {{ .node }}\n"

[[file]]
path = "/etc/shared"
source = "shared.txt"

[[file]]
path = "/etc/only-{{ .node }}"
source = "{{ .node }}.txt"
when = "node == 'a-01'"
`,
	"files/shared.txt": "shared\n",
	"files/a-01.txt":   "secret of a-01\n",
}

func writeFiles(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// startServer runs a real server on 127.0.0.1 with real TLS and a sqlite
// store in t.TempDir().
func startServer(t *testing.T) (*Server, string) {
	t.Helper()
	site := t.TempDir()
	writeFiles(t, site, testSite)
	s, err := New(context.Background(), Options{
		Site: site, Dir: t.TempDir(), Listen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0", Debounce: 50 * time.Millisecond,
		Log: slog.New(slog.NewTextHandler(testLog{t}, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, site
}

// enroll gets a node certificate for name with a join token.
func enroll(t *testing.T, s *Server, name string) tls.Certificate {
	t.Helper()
	ctx := context.Background()
	secret, _, err := s.ca.NewToken(ctx, "", time.Hour, false)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, csr, err := ca.NewKeyAndCSR(name)
	if err != nil {
		t.Fatal(err)
	}
	conn := dial(t, s, nil)
	resp, err := herdv1.NewEnrollClient(conn).Enroll(ctx, &herdv1.EnrollRequest{Name: name, CsrDer: csr, JoinToken: secret})
	if err != nil {
		t.Fatalf("Enroll(%s): %v", name, err)
	}
	if resp.Status != herdv1.EnrollResponse_ISSUED {
		t.Fatalf("Enroll(%s) = %v, want ISSUED", name, resp.Status)
	}
	cert, err := tls.X509KeyPair(ca.CertPEM(resp.CertificateDer), keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func admin(t testing.TB, s *Server) tls.Certificate {
	t.Helper()
	certPEM, keyPEM, err := s.ca.IssueAdmin(context.Background(), "ops")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// dial connects with a client certificate (none when cert is nil),
// trusting the server's CA.
func dial(t *testing.T, s *Server, cert *tls.Certificate) *grpc.ClientConn {
	t.Helper()
	conf := &tls.Config{RootCAs: s.ca.Pool(), ServerName: "localhost", MinVersion: tls.VersionTLS13}
	if cert != nil {
		conf.Certificates = []tls.Certificate{*cert}
	}
	conn, err := grpc.NewClient(s.Addr, grpc.WithTransportCredentials(credentials.NewTLS(conf)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func factsJSON(t *testing.T, f map[string]any) ([]byte, string) {
	t.Helper()
	b, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return b, "sha256:" + hex.EncodeToString(sum[:])
}

func checkin(t *testing.T, c herdv1.NodeClient, f map[string]any, etag string) *herdv1.CheckinResponse {
	t.Helper()
	b, d := factsJSON(t, f)
	resp, err := c.Checkin(context.Background(), &herdv1.CheckinRequest{FactsDigest: d, FactsJson: b, CatalogEtag: etag})
	if err != nil {
		t.Fatalf("Checkin: %v", err)
	}
	return resp
}

func TestCheckinGivesASignedCatalog(t *testing.T) {
	t.Parallel()
	s, _ := startServer(t)
	cert := enroll(t, s, "a-01")
	c := herdv1.NewNodeClient(dial(t, s, &cert))
	ctx := context.Background()

	// Facts by digest alone, before the server knows them: it asks.
	_, d := factsJSON(t, map[string]any{"os": map[string]any{"family": "debian"}})
	resp, err := c.Checkin(ctx, &herdv1.CheckinRequest{FactsDigest: d})
	if err != nil || resp.Status != herdv1.CheckinResponse_NEED_FACTS {
		t.Fatalf("check-in without facts = %v, %v; want NEED_FACTS", resp.GetStatus(), err)
	}
	resp = checkin(t, c, map[string]any{"os": map[string]any{"family": "debian"}}, "")
	if resp.Status != herdv1.CheckinResponse_NEW_CATALOG {
		t.Fatalf("first check-in = %v, want NEW_CATALOG", resp.Status)
	}
	if !verify(s, resp.Catalog, resp.Signature) || catalogs.Digest(resp.Catalog) != resp.Etag {
		t.Fatal("the catalog's signature or etag does not verify")
	}
	cat, err := catalogs.Decode(resp.Catalog)
	if err != nil || cat.Node != "a-01" {
		t.Fatalf("catalog for %v, %v", cat.Node, err)
	}
	if r, ok := cat.Resource("file:/etc/motd"); !ok || r.String("content") != "hello a-01\n" {
		t.Errorf("motd = %+v", r)
	}
	// The same facts by digest and the same etag: unchanged, and the next
	// check-in time falls within the interval.
	resp2, err := c.Checkin(ctx, &herdv1.CheckinRequest{FactsDigest: d, CatalogEtag: resp.Etag})
	if err != nil || resp2.Status != herdv1.CheckinResponse_UNCHANGED {
		t.Fatalf("second check-in = %v, %v; want UNCHANGED", resp2.GetStatus(), err)
	}
	// Without environments the one site is the environment herd.toml
	// names, whatever the agent asks for; a name that could not be a
	// branch is refused.
	if resp.Environment != "production" || cat.Environment != resp.Environment {
		t.Errorf("check-in environment %q, catalog's %q; want production both", resp.Environment, cat.Environment)
	}
	if r, err := c.Checkin(ctx, &herdv1.CheckinRequest{FactsDigest: d, CatalogEtag: resp.Etag, Environment: "staging"}); err != nil || r.Status != herdv1.CheckinResponse_UNCHANGED || r.Environment != "production" {
		t.Errorf("check-in asking for staging without environments = %v, %q, %v; want UNCHANGED in production", r.GetStatus(), r.GetEnvironment(), err)
	}
	if _, err := c.Checkin(ctx, &herdv1.CheckinRequest{FactsDigest: d, Environment: "a b"}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("check-in asking for environment \"a b\" = %v, want InvalidArgument", err)
	}
	next := time.UnixMilli(resp2.NextCheckinUnixMs)
	// The node's slot, at least half an interval away: between 15 and
	// 45 minutes from now, 30 on average across the fleet.
	if until := time.Until(next); until < 14*time.Minute || until > 46*time.Minute {
		t.Errorf("next check-in in %s, want its slot between half and one and a half intervals away", until)
	}
}

func verify(s *Server, b, sig []byte) bool {
	return ed25519.Verify(s.ca.SigningPublicKey(), b, sig)
}

// TestIdentityComesFromTheCertificate: facts that claim another name do
// not make the caller that node.
func TestIdentityComesFromTheCertificate(t *testing.T) {
	t.Parallel()
	s, _ := startServer(t)
	cert := enroll(t, s, "b-01")
	c := herdv1.NewNodeClient(dial(t, s, &cert))
	resp := checkin(t, c, map[string]any{"hostname": "a-01", "fqdn": "a-01", "node": "a-01"}, "")
	cat, _ := catalogs.Decode(resp.Catalog)
	if cat.Node != "b-01" {
		t.Errorf("a node claiming to be a-01 got the catalog of %q", cat.Node)
	}
	if _, ok := cat.Resource("file:/etc/only-a-01"); ok {
		t.Error("b-01 got a-01's resource")
	}
}

// TestDenied checks each way in that must be refused.
func TestDenied(t *testing.T) {
	t.Parallel()
	s, _ := startServer(t)
	ctx := context.Background()
	a := enroll(t, s, "a-01")
	b := enroll(t, s, "b-01")
	ac := herdv1.NewNodeClient(dial(t, s, &a))
	bc := herdv1.NewNodeClient(dial(t, s, &b))
	facts := map[string]any{"os": map[string]any{"family": "debian"}}
	ra := checkin(t, ac, facts, "")
	checkin(t, bc, facts, "")
	catA, _ := catalogs.Decode(ra.Catalog)
	var secretDigest string
	for _, f := range catA.Files {
		if f.Path == "files/a-01.txt" {
			secretDigest = f.Digest
		}
	}
	if secretDigest == "" {
		t.Fatal("a-01's catalog does not ship its own file")
	}
	code := func(err error) codes.Code { return status.Code(err) }

	t.Run("no client certificate", func(t *testing.T) {
		_, err := herdv1.NewNodeClient(dial(t, s, nil)).Checkin(ctx, &herdv1.CheckinRequest{})
		if code(err) != codes.Unauthenticated {
			t.Errorf("err = %v, want Unauthenticated", err)
		}
	})
	t.Run("certificate from another CA", func(t *testing.T) {
		foreign := selfSigned(t, "a-01")
		_, err := herdv1.NewNodeClient(dial(t, s, &foreign)).Checkin(ctx, &herdv1.CheckinRequest{})
		if err == nil {
			t.Error("a certificate from another CA was accepted")
		}
	})
	t.Run("node B reads node A's file", func(t *testing.T) {
		stream, err := bc.GetFile(ctx, &herdv1.GetFileRequest{Digest: secretDigest})
		if err == nil {
			_, err = stream.Recv()
		}
		if code(err) != codes.PermissionDenied {
			t.Errorf("err = %v, want PermissionDenied", err)
		}
		// A reads its own.
		stream, err = ac.GetFile(ctx, &herdv1.GetFileRequest{Digest: secretDigest})
		if err != nil {
			t.Fatal(err)
		}
		chunk, err := stream.Recv()
		if err != nil || string(chunk.Data) != "secret of a-01\n" {
			t.Errorf("a-01 reading its file: %q, %v", chunk.GetData(), err)
		}
	})
	t.Run("a node calls Admin", func(t *testing.T) {
		_, err := herdv1.NewAdminClient(dial(t, s, &a)).ListNodes(ctx, &herdv1.ListNodesRequest{})
		if code(err) != codes.PermissionDenied {
			t.Errorf("err = %v, want PermissionDenied", err)
		}
		_, err = herdv1.NewAdminClient(dial(t, s, &a)).GetCatalog(ctx, &herdv1.GetCatalogRequest{Node: "b-01"})
		if code(err) != codes.PermissionDenied {
			t.Errorf("GetCatalog of b-01 by a-01: err = %v, want PermissionDenied", err)
		}
	})
	t.Run("an admin certificate is not a node", func(t *testing.T) {
		adm := admin(t, s)
		_, err := herdv1.NewNodeClient(dial(t, s, &adm)).Checkin(ctx, &herdv1.CheckinRequest{})
		if code(err) != codes.PermissionDenied {
			t.Errorf("err = %v, want PermissionDenied", err)
		}
	})
	t.Run("wrong join token", func(t *testing.T) {
		_, csr, _ := ca.NewKeyAndCSR("c-01")
		resp, err := herdv1.NewEnrollClient(dial(t, s, nil)).Enroll(ctx, &herdv1.EnrollRequest{Name: "c-01", CsrDer: csr, JoinToken: "not-a-token"})
		if err != nil || resp.Status != herdv1.EnrollResponse_PENDING || len(resp.CertificateDer) != 0 {
			t.Errorf("Enroll with a wrong token = %v, %v; want PENDING and no certificate", resp.GetStatus(), err)
		}
	})
	t.Run("revoked certificate", func(t *testing.T) {
		c := enroll(t, s, "d-01")
		dc := herdv1.NewNodeClient(dial(t, s, &c))
		checkin(t, dc, facts, "")
		if err := s.ca.Revoke(ctx, "d-01"); err != nil {
			t.Fatal(err)
		}
		_, err := dc.Checkin(ctx, &herdv1.CheckinRequest{})
		if code(err) != codes.Unauthenticated {
			t.Errorf("err = %v, want Unauthenticated", err)
		}
	})
}

// TestRevocationClosesWatch: an open Watch stream of a node whose
// certificate is revoked ends within seconds.
func TestRevocationClosesWatch(t *testing.T) {
	t.Parallel()
	s, _ := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := enroll(t, s, "w-01")
	nc := herdv1.NewNodeClient(dial(t, s, &c))
	resp := checkin(t, nc, map[string]any{}, "")
	stream := openWatch(ctx, t, s, nc, resp.Etag)
	if err := s.ca.Revoke(ctx, "w-01"); err != nil {
		t.Fatal(err)
	}
	_, err := stream.Recv()
	if err == nil || ctx.Err() != nil {
		t.Fatalf("Recv after revocation = %v (ctx %v), want the stream closed", err, ctx.Err())
	}
}

// TestSiteChangeReachesWatch edits the site: the node's Watch stream hears
// of its new catalog.
func TestSiteChangeReachesWatch(t *testing.T) {
	t.Parallel()
	s, site := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := enroll(t, s, "a-01")
	nc := herdv1.NewNodeClient(dial(t, s, &c))
	resp := checkin(t, nc, map[string]any{}, "")
	stream, err := nc.Watch(ctx, &herdv1.WatchRequest{Etag: resp.Etag})
	if err != nil {
		t.Fatal(err)
	}
	writeFiles(t, site, map[string]string{"roles/r.toml": strings.Replace(testSite["roles/r.toml"], "hello", "welcome", 1)})
	ev, err := stream.Recv()
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	if ev.Etag == resp.Etag {
		t.Fatal("Watch announced the old catalog")
	}
	again := checkin(t, nc, map[string]any{}, resp.Etag)
	cat, _ := catalogs.Decode(again.Catalog)
	if r, _ := cat.Resource("file:/etc/motd"); again.Etag != ev.Etag || r.String("content") != "welcome a-01\n" {
		t.Errorf("after the edit: etag %s (watch said %s), motd %q", again.Etag, ev.Etag, r.String("content"))
	}
}

// TestBrokenSiteKeepsServing: a site edit that does not load leaves the
// previous version served and says why.
func TestBrokenSiteKeepsServing(t *testing.T) {
	t.Parallel()
	s, site := startServer(t)
	v1 := s.defaultSite().version
	writeFiles(t, site, map[string]string{"roles/r.toml": "[[file]]\npath = \"relative\"\n"})
	deadline := time.Now().Add(10 * time.Second)
	for s.defaultSite().loadErr == "" {
		if time.Now().After(deadline) {
			t.Fatal("the broken edit was never noticed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	st := s.defaultSite()
	if st.version != v1 || !strings.Contains(st.loadErr, "roles/r.toml:2:1") {
		t.Errorf("served %s (was %s), load error %q", st.version, v1, st.loadErr)
	}
}

func TestReportsStoredOnceAndListed(t *testing.T) {
	t.Parallel()
	s, _ := startServer(t)
	ctx := context.Background()
	c := enroll(t, s, "a-01")
	nc := herdv1.NewNodeClient(dial(t, s, &c))
	checkin(t, nc, map[string]any{}, "")
	r := &herdv1.Report{RunId: "run-1", Version: "v", Summary: &herdv1.Summary{Resources: 3, Changed: 1, InSync: 2},
		Events: []*herdv1.Event{{Id: "file:/etc/motd", Type: "file", Status: "changed", Changes: []*herdv1.Change{{Attr: "content", From: "a", To: "b"}}}}}
	for i := range 3 {
		resp, err := nc.SendReport(ctx, &herdv1.SendReportRequest{Report: r})
		if err != nil {
			t.Fatal(err)
		}
		if resp.Duplicate != (i > 0) {
			t.Errorf("send %d: duplicate = %v", i, resp.Duplicate)
		}
	}
	adm := admin(t, s)
	ac := herdv1.NewAdminClient(dial(t, s, &adm))
	list, err := ac.ListReports(ctx, &herdv1.ListReportsRequest{Node: "a-01"})
	if err != nil || len(list.Reports) != 1 {
		t.Fatalf("ListReports = %v, %v; want one report", list, err)
	}
	got := list.Reports[0]
	if got.Node != "a-01" || got.Report.RunId != "run-1" || len(got.Report.Events) != 1 || got.Report.Events[0].Changes[0].To != "b" {
		t.Errorf("stored report = %+v", got)
	}
	nodes, err := ac.ListNodes(ctx, &herdv1.ListNodesRequest{})
	if err != nil || len(nodes.Nodes) != 1 || nodes.Nodes[0].Name != "a-01" || nodes.Nodes[0].CatalogEtag == "" {
		t.Errorf("ListNodes = %+v, %v", nodes, err)
	}
	// Metrics and health answer, with no fact value in them.
	for _, path := range []string{"/healthz", "/metrics"} {
		resp, err := http.Get("http://" + s.HTTPAddr + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s: %d", path, resp.StatusCode)
		}
		if path == "/metrics" && (!strings.Contains(string(body), "herd_checkins_total") || strings.Contains(string(body), "debian")) {
			t.Errorf("/metrics lacks herd_checkins_total or leaks a fact value")
		}
	}
}

type testLog struct{ t *testing.T }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func selfSigned(t *testing.T, name string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestAuditReports: an audit report (noop, marked audit) is stored and
// listed as such, moves the node's drift and not its last run; one that
// claims to have changed the host is refused.
func TestAuditReports(t *testing.T) {
	t.Parallel()
	s, _ := startServer(t)
	ctx := context.Background()
	c := enroll(t, s, "a-01")
	nc := herdv1.NewNodeClient(dial(t, s, &c))
	checkin(t, nc, map[string]any{}, "")
	now := time.Now()
	send := func(r *herdv1.Report) error {
		_, err := nc.SendReport(ctx, &herdv1.SendReportRequest{Report: r})
		return err
	}
	if err := send(&herdv1.Report{RunId: "apply-1", StartedUnixNs: now.UnixNano(), Summary: &herdv1.Summary{Resources: 2, InSync: 1, Drift: 1},
		Events: []*herdv1.Event{{Id: "file:/etc/audited", Type: "file", Status: "drift", Changes: []*herdv1.Change{{Attr: "mode", From: "0644", To: "0600"}}}}}); err != nil {
		t.Fatal(err)
	}
	if err := send(&herdv1.Report{RunId: "audit-1", Noop: true, Audit: true, StartedUnixNs: now.Add(time.Second).UnixNano(),
		Summary: &herdv1.Summary{Resources: 2, Changed: 1, Drift: 2}}); err != nil {
		t.Fatal(err)
	}
	if err := send(&herdv1.Report{RunId: "audit-2", Audit: true, StartedUnixNs: now.Add(2 * time.Second).UnixNano(),
		Summary: &herdv1.Summary{Resources: 2, Changed: 2}}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("an audit report that is not noop = %v, want InvalidArgument", err)
	}
	adm := admin(t, s)
	ac := herdv1.NewAdminClient(dial(t, s, &adm))
	nodes, err := ac.ListNodes(ctx, &herdv1.ListNodesRequest{})
	if err != nil || len(nodes.Nodes) != 1 {
		t.Fatalf("ListNodes = %v, %v", nodes, err)
	}
	if n := nodes.Nodes[0]; n.Drift != 2 || n.LastNoop || n.LastSummary.GetInSync() != 1 {
		t.Errorf("node = drift %d, last noop %v, last summary %v; want drift 2 from the audit, the last run the apply's", n.Drift, n.LastNoop, n.LastSummary)
	}
	list, err := ac.ListReports(ctx, &herdv1.ListReportsRequest{Node: "a-01"})
	if err != nil || len(list.Reports) != 2 {
		t.Fatalf("ListReports = %v, %v; want two reports", list, err)
	}
	if r := list.Reports[0].Report; r.RunId != "audit-1" || !r.Audit || r.Summary.GetDrift() != 2 {
		t.Errorf("newest report = %v, want audit-1 marked audit with drift 2", r)
	}
	if r := list.Reports[1].Report; r.Audit || len(r.Events) != 1 || r.Events[0].Status != "drift" || r.Events[0].Changes[0].To != "0600" {
		t.Errorf("the apply's report = %v, want its drift event with what differs", r)
	}
}

// openWatch opens a Watch stream from c at etag and waits until s has
// registered it, so that what the test does next reaches it.
func openWatch(ctx context.Context, t *testing.T, s *Server, c herdv1.NodeClient, etag string) herdv1.Node_WatchClient {
	t.Helper()
	before := s.metricsWatchers()
	stream, err := c.Watch(ctx, &herdv1.WatchRequest{Etag: etag})
	if err != nil {
		t.Fatal(err)
	}
	for s.metricsWatchers() == before {
		if ctx.Err() != nil {
			t.Fatalf("the Watch stream on %s never opened", s.Addr)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return stream
}
