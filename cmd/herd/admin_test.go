package main

import (
	"context"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herdcm/herd/server"
	"github.com/herdcm/herd/server/ca"
	"github.com/herdcm/herd/server/store"
	"github.com/herdcm/herd/testkit"
)

// TestAdminCommands runs a real server and drives it with the CLI: admin
// credentials from the server's directory, a join token, the CA list,
// nodes, reports and a node's facts.
func TestAdminCommands(t *testing.T) {
	t.Parallel()
	site := testkit.WriteSite(t, map[string]string{
		"nodes.toml":   "[[node]]\nroles = [\"r\"]\n",
		"roles/r.toml": "[[file]]\npath = \"/motd\"\ncontent = \"hi\\n\"\n",
	})
	s, dir := startServer(t, site)
	adminDir := filepath.Join(t.TempDir(), "admin")
	conn := []string{"--server", s.Addr, "--admin-dir", adminDir}

	if out, stderr, code := herd(t, "", "ca", "admin", "ops", "--dir", dir, "--out", adminDir); code != 0 || !strings.Contains(out, "admin credentials for ops") {
		t.Fatalf("herd ca admin: exit %d: %s%s", code, out, stderr)
	}
	// With the server running, --offline (a second writer) is refused.
	if _, stderr, code := herd(t, "", "ca", "admin", "ops2", "--dir", dir, "--out", t.TempDir(), "--offline"); code == 0 || !strings.Contains(stderr, "a server is running") {
		t.Errorf("herd ca admin --offline beside a running server: exit %d: %s", code, stderr)
	}
	token, stderr, code := herd(t, "", append([]string{"ca", "token", "--pattern", "web-*", "--ttl", "1h"}, conn...)...)
	if code != 0 || len(strings.TrimSpace(token)) < 20 {
		t.Fatalf("herd ca token: exit %d, %q %s", code, token, stderr)
	}
	out, stderr, code := herd(t, "", append([]string{"ca", "list"}, conn...)...)
	if code != 0 || !strings.Contains(out, "ops") || !strings.Contains(out, "issued") {
		t.Fatalf("herd ca list: exit %d:\n%s%s", code, out, stderr)
	}
	fp, _, code := herd(t, "", "ca", "fingerprint", "--admin-dir", adminDir)
	if code != 0 || !strings.HasPrefix(fp, "sha256:") || len(strings.TrimSpace(fp)) != len("sha256:")+64 {
		t.Errorf("herd ca fingerprint = %q, exit %d", fp, code)
	}
	out, _, code = herd(t, "", append([]string{"nodes"}, conn...)...)
	if code != 0 || !strings.Contains(out, "NODE") {
		t.Fatalf("herd nodes: exit %d:\n%s", code, out)
	}
	if _, stderr, code := herd(t, "", append([]string{"facts", "--node", "web-01"}, conn...)...); code == 0 || !strings.Contains(stderr, "no node web-01: the server knows no such node") {
		t.Errorf("facts of an unknown node: exit %d, %s", code, stderr)
	}
	// Without credentials the Admin service is out of reach.
	_, stderr, code = herd(t, "", "nodes", "--server", s.Addr, "--admin-dir", t.TempDir())
	if code == 0 || !strings.Contains(stderr, "herd ca admin") {
		t.Errorf("herd nodes without credentials: exit %d, %s", code, stderr)
	}
}

// TestCAAdminOffline: with no server running, herd ca admin opens the
// store only when told to.
func TestCAAdminOffline(t *testing.T) {
	t.Parallel()
	dir, out := t.TempDir(), t.TempDir()
	if _, stderr, code := herd(t, "", "ca", "admin", "ops", "--dir", dir, "--out", out); code == 0 || !strings.Contains(stderr, "--offline") {
		t.Errorf("herd ca admin with no server: exit %d: %s; want a refusal naming --offline", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "herd.db")); !os.IsNotExist(err) {
		t.Errorf("the refused command touched the store: %v", err)
	}
	if o, stderr, code := herd(t, "", "ca", "admin", "ops", "--dir", dir, "--out", out, "--offline"); code != 0 || !strings.Contains(o, "admin credentials for ops") {
		t.Fatalf("herd ca admin --offline: exit %d: %s%s", code, o, stderr)
	}
	for _, f := range []string{"admin.crt", "admin.key", "ca.crt"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Error(err)
		}
	}
}

