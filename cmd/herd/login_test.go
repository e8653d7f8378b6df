package main

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/herdcm/herd/server"
	"github.com/herdcm/herd/testkit"
)

// TestCAAdminLogin: herd ca admin --login makes a login for the HTTP
// port, offline (a generated password, printed once) and through a
// running server (a password from stdin), and both sign in.
func TestCAAdminLogin(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if _, stderr, code := herd(t, "", "ca", "admin", "ops", "--login", "--dir", dir); code == 0 || !strings.Contains(stderr, "--offline") {
		t.Errorf("herd ca admin --login with no server: exit %d: %s; want a refusal naming --offline", code, stderr)
	}
	out, stderr, code := herd(t, "", "ca", "admin", "ops", "--login", "--dir", dir, "--offline")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 2 || !strings.Contains(lines[0], "shown only now") {
		t.Fatalf("herd ca admin --login --offline: exit %d: %s%s", code, out, stderr)
	}
	generated := lines[1]

	site := testkit.WriteSite(t, map[string]string{
		"nodes.toml":   "[[node]]\nroles = [\"r\"]\n",
		"roles/r.toml": "[[file]]\npath = \"/motd\"\ncontent = \"hi\\n\"\n",
	})
	s, err := server.New(context.Background(), server.Options{Site: site, Dir: dir, Listen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.CA().Pool(), ServerName: "localhost"}}
	t.Cleanup(tr.CloseIdleConnections)
	c := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	signIn := func(name, password string) int {
		t.Helper()
		resp, err := c.PostForm("https://"+s.HTTPAddr+"/login", url.Values{"name": {name}, "password": {password}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := signIn("ops", generated); code != http.StatusSeeOther {
		t.Errorf("sign-in with the generated password = %d, want 303", code)
	}

	// Through the running server, from stdin.
	if _, stderr, code := herd(t, "short\n", "ca", "admin", "ops", "--login", "--password-stdin", "--dir", dir); code == 0 || !strings.Contains(stderr, "fewer than 12") {
		t.Errorf("a short password from stdin: exit %d: %s", code, stderr)
	}
	if _, stderr, code := herd(t, "", "ca", "admin", "ops", "--login", "--dir", dir, "--offline"); code == 0 || !strings.Contains(stderr, "a server is running") {
		t.Errorf("--login --offline beside a running server: exit %d: %s", code, stderr)
	}
	out, stderr, code = herd(t, "a password from stdin\n", "ca", "admin", "ops", "--login", "--password-stdin", "--dir", dir)
	if code != 0 || strings.Contains(out, "a password from stdin") {
		t.Fatalf("herd ca admin --login --password-stdin: exit %d: %s%s", code, out, stderr)
	}
	if code := signIn("ops", "a password from stdin"); code != http.StatusSeeOther {
		t.Errorf("sign-in with the password from stdin = %d, want 303", code)
	}
	if code := signIn("ops", generated); code != http.StatusUnauthorized {
		t.Errorf("sign-in with the replaced password = %d, want 401", code)
	}
	if _, stderr, code := herd(t, "", "ca", "admin", "../x", "--login", "--dir", dir); code == 0 || !strings.Contains(stderr, "login name") {
		t.Errorf("a bad login name: exit %d: %s", code, stderr)
	}
}
