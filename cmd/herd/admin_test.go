package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herdcm/herd/server"
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
	dir := t.TempDir()
	s, err := server.New(context.Background(), server.Options{Site: site, Dir: dir, Listen: "127.0.0.1:0", HTTPListen: "off"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
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
	if _, stderr, code := herd(t, "", append([]string{"facts", "--node", "web-01"}, conn...)...); code == 0 || !strings.Contains(stderr, "NotFound") {
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