// TestCACommandsRotateAndPage drives herd ca list, rotate and status
// against a real server: the list pages through every entry and escapes
// what nodes supplied; rotate makes a new CA, writes the bundle of both
// to the admin's ca.crt and says what happens next; a second rotate
// during the overlap is refused; the admin, whose certificate comes from
// the old CA, keeps working.
func TestCACommandsRotateAndPage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	site := testkit.WriteSite(t, map[string]string{
		"nodes.toml":   "[[node]]\nroles = [\"r\"]\n",
		"roles/r.toml": "[[file]]\npath = \"/motd\"\ncontent = \"hi\\n\"\n",
	})
	dir := t.TempDir()
	s, err := server.New(ctx, server.Options{Site: site, Dir: dir, Listen: "127.0.0.1:0", HTTPListen: "off"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	adminDir := filepath.Join(t.TempDir(), "admin")
	conn := []string{"--server", s.Addr, "--admin-dir", adminDir}
	if out, stderr, code := herd(t, "", "ca", "admin", "ops", "--dir", dir, "--out", adminDir); code != 0 {
		t.Fatalf("herd ca admin: exit %d: %s%s", code, out, stderr)
	}
	for _, name := range []string{"web-01", "web-02", "db-01"} {
		token, _, err := s.CA().NewToken(ctx, name, time.Hour, true)
		if err != nil {
			t.Fatal(err)
		}
		_, csr, err := ca.NewKeyAndCSR(name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.CA().Enroll(ctx, name, csr, token, "192.0.2.1:1"); err != nil {
			t.Fatal(err)
		}
	}
	_, csr, err := ca.NewKeyAndCSR("web-09")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CA().Enroll(ctx, "web-09", csr, "", "192.0.2.9:9\x1b[2J"); err != nil {
		t.Fatal(err)
	}

	out, stderr, code := herd(t, "", append([]string{"ca", "list", "--page-size", "1"}, conn...)...)
	if code != 0 {
		t.Fatalf("herd ca list --page-size 1: exit %d: %s", code, stderr)
	}
	for _, want := range []string{"ops", "web-01", "web-02", "db-01", "web-09", `"192.0.2.9:9\x1b[2J"`} {
		if !strings.Contains(out, want) {
			t.Errorf("herd ca list --page-size 1 lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "\x1b") {
		t.Errorf("herd ca list printed a raw escape from a node's request:\n%q", out)
	}
	if lines := strings.Count(out, "\n"); lines != 6 {
		t.Errorf("herd ca list printed %d lines, want a header and 5 entries:\n%s", lines, out)
	}

	oldCA, err := x509.ParseCertificate(s.CA().CACertDER())
	if err != nil {
		t.Fatal(err)
	}
	out, stderr, code = herd(t, "", append([]string{"ca", "rotate"}, conn...)...)
	if code != 0 || !strings.Contains(out, "issues every certificate from now on") || !strings.Contains(out, "What happens next") {
		t.Fatalf("herd ca rotate: exit %d:\n%s%s", code, out, stderr)
	}
	b, err := os.ReadFile(filepath.Join(adminDir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), "BEGIN CERTIFICATE"); n != 2 {
		t.Errorf("after herd ca rotate the admin's ca.crt holds %d certificates, want both CAs", n)
	}
	// During the overlap the server's certificate comes from the old CA:
	// the fingerprint agents may pin is its.
	if fp, _, code := herd(t, "", "ca", "fingerprint", "--admin-dir", adminDir); code != 0 || strings.TrimSpace(fp) != ca.CertFingerprint(oldCA) {
		t.Errorf("herd ca fingerprint during the overlap = %q, exit %d; want the old CA's %s", fp, code, ca.CertFingerprint(oldCA))
	}
	out, stderr, code = herd(t, "", append([]string{"ca", "status"}, conn...)...)
	if code != 0 || !strings.Contains(out, "current") || !strings.Contains(out, "retiring") {
		t.Fatalf("herd ca status: exit %d:\n%s%s", code, out, stderr)
	}
	if _, stderr, code := herd(t, "", append([]string{"ca", "rotate"}, conn...)...); code == 0 || !strings.Contains(stderr, "still overlaps") {
		t.Errorf("a second herd ca rotate during the overlap: exit %d: %s; want a refusal", code, stderr)
	}
	if out, stderr, code := herd(t, "", append([]string{"ca", "list"}, conn...)...); code != 0 || !strings.Contains(out, "web-09") {
		t.Errorf("herd ca list after the rotation: exit %d: %s%s", code, out, stderr)
	}
}

// TestCAAdminOfflinePostgres: --offline --store reaches a server's
// PostgreSQL store (no herd.db is made), and --store without --offline is
// refused: a running server has its own.
func TestCAAdminOfflinePostgres(t *testing.T) {
	t.Parallel()
	dir, out := t.TempDir(), t.TempDir()
	dsn := testkit.Postgres(t)
	if _, stderr, code := herd(t, "", "ca", "admin", "ops", "--dir", dir, "--out", out, "--store", dsn); code == 0 || !strings.Contains(stderr, "--offline") {
		t.Errorf("herd ca admin --store without --offline: exit %d: %s; want a refusal naming --offline", code, stderr)
	}
	if o, stderr, code := herd(t, "", "ca", "admin", "ops", "--dir", dir, "--out", out, "--offline", "--store", dsn); code != 0 || !strings.Contains(o, "admin credentials for ops") {
		t.Fatalf("herd ca admin --offline --store: exit %d: %s%s", code, o, stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "herd.db")); !os.IsNotExist(err) {
		t.Errorf("herd ca admin --store made herd.db too: %v", err)
	}
	st, err := store.Open(dsn, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if c, ok, err := st.Cert(context.Background(), "ops"); err != nil || !ok || !c.Admin {
		t.Errorf("the PostgreSQL store's certificate of ops = %+v, %v, %v; want an admin one", c, ok, err)
	}
}
