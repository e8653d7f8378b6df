package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herdcm/herd/testkit"
)

// TestBootstrap: the line `herd ca token` prints makes a host a node:
// bootstrap writes agent.toml, enrolls with the pinned CA and, with
// --no-start, says how to start; the agent then runs from that file
// alone. Again with the same settings it is a no-op; other settings are
// refused without --force; a wrong CA fingerprint is refused before
// anything is written.
func TestBootstrap(t *testing.T) {
	t.Parallel()
	site := testkit.WriteSite(t, map[string]string{
		"nodes.toml":   "[[node]]\nroles = [\"r\"]\n",
		"roles/r.toml": "[[file]]\npath = \"/motd\"\ncontent = \"bootstrapped\\n\"\n",
	})
	s, dir := startServer(t, site)
	adminDir := filepath.Join(t.TempDir(), "admin")
	if out, stderr, code := herd(t, "", "ca", "admin", "ops", "--dir", dir, "--out", adminDir); code != 0 {
		t.Fatalf("herd ca admin: exit %d: %s%s", code, out, stderr)
	}
	token, stderr, code := herd(t, "", "ca", "token", "--server", s.Addr, "--admin-dir", adminDir)
	if code != 0 {
		t.Fatalf("herd ca token: exit %d: %s", code, stderr)
	}
	token = strings.TrimSpace(token)
	var line []string
	for _, l := range strings.Split(stderr, "\n") {
		if f := strings.Fields(l); len(f) > 2 && f[0] == "herd-agent" && f[1] == "bootstrap" {
			line = f[1:]
		}
	}
	if line == nil {
		t.Fatalf("herd ca token printed no bootstrap line:\n%s", stderr)
	}
	flags := map[string]string{}
	for i := 1; i+1 < len(line); i += 2 {
		flags[line[i]] = line[i+1]
	}
	if flags["--server"] != s.Addr || flags["--token"] != token || !strings.HasPrefix(flags["--ca-fingerprint"], "sha256:") {
		t.Fatalf("bootstrap line %q: want --server %s, the token, and a CA fingerprint", line, s.Addr)
	}
	fp, _, _ := herd(t, "", "ca", "fingerprint", "--admin-dir", adminDir)
	if strings.TrimSpace(fp) != flags["--ca-fingerprint"] {
		t.Errorf("the line's fingerprint %s is not the CA's, %s", flags["--ca-fingerprint"], fp)
	}

	root := t.TempDir()
	config := filepath.Join(t.TempDir(), "etc/herd/agent.toml")
	args := append(line, "--name", "web-01", "--root", root, "--config", config, "--no-start")
	out, stderr, code := herd(t, "", args...)
	if code != 0 || !strings.Contains(out, "enrolled as web-01") || !strings.Contains(out, "herd-agent agent --config "+config) {
		t.Fatalf("herd bootstrap: exit %d:\n%s%s", code, out, stderr)
	}
	if _, err := os.Stat(filepath.Join(root, "var/lib/herd/tls/cert.pem")); err != nil {
		t.Fatalf("no certificate after bootstrap: %v", err)
	}
	fi, err := os.Stat(config)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o644 {
		t.Errorf("agent.toml mode %v, want 0644", fi.Mode().Perm())
	}
	if b, _ := os.ReadFile(config); strings.Contains(string(b), token) {
		t.Errorf("agent.toml holds the join token:\n%s", b)
	}
	// The file is a whole agent.toml: the agent runs from it alone.
	out, stderr, code = herd(t, "", "agent", "--config", config, "--once")
	if code != 2 {
		t.Fatalf("herd agent --config %s --once: exit %d, want 2 (changed):\n%s%s", config, code, out, stderr)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "motd")); string(b) != "bootstrapped\n" {
		t.Errorf("motd = %q after the agent's run", b)
	}

	// The same again: nothing to do.
	if out, stderr, code := herd(t, "", args...); code != 0 || strings.Contains(out, "wrote") {
		t.Errorf("bootstrap again: exit %d:\n%s%s", code, out, stderr)
	}
	// A setting the file lacks is added, the rest kept.
	before, _ := os.ReadFile(config)
	added := append(append([]string{}, args...), "--server-name", "localhost")
	if out, stderr, code := herd(t, "", added...); code != 0 || !strings.Contains(out, "wrote") {
		t.Errorf("bootstrap adding server_name: exit %d:\n%s%s", code, out, stderr)
	}
	if after, _ := os.ReadFile(config); !strings.Contains(string(after), "server_name = 'localhost'") || !strings.HasSuffix(string(after), string(before)) {
		t.Errorf("bootstrap adding server_name wrote:\n%s\nwant it added on top of:\n%s", after, before)
	}
	// Another value for a setting the file has: refused, the file
	// untouched.
	before, _ = os.ReadFile(config)
	other := append(append([]string{}, args...), "--server-name", "127.0.0.1")
	if _, stderr, code := herd(t, "", other...); code == 0 || !strings.Contains(stderr, "--force") || !strings.Contains(stderr, "server_name") {
		t.Errorf("bootstrap over another server_name: exit %d, want a refusal naming it and --force:\n%s", code, stderr)
	}
	if after, _ := os.ReadFile(config); string(after) != string(before) {
		t.Errorf("a refused bootstrap changed agent.toml:\n%s", after)
	}
	if out, stderr, code := herd(t, "", append(other, "--force")...); code != 0 || !strings.Contains(out, "wrote") {
		t.Errorf("bootstrap --force: exit %d:\n%s%s", code, out, stderr)
	}
	if b, _ := os.ReadFile(config); !strings.Contains(string(b), "server = \""+s.Addr+"\"\n") {
		t.Errorf("one --server is written as a string; agent.toml:\n%s", b)
	}
	// Several servers: written as a list, and the agent runs from it,
	// past the first address that nothing answers on.
	dead := deadAddr(t)
	several := append(append([]string{}, args...), "--force")
	for i := range several {
		if several[i] == "--server" {
			several[i+1] = dead + "," + s.Addr
		}
	}
	if out, stderr, code := herd(t, "", several...); code != 0 || !strings.Contains(out, "wrote") {
		t.Fatalf("bootstrap %q: exit %d:\n%s%s", several, code, out, stderr)
	}
	if b, _ := os.ReadFile(config); !strings.Contains(string(b), `server = ["`+dead+`", "`+s.Addr+`"]`) {
		t.Errorf("two servers are written as a list; agent.toml:\n%s", b)
	}
	if out, stderr, code := herd(t, "", "agent", "--config", config, "--once"); code != 0 {
		t.Errorf("herd agent --once with a dead first server: exit %d, want 0 (in sync):\n%s%s", code, out, stderr)
	}

	// A wrong fingerprint: refused, nothing written.
	root2 := t.TempDir()
	config2 := filepath.Join(t.TempDir(), "agent.toml")
	bad := []string{"bootstrap", "--server", s.Addr, "--token", token, "--ca-fingerprint", "sha256:" + strings.Repeat("ab", 32),
		"--name", "web-02", "--root", root2, "--config", config2, "--no-start"}
	if _, stderr, code := herd(t, "", bad...); code == 0 || !strings.Contains(stderr, "fingerprint") {
		t.Errorf("bootstrap with a wrong CA fingerprint: exit %d, want a refusal naming the fingerprint:\n%s", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(root2, "var/lib/herd/tls/cert.pem")); err == nil {
		t.Error("a certificate was issued despite the wrong fingerprint")
	}
	if _, err := os.Stat(config2); err == nil {
		t.Error("agent.toml was written despite the wrong fingerprint")
	}
}

// deadAddr returns an address on 127.0.0.1 that nothing listens on any
// more: a connection to it is refused.
func deadAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	return addr
}
