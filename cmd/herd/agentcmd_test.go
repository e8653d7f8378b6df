package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herdcm/herd/catalogs"
	"github.com/herdcm/herd/cmd/nodecmd"
	"github.com/herdcm/herd/server"
	"github.com/herdcm/herd/testkit"
)

// TestAgentSite: `herd agent --site DIR --once` is a masterless run with
// apply's exit codes and no enrollment; server settings and a noop daemon
// are refused, not ignored.
func TestAgentSite(t *testing.T) {
	t.Parallel()
	site := testkit.WriteSite(t, map[string]string{
		"nodes.toml":   "[[node]]\nroles = [\"r\"]\n",
		"roles/r.toml": "[[file]]\npath = \"/motd\"\ncontent = \"masterless\\n\"\n",
	})
	root := t.TempDir()
	args := []string{"agent", "--site", site, "--root", root, "--name", "n1", "--once"}
	out, stderr, code := herd(t, "", args...)
	if code != 2 || !strings.Contains(out, "1 changed") {
		t.Fatalf("herd agent --site --once exited %d, want 2:\n%s%s", code, out, stderr)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "motd")); string(b) != "masterless\n" {
		t.Errorf("motd = %q", b)
	}
	if _, err := os.Stat(filepath.Join(root, "var/lib/herd/tls")); err == nil {
		t.Error("a masterless agent enrolled")
	}
	if _, _, code := herd(t, "", args...); code != 0 {
		t.Errorf("second run exited %d, want 0", code)
	}
	for _, bad := range [][]string{
		{"agent", "--site", site, "--root", root, "--server", "h:1"},
		{"agent", "--site", site, "--root", root, "--join-token", "x"},
		{"agent", "--site", site, "--root", root, "--noop"},
	} {
		if _, stderr, code := herd(t, "", bad...); code != nodecmd.ExitUsage {
			t.Errorf("herd %s exited %d, want %d:\n%s", strings.Join(bad, " "), code, nodecmd.ExitUsage, stderr)
		}
	}
}

