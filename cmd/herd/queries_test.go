package main

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/herdcm/herd/api/herdv1"
	"github.com/herdcm/herd/server"
	"github.com/herdcm/herd/server/ca"
	"github.com/herdcm/herd/testkit"
)

// checkedIn enrolls name with a join token and checks in with f, over
// its own gRPC client, as a node (or an attacker) would.
// startServer starts a real server over site (TLS on 127.0.0.1, sqlite
// in a temporary directory, no HTTP port) for the test, and returns it
// and its directory.
func startServer(t *testing.T, site string) (*server.Server, string) {
	t.Helper()
	dir := t.TempDir()
	s, err := server.New(context.Background(), server.Options{Site: site, Dir: dir, Listen: "127.0.0.1:0", HTTPListen: "off"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, dir
}

func checkedIn(t *testing.T, s *server.Server, name string, f map[string]any) herdv1.NodeClient {
	t.Helper()
	ctx := context.Background()
	secret, _, err := s.CA().NewToken(ctx, "", time.Hour, false)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, csr, err := ca.NewKeyAndCSR(name)
	if err != nil {
		t.Fatal(err)
	}
	dialAs := func(certs ...tls.Certificate) *grpc.ClientConn {
		conn, err := grpc.NewClient(s.Addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
			RootCAs: s.CA().Pool(), ServerName: "localhost", MinVersion: tls.VersionTLS13, Certificates: certs})))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	enr, err := herdv1.NewEnrollClient(dialAs()).Enroll(ctx, &herdv1.EnrollRequest{Name: name, CsrDer: csr, JoinToken: secret})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(ca.CertPEM(enr.CertificateDer), keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	nc := herdv1.NewNodeClient(dialAs(cert))
	b, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	if _, err := nc.Checkin(ctx, &herdv1.CheckinRequest{FactsJson: b, FactsDigest: "sha256:" + hex.EncodeToString(sum[:])}); err != nil {
		t.Fatal(err)
	}
	return nc
}

// TestFleetQueryCommands runs a real server with three nodes and drives
// herd nodes --where, herd facts --all and herd reports NODE [RUN]
// against it. One node's facts and report carry terminal escapes.
func TestFleetQueryCommands(t *testing.T) {
	t.Parallel()
	site := testkit.WriteSite(t, map[string]string{
		"nodes.toml":   "[[node]]\nroles = [\"r\"]\n",
		"roles/r.toml": "[[file]]\npath = \"/motd\"\ncontent = \"hi\\n\"\n",
	})
	s, dir := startServer(t, site)
	web := checkedIn(t, s, "web-01", map[string]any{"os": map[string]any{"family": "debian"}, "memory": map[string]any{"total_bytes": 2e9}})
	checkedIn(t, s, "web-02", map[string]any{"os": map[string]any{"family": "debian"}, "memory": map[string]any{"total_bytes": 8e9}})
	checkedIn(t, s, "db-01", map[string]any{"os": map[string]any{"family": "\x1b[31mredhat"}})
	if _, err := web.SendReport(context.Background(), &herdv1.SendReportRequest{Report: &herdv1.Report{
		RunId: "run-1", Version: "v1", Summary: &herdv1.Summary{Resources: 2, Changed: 1, Failed: 1},
		Events: []*herdv1.Event{
			{Id: "file:/motd", Type: "file", Status: "changed", Changes: []*herdv1.Change{{Attr: "content", Action: "update",
				Diff: "--- /motd\n+++ /motd\n@@ -1 +1 @@\n-old motd\n+hi\x1b[2J\n"}}},
			{Id: "exec:x", Type: "exec", Status: "failed", Error: "exit status 3", Output: "boom" + hostile},
		},
	}}); err != nil {
		t.Fatal(err)
	}

	adminDir := filepath.Join(t.TempDir(), "admin")
	if _, stderr, code := herd(t, "", "ca", "admin", "ops", "--dir", dir, "--out", adminDir); code != 0 {
		t.Fatalf("herd ca admin: %s", stderr)
	}
	conn := []string{"--server", s.Addr, "--admin-dir", adminDir}
	tests := []struct {
		args      []string
		code      int
		want, not []string // in stdout
		wantErr   string   // in stderr
	}{
		{args: []string{"nodes", "--where", `os.family == "debian" && memory.total_bytes < 4e9`}, want: []string{"web-01"}, not: []string{"web-02", "db-01"}},
		{args: []string{"nodes", "--where", `status == "failed"`}, want: []string{"web-01"}, not: []string{"web-02", "db-01"}},
		{args: []string{"nodes", "--where", `name endsWith "02"`}, want: []string{"web-02"}, not: []string{"web-01", "db-01"}},
		{args: []string{"nodes", "--where", `os.family ==`}, code: 1, wantErr: "column 12"},
		{args: []string{"facts", "--all", "os.family"}, want: []string{"NODE", "OS.FAMILY", "web-01", "debian", `"\x1b[31mredhat"`}},
		{args: []string{"facts", "--all", "memory.total_bytes", "--where", `name != "web-02"`}, want: []string{"web-01", "2000000000", "(missing)"}, not: []string{"web-02"}},
		{args: []string{"facts", "--all", "os.family", "--where", `name ==`}, code: 1, wantErr: "column"},
		{args: []string{"facts", "--all"}, code: 64, wantErr: "one fact NAME"},
		{args: []string{"facts", "--where", "true", "os"}, code: 64, wantErr: "--all"},
		{args: []string{"reports", "web-01"}, want: []string{"run run-1", "changed      file:/motd  content changed", "-old motd", `"+hi\x1b[2J"`, "failed       exec:x  exit status 3"}},
		{args: []string{"reports", "web-01", "run-1"}, want: []string{"run       run-1", "summary   did not converge web-01 in 0s: 2 resources", "events    2 not in sync", "error: exit status 3", `| "boom\x1b]0;owned`}},
		{args: []string{"reports", "web-01", "run-9"}, code: 1, wantErr: "has no run run-9"},
	}
	for _, tt := range tests {
		out, stderr, code := herd(t, "", append(tt.args, conn...)...)
		if code != tt.code {
			t.Errorf("herd %q: exit %d, want %d: %s%s", tt.args, code, tt.code, out, stderr)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(out, w) {
				t.Errorf("herd %q lacks %q:\n%s", tt.args, w, out)
			}
		}
		for _, w := range tt.not {
			if strings.Contains(out, w) {
				t.Errorf("herd %q shows %q:\n%s", tt.args, w, out)
			}
		}
		if !strings.Contains(stderr, tt.wantErr) {
			t.Errorf("herd %q: stderr %q, want %q in it", tt.args, stderr, tt.wantErr)
		}
		assertNoControl(t, strings.Join(tt.args, " "), out)
	}

	// --json: one fact per node, a missing one marked.
	out, stderr, code := herd(t, "", append([]string{"facts", "--all", "memory.total_bytes", "--json"}, conn...)...)
	if code != 0 {
		t.Fatalf("herd facts --all --json: exit %d: %s", code, stderr)
	}
	var got struct {
		Fact  string
		Nodes []struct {
			Node    string
			Value   any
			Missing bool
		}
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("herd facts --all --json: %v\n%s", err, out)
	}
	want := map[string]any{"db-01": "missing", "web-01": 2e9, "web-02": 8e9}
	have := map[string]any{}
	for _, n := range got.Nodes {
		have[n.Node] = n.Value
		if n.Missing {
			have[n.Node] = "missing"
		}
	}
	if diff := cmp.Diff(want, have); diff != "" || got.Fact != "memory.total_bytes" {
		t.Errorf("herd facts --all --json = fact %q (-want +got):\n%s", got.Fact, diff)
	}
}
