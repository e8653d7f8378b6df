package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herdcm/herd/catalogs"
	"github.com/herdcm/herd/testkit"
)

// TestSecretCommands runs the author's and the operator's whole path:
// the recipient, encrypting a value and a file, compiling without and with
// the key (never printing a value), show, rotate and retire.
func TestSecretCommands(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	text, err := catalogs.GenerateSecretKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "secrets.key"), []byte(text+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mustRun := func(stdin string, args ...string) string {
		t.Helper()
		out, stderr, code := herd(t, stdin, args...)
		if code != 0 {
			t.Fatalf("herd %s exited %d: %s", strings.Join(args, " "), code, stderr)
		}
		return out
	}
	recipient := strings.TrimSpace(mustRun("", "secret", "recipient", "--dir", dir))
	if !strings.HasPrefix(recipient, "age1") {
		t.Fatalf("recipient = %q", recipient)
	}
	value := strings.TrimSpace(mustRun("canary-cli-pw\n", "secret", "encrypt", "--dir", dir))
	if !strings.HasPrefix(value, "age:") || strings.Contains(value, "canary") {
		t.Fatalf("encrypt printed %q", value)
	}
	site := t.TempDir()
	writeSiteFiles(t, site, map[string]string{
		"nodes.toml":       "[[node]]\nroles = [\"r\"]\n",
		"data/common.toml": "pw = \"" + value + "\"\n",
		"roles/r.toml":     "[[file]]\npath = \"/etc/pw\"\ncontent = \"{{ .params.pw }}\"\n\n[[file]]\npath = \"/etc/key\"\ncontent = '{{ secret \"tls/key\" }}'\n",
		"facts.json":       `{"os": {"family": "debian"}}`,
	})
	mustRun("canary-cli-key", "secret", "encrypt", "--recipient", recipient, "--name", "tls/key", "--site", site)
	if _, err := os.Stat(filepath.Join(site, "secrets/tls/key.age")); err != nil {
		t.Fatal(err)
	}

	noPlain := func(what, s string) {
		t.Helper()
		if strings.Contains(s, "canary-cli") {
			t.Errorf("%s shows a secret's value:\n%s", what, s)
		}
	}
	out := mustRun("", "compile", "--site", site, "--node", "n", "--facts", filepath.Join(site, "facts.json"))
	noPlain("herd compile", out)
	if !strings.Contains(out, `"sealed"`) {
		t.Errorf("herd compile does not show the sealed placeholder:\n%s", out)
	}
	out = mustRun("", "compile", "--site", site, "--node", "n", "--facts", filepath.Join(site, "facts.json"), "--secrets-key", filepath.Join(dir, "secrets.key"))
	noPlain("herd compile --secrets-key", out)
	if !strings.Contains(out, "hmac-sha256:") {
		t.Errorf("herd compile --secrets-key shows no digest:\n%s", out)
	}
	noPlain("herd check", mustRun("", "check", "--site", site))

	if got := mustRun("", "secret", "show", "--dir", dir, "--site", site, "tls/key"); got != "canary-cli-key\n" {
		t.Errorf("show tls/key = %q", got)
	}
	if got := mustRun("", "secret", "show", "--dir", dir, value); got != "canary-cli-pw\n" {
		t.Errorf("show VALUE = %q", got)
	}

	// Rotate: a new recipient, the site re-encrypted in place, and both
	// secrets still opening; retire drops the old identity.
	mustRun("", "secret", "rotate", "--dir", dir, "--site", site)
	if r := strings.TrimSpace(mustRun("", "secret", "recipient", "--dir", dir)); r == recipient {
		t.Error("rotate kept the recipient")
	}
	data, _ := os.ReadFile(filepath.Join(site, "data/common.toml"))
	if strings.Contains(string(data), value) {
		t.Error("rotate left the data file's secret as it was")
	}
	mustRun("", "secret", "rotate", "--retire", "--dir", dir, "--site", site)
	if got := mustRun("", "secret", "show", "--dir", dir, "--site", site, "tls/key"); got != "canary-cli-key\n" {
		t.Errorf("after rotation, show tls/key = %q", got)
	}
	if _, _, code := herd(t, "", "secret", "show", "--dir", dir, value); code == 0 {
		t.Error("the retired key's secret still opens")
	}
	// A retire while the site holds a secret of another key is refused.
	writeSiteFiles(t, site, map[string]string{"data/old.toml": "x = \"" + value + "\"\n"})
	if _, stderr, code := herd(t, "", "secret", "rotate", "--retire", "--dir", dir, "--site", site); code == 0 || !strings.Contains(stderr, "data/old.toml") {
		t.Errorf("retire with an unopenable secret: exit %d, %s", code, stderr)
	}
	if _, stderr, code := herd(t, "x", "secret", "encrypt", "--dir", dir, "--name", "../escape", "--site", site); code == 0 {
		t.Errorf("encrypt --name ../escape was accepted: %s", stderr)
	}
}

func writeSiteFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestDiffSecretChanged: herd diff never shows a secret; with the server's
// key it tells a changed secret from an unchanged one by digest, and
// without it every sensitive value is a placeholder.
func TestDiffSecretChanged(t *testing.T) {
	t.Parallel()
	testkit.NeedTools(t, "git")
	dir := t.TempDir()
	text, err := catalogs.GenerateSecretKey()
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "secrets.key")
	if err := os.WriteFile(keyFile, []byte(text+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	encrypt := func(v string) string {
		t.Helper()
		out, stderr, code := herd(t, v+"\n", "secret", "encrypt", "--dir", dir)
		if code != 0 {
			t.Fatalf("herd secret encrypt: %s", stderr)
		}
		return strings.TrimSpace(out)
	}
	site := t.TempDir()
	git := func(args ...string) {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-C", site, "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v: %s", args, err, out)
		}
	}
	git("init", "-q", "-b", "main")
	writeSiteFiles(t, site, map[string]string{
		"nodes.toml":       "[[node]]\nroles = [\"r\"]\n",
		"data/common.toml": "pw = \"" + encrypt("canary-diff-old") + "\"\n",
		"roles/r.toml":     "[[file]]\npath = \"/etc/pw\"\ncontent = \"{{ .params.pw }}\"\n",
	})
	git("add", "-A")
	git("commit", "-q", "-m", "one")
	factsDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(factsDir, "n.json"), []byte(`{"os": {"family": "debian"}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	diff := func(args ...string) string {
		t.Helper()
		out, stderr, code := herd(t, "", append([]string{"diff", "--site", site, "--facts", factsDir}, args...)...)
		if code != 0 {
			t.Fatalf("herd diff %v exited %d: %s", args, code, stderr)
		}
		if strings.Contains(out, "canary-diff") {
			t.Fatalf("herd diff %v shows a secret:\n%s", args, out)
		}
		return out
	}
	// Re-encrypting the same value changes the site's bytes, not the secret.
	writeSiteFiles(t, site, map[string]string{"data/common.toml": "pw = \"" + encrypt("canary-diff-old") + "\"\n"})
	if out := diff("--secrets-key", keyFile); !strings.Contains(out, "no catalog changes") {
		t.Errorf("the same secret re-encrypted reads as a change:\n%s", out)
	}
	writeSiteFiles(t, site, map[string]string{"data/common.toml": "pw = \"" + encrypt("canary-diff-new") + "\"\n"})
	if out := diff("--secrets-key", keyFile); !strings.Contains(out, "(sensitive) changed") {
		t.Errorf("with the key, a changed secret is not shown as changed:\n%s", out)
	}
	if out := diff(); !strings.Contains(out, "no catalog changes") {
		t.Errorf("without the key, placeholders should compare equal:\n%s", out)
	}
}