// TestAgentSIGHUP: a real agent process that gets SIGHUP does not die (Go's
// default for SIGHUP): it runs at once, with its configuration file read
// again, and SIGTERM still stops it cleanly.
func TestAgentSIGHUP(t *testing.T) {
	t.Parallel()
	site := testkit.WriteSite(t, map[string]string{
		"nodes.toml":   "[[node]]\nroles = [\"r\"]\n",
		"roles/r.toml": "[[file]]\npath = \"/motd\"\ncontent = \"managed\\n\"\n",
	})
	s, err := server.New(context.Background(), server.Options{Site: site, Dir: t.TempDir(), Listen: "127.0.0.1:0", HTTPListen: "off"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	token, _, err := s.CA().NewToken(context.Background(), "web-01", time.Hour, true)
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(t.TempDir(), "web-01")
	config := filepath.Join(t.TempDir(), "agent.toml")
	writeConfig := func(body string) {
		t.Helper()
		if err := os.WriteFile(config, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeConfig("interval = \"1h\"\nsplay = \"1s\"\n")

	args := []string{"agent", "--server", s.Addr, "--join-token", token, "--name", "web-01", "--root", root, "--config", config}
	child := exec.Command(herdBinary(t), args...)
	var out testkit.SyncBuffer
	child.Stdout, child.Stderr = &out, &out
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	// exited is closed when the child has ended, waitErr set before.
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = child.Wait(); close(exited) }()
	t.Cleanup(func() {
		child.Process.Kill()
		<-exited
	})

	motd := filepath.Join(root, "motd")
	await := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.After(60 * time.Second)
		for !ok() {
			select {
			case <-exited:
				t.Fatalf("the agent exited (%v) while waiting for %s:\n%s", waitErr, what, out.String())
			case <-deadline:
				t.Fatalf("waiting for %s: gave up; the agent said:\n%s", what, out.String())
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	holds := func(want string) func() bool {
		return func() bool {
			b, err := os.ReadFile(motd)
			return err == nil && string(b) == want
		}
	}
	await("the first run", holds("managed\n"))

	// Only a run puts the hand edit back: the interval is an hour, and the
	// file is not watched.
	// audit_interval is reloaded too.
	for i, interval := range []string{"2h0m0s", "3h0m0s"} {
		audit := []string{"20m0s", "0s"}[i]
		if err := os.WriteFile(motd, []byte("hand edit\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		writeConfig("interval = \"" + interval + "\"\nsplay = \"1s\"\naudit_interval = \"" + audit + "\"\n")
		if err := child.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		await("the run SIGHUP "+string(rune('1'+i))+" asked for", holds("managed\n"))
		await("the reloaded interval in the log", func() bool {
			for _, line := range strings.Split(out.String(), "\n") {
				if strings.Contains(line, `"msg":"configuration reloaded"`) && strings.Contains(line, `"interval":"`+interval+`"`) &&
					strings.Contains(line, `"audit_interval":"`+audit+`"`) {
					return true
				}
			}
			return false
		})
	}

	if err := child.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
		if waitErr != nil {
			t.Errorf("the agent ended with %v after SIGTERM, want exit 0:\n%s", waitErr, out.String())
		}
		// One line says why it stopped; each of the daemon's runs was
		// summed up as herd apply sums up its own.
		said := out.String()
		if n := strings.Count(said, `"msg":"agent stopping: terminated signal received"`); n != 1 {
			t.Errorf("the agent logged its stop on SIGTERM %d times, want once:\n%s", n, said)
		}
		// (The last run may be cut short by the SIGTERM itself: it is
		// summed up all the same, as not converged.)
		summaries := regexp.MustCompile(`(?m)^(converged|did not converge) web-01 in `).FindAllString(said, -1)
		if runs := strings.Count(said, `"msg":"run done"`); len(summaries) != runs || runs < 2 {
			t.Errorf("the agent printed %d run summaries for %d runs, want one for each run:\n%s", len(summaries), runs, said)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("the agent did not stop on SIGTERM:\n%s", out.String())
	}
}

// TestAgentAuditIntervalRefused: audit_interval is refused where it
// could not act (a masterless agent has no server to report drift to)
// and when negative or too short to be meant, before anything is touched.
func TestAgentAuditIntervalRefused(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"agent", "--site", exampleSite, "--root", t.TempDir(), "--audit-interval", "5m"}, "audit_interval has no meaning with --site"},
		{[]string{"agent", "--server", "127.0.0.1:1", "--root", t.TempDir(), "--audit-interval", "-1m"}, "audit_interval -1m0s: want 0 (off) or at least 10s"},
		{[]string{"agent", "--server", "127.0.0.1:1", "--root", t.TempDir(), "--audit-interval", "5ms"}, "audit_interval 5ms: want 0 (off) or at least 10s"},
	} {
		_, stderr, code := herd(t, "", tt.args...)
		if code != nodecmd.ExitUsage || !strings.Contains(stderr, tt.want) {
			t.Errorf("herd %v = exit %d, %q; want usage error saying %q", tt.args, code, stderr, tt.want)
		}
	}
}

// TestAgentEnvironmentRefusedMasterless: a masterless agent has no server
// to ask for an environment: --environment (or the config file's) is
// refused, not ignored.
func TestAgentEnvironmentRefusedMasterless(t *testing.T) {
	t.Parallel()
	cfg := filepath.Join(t.TempDir(), "agent.toml")
	if err := os.WriteFile(cfg, []byte("environment = \"staging\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"agent", "--site", exampleSite, "--root", t.TempDir(), "--environment", "staging"}, "--environment has no meaning with --site"},
		{[]string{"agent", "--site", exampleSite, "--root", t.TempDir(), "--config", cfg}, "server settings have no meaning with --site"},
	} {
		_, stderr, code := herd(t, "", tt.args...)
		if code != nodecmd.ExitUsage || !strings.Contains(stderr, tt.want) {
			t.Errorf("herd %v = exit %d, %q; want usage error saying %q", tt.args, code, stderr, tt.want)
		}
	}
}

// TestPartialRunFlags: --tags and --only run the selected resources with
// herd apply and herd agent --site --once; a daemon is refused them, and
// so is a malformed --only.
func TestPartialRunFlags(t *testing.T) {
	t.Parallel()
	site := testkit.WriteSite(t, map[string]string{
		"nodes.toml": "[[node]]\nroles = [\"r\"]\n",
		"roles/r.toml": `
[[file]]
path = "/a"
content = "a"
tags = ["first"]

[[file]]
path = "/b"
content = "b"
`,
	})
	for _, args := range [][]string{
		{"apply", "--site", site, "--node", "n1", "--tags", "first"},
		{"agent", "--site", site, "--name", "n1", "--once", "--only", "file:/a"},
	} {
		root := t.TempDir()
		out, stderr, code := herd(t, "", append(args, "--root", root)...)
		if code != 2 || !strings.Contains(out, "converged partially n1") || !strings.Contains(out, "1 resources") {
			t.Errorf("herd %v = exit %d:\n%s%s\nwant a partial run of 1 resource", args, code, out, stderr)
		}
		if _, err := os.Stat(filepath.Join(root, "b")); err == nil {
			t.Errorf("herd %v made /b, which it did not select", args)
		}
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"agent", "--site", site, "--root", t.TempDir(), "--tags", "first"}, "they need --once"},
		{[]string{"agent", "--server", "127.0.0.1:1", "--root", t.TempDir(), "--only", "file:/a"}, "they need --once"},
		{[]string{"apply", "--site", site, "--root", t.TempDir(), "--only", "motd"}, "want a resource as type:name"},
	} {
		_, stderr, code := herd(t, "", tt.args...)
		if code != nodecmd.ExitUsage || !strings.Contains(stderr, tt.want) {
			t.Errorf("herd %v = exit %d, %q; want usage error saying %q", tt.args, code, stderr, tt.want)
		}
	}
}

// TestAgentSiteSecretsKey: herd agent --site opens the site's secrets
// with --secrets-key, as herd apply does; without it the run fails
// naming the secret; with a server the flag is refused, not ignored.
func TestAgentSiteSecretsKey(t *testing.T) {
	t.Parallel()
	text, err := catalogs.GenerateSecretKey()
	if err != nil {
		t.Fatal(err)
	}
	keys, err := catalogs.ParseSecretKeys([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	v, err := catalogs.EncryptSecret(keys.Recipient(), []byte("canary-agent-site"))
	if err != nil {
		t.Fatal(err)
	}
	site := testkit.WriteSite(t, map[string]string{
		"nodes.toml":       "[[node]]\nroles = [\"r\"]\n",
		"data/common.toml": "pw = \"" + v + "\"\n",
		"roles/r.toml":     "[[file]]\npath = \"/pw\"\ncontent = \"{{ .params.pw }}\"\n",
	})
	key := filepath.Join(t.TempDir(), "secrets.key")
	if err := os.WriteFile(key, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	base := []string{"agent", "--site", site, "--root", root, "--state-dir", t.TempDir(), "--name", "n1", "--once"}
	if _, stderr, code := herd(t, "", base...); code == 0 || !strings.Contains(stderr, "secret pw") {
		t.Errorf("herd agent --site without the key: exit %d, want a failure naming the secret:\n%s", code, stderr)
	}
	// Exit 2: converged, with changes.
	if out, stderr, code := herd(t, "", append(base, "--secrets-key", key)...); code != 2 {
		t.Fatalf("herd agent --site --secrets-key: exit %d, want 2 (changed):\n%s%s", code, out, stderr)
	}
	if b, err := os.ReadFile(filepath.Join(root, "pw")); err != nil || string(b) != "canary-agent-site" {
		t.Errorf("/pw = %q, %v; want the secret opened", b, err)
	}
	if _, stderr, code := herd(t, "", "agent", "--server", "127.0.0.1:1", "--root", t.TempDir(), "--once", "--secrets-key", key); code != nodecmd.ExitUsage || !strings.Contains(stderr, "only with --site") {
		t.Errorf("herd agent --server --secrets-key: exit %d, want a usage error:\n%s", code, stderr)
	}
}
