package main

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/herdcm/herd/api/herdv1"
	"github.com/herdcm/herd/cmd/nodecmd"
	"github.com/herdcm/herd/server"
	"github.com/herdcm/herd/server/ca"
	"github.com/herdcm/herd/testkit"
)

func TestClean(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"web-01", "web-01"},
		{"héllo wörld", "héllo wörld"},
		{"", ""},
		{"\x1b]0;owned\x07", `"\x1b]0;owned\a"`},
		{"red\x1b[31m", `"red\x1b[31m"`},
		{"two\nlines", `"two\nlines"`},
		{"tab\there", `"tab\there"`},
		{"c1\u009b2J", `"c1\u009b2J"`},
		{"bidi\u202eevil", `"bidi\u202eevil"`},
		{"bad\xffutf8", `"bad\xffutf8"`},
	} {
		if got := nodecmd.Clean(tc.in); got != tc.want {
			t.Errorf("clean(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

// hostile is what a node might send to reach an operator's terminal.
const hostile = "\x1b]0;owned\x07\x1b[2J\u009b31m\rfake line\n"

// TestNodeStringsReachTheTerminalEscaped: a node sends facts, a run id
// and event messages full of control sequences; herd nodes, reports and
// facts --node print them with no control byte.
func TestNodeStringsReachTheTerminalEscaped(t *testing.T) {
	t.Parallel()
	site := testkit.WriteSite(t, map[string]string{
		"nodes.toml":   "[[node]]\nroles = [\"r\"]\n",
		"roles/r.toml": "[[file]]\npath = \"/motd\"\ncontent = \"hi\\n\"\n",
	})
	s, dir := startServer(t, site)
	ctx := context.Background()

	// The node, as an attacker would drive it: its own gRPC client.
	secret, _, err := s.CA().NewToken(ctx, "", time.Hour, false)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, csr, err := ca.NewKeyAndCSR("web-01")
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
	enr, err := herdv1.NewEnrollClient(dialAs()).Enroll(ctx, &herdv1.EnrollRequest{Name: "web-01", CsrDer: csr, JoinToken: secret})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(ca.CertPEM(enr.CertificateDer), keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	nc := herdv1.NewNodeClient(dialAs(cert))
	factsJSON, err := json.Marshal(map[string]any{"os": map[string]any{"family": "\x1b[31mdebian"}, "evil\x1b[2J": hostile})
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(factsJSON)
	if _, err := nc.Checkin(ctx, &herdv1.CheckinRequest{FactsJson: factsJSON, FactsDigest: "sha256:" + hex.EncodeToString(sum[:])}); err != nil {
		t.Fatal(err)
	}
	if _, err := nc.SendReport(ctx, &herdv1.SendReportRequest{Report: &herdv1.Report{
		RunId: "run" + hostile, Version: "v" + hostile, Summary: &herdv1.Summary{Failed: 1},
		Events: []*herdv1.Event{{Id: "exec:" + hostile, Type: "exec", Status: "failed" + hostile, Error: hostile + "second"}},
	}}); err != nil {
		t.Fatal(err)
	}

	adminDir := filepath.Join(t.TempDir(), "admin")
	if _, stderr, code := herd(t, "", "ca", "admin", "ops", "--dir", dir, "--out", adminDir); code != 0 {
		t.Fatalf("herd ca admin: %s", stderr)
	}
	conn := []string{"--server", s.Addr, "--admin-dir", adminDir}
	for _, args := range [][]string{{"nodes"}, {"reports"}, {"reports", "web-01"}, {"facts", "--node", "web-01"}, {"facts", "--node", "web-01", "evil\x1b[2J"}, {"status"}} {
		out, stderr, code := herd(t, "", append(args, conn...)...)
		if code != 0 {
			t.Errorf("herd %q: exit %d: %s", args, code, stderr)
			continue
		}
		for i, c := range []byte(out) {
			if (c < 0x20 && c != '\n') || c == 0x7f {
				t.Errorf("herd %q printed control byte %#x at %d:\n%q", args, c, i, out)
				break
			}
		}
		if strings.Contains(out, "\u009b") || strings.Contains(out, "\nfake line") {
			t.Errorf("herd %q printed a C1 control or a forged line:\n%q", args, out)
		}
	}
	// herd nodes starts with the site line.
	out, _, _ := herd(t, "", append([]string{"nodes"}, conn...)...)
	if !strings.HasPrefix(out, "site sha256:") {
		t.Errorf("herd nodes does not start with the site line:\n%s", out)
	}
}

// TestStatusShowsALoadFailure: herd status names the served version and
// the error, file:line, of the newest one, and exits 1.
func TestStatusShowsALoadFailure(t *testing.T) {
	t.Parallel()
	site := testkit.WriteSite(t, map[string]string{
		"nodes.toml":   "[[node]]\nroles = [\"r\"]\n",
		"roles/r.toml": "[[file]]\npath = \"/motd\"\ncontent = \"hi\\n\"\n",
	})
	dir := t.TempDir()
	s, err := server.New(context.Background(), server.Options{Site: site, Dir: dir, Listen: "127.0.0.1:0", HTTPListen: "off", Debounce: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	adminDir := filepath.Join(t.TempDir(), "admin")
	if _, stderr, code := herd(t, "", "ca", "admin", "ops", "--dir", dir, "--out", adminDir); code != 0 {
		t.Fatalf("herd ca admin: %s", stderr)
	}
	conn := []string{"--server", s.Addr, "--admin-dir", adminDir}
	out, stderr, code := herd(t, "", append([]string{"status"}, conn...)...)
	if code != 0 || !strings.Contains(out, "loads:   ok") {
		t.Fatalf("herd status on a good site: exit %d:\n%s%s", code, out, stderr)
	}
	if err := os.WriteFile(filepath.Join(site, "roles", "r.toml"), []byte("[[file]]\npath = \"relative\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, stderr, code = herd(t, "", append([]string{"status"}, conn...)...)
		if code != 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code != 1 || !strings.Contains(out, "roles/r.toml:2:1") || !strings.Contains(out, "loads:   no") {
		t.Errorf("herd status on a broken site: exit %d:\n%s%s", code, out, stderr)
	}
	out, _, _ = herd(t, "", append([]string{"nodes"}, conn...)...)
	if !strings.Contains(strings.SplitN(out, "\n", 2)[0], "does not load") {
		t.Errorf("herd nodes' first line does not say the site fails to load:\n%s", out)
	}
}

// TestServerRefusals: herd server refuses a negative limit as bad usage,
// and an emptied store beside an existing CA with the way out named.
func TestServerRefusals(t *testing.T) {
	t.Parallel()
	site := testkit.WriteSite(t, map[string]string{"nodes.toml": "[[node]]\nroles = []\n"})
	dir := t.TempDir()
	if _, stderr, code := herd(t, "", "server", "--site", site, "--dir", dir, "--max-connections", "-1"); code != 64 || !strings.Contains(stderr, "max-connections") {
		t.Errorf("herd server --max-connections -1: exit %d, %s; want 64 naming the flag", code, stderr)
	}
	// A store setting that is neither a file nor a PostgreSQL URL is bad
	// usage, and neither refusal shows the password it carried.
	for _, bad := range []string{"mysql://herd:hunter2-secret@db/herd", "postgres://herd:hunter2-secret@db:99999999/herd"} {
		_, stderr, code := herd(t, "", "server", "--site", site, "--dir", dir, "--store", bad)
		if code != 64 || !strings.Contains(stderr, "store") || strings.Contains(stderr, "hunter2") {
			t.Errorf("herd server --store %s: exit %d, %s; want 64 naming the store without its password", bad, code, stderr)
		}
	}
	s, err := server.New(context.Background(), server.Options{Site: site, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := os.Truncate(filepath.Join(dir, "herd.db"), 0); err != nil {
		t.Fatal(err)
	}
	_, stderr, code := herd(t, "", "server", "--site", site, "--dir", dir, "--listen", "127.0.0.1:0", "--http-listen", "off")
	if code != 1 || !strings.Contains(stderr, "--accept-empty-store") {
		t.Errorf("herd server on an emptied store: exit %d, %s; want 1 naming --accept-empty-store", code, stderr)
	}
}

// FuzzClean: whatever a node sends, clean's output has no control byte,
// no C1 control and no invalid UTF-8, and printable text is unchanged.
func FuzzClean(f *testing.F) {
	for _, s := range []string{"web-01", hostile, "\xff\xfe", "\u202e", "ok\ttab", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := nodecmd.Clean(s)
		if !utf8.ValidString(got) {
			t.Fatalf("clean(%q) = %q: invalid UTF-8", s, got)
		}
		for _, r := range got {
			if !unicode.IsPrint(r) {
				t.Fatalf("clean(%q) = %q holds %U", s, got, r)
			}
		}
		printable := utf8.ValidString(s)
		for _, r := range s {
			printable = printable && unicode.IsPrint(r)
		}
		if printable && got != s {
			t.Fatalf("clean(%q) = %q, want it unchanged", s, got)
		}
	})
}
