package agent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herdcm/herd/catalogs"
	"github.com/herdcm/herd/testkit"
)

func TestLoadSealKey(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "tls")
	k, err := LoadSealKey(dir)
	if err != nil {
		t.Fatalf("LoadSealKey on a fresh directory: %v", err)
	}
	p := filepath.Join(dir, sealKeyFile)
	fi, err := os.Stat(p)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the key file: %v, mode %v; want 0600", err, fi.Mode())
	}
	again, err := LoadSealKey(dir)
	if err != nil || !again.Equal(k) {
		t.Fatalf("LoadSealKey again = %v; want the same key", err)
	}
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, p string)
		want  string
	}{
		{"readable by others", func(t *testing.T, p string) { os.Chmod(p, 0o644) }, "chmod 600"},
		{"a symbolic link", func(t *testing.T, p string) {
			other := filepath.Join(t.TempDir(), "k")
			os.Rename(p, other)
			os.Symlink(other, p)
		}, "not a regular file"},
		{"garbage", func(t *testing.T, p string) { os.WriteFile(p, []byte("nope"), 0o600) }, "no PRIVATE KEY"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			if _, err := LoadSealKey(dir); err != nil {
				t.Fatal(err)
			}
			tc.setup(t, filepath.Join(dir, sealKeyFile))
			if _, err := LoadSealKey(dir); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("LoadSealKey = %v, want an error saying %q", err, tc.want)
			}
		})
	}
}

// TestMasterlessSecrets: herd apply compiles with --secrets-key, sealing
// to a key of the run that it hands on; without the key it fails naming
// the secret.
func TestMasterlessSecrets(t *testing.T) {
	t.Parallel()
	site, keyFile := secretSite(t, "/etc/pw", "canary-masterless")
	mark := func(string) {}
	_, err := (&siteSource{site: site, node: "n"}).catalog(t.Context(), nil, mark)
	if err == nil || !strings.Contains(err.Error(), "data/common.toml:2") || !strings.Contains(err.Error(), "secret pw: no secrets key") {
		t.Fatalf("compile without a key = %v; want it to name the secret and where it is", err)
	}
	src, err := (&siteSource{site: site, node: "n", secretsKey: keyFile}).catalog(t.Context(), nil, mark)
	if err != nil {
		t.Fatal(err)
	}
	r, _ := src.cat.Resource("file:/etc/pw")
	sv, ok := r.Attrs["content"].(catalogs.Sealed)
	if !ok || src.sealKey == nil {
		t.Fatalf("content = %v, seal key %v; want it sealed to the run's key", r.Attrs["content"], src.sealKey)
	}
	if got, err := sv.Open(src.sealKey); err != nil || got != "canary-masterless" {
		t.Errorf("Open = %v, %v", got, err)
	}
	if err := os.Chmod(keyFile, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := (&siteSource{site: site, node: "n", secretsKey: keyFile}).catalog(t.Context(), nil, mark); err == nil {
		t.Error("a secrets key readable by others was used")
	}
}

// TestSiteDaemonSecrets: the masterless daemon opens the site's secrets
// with ApplyOptions.SecretsKey as herd apply does (it once compiled
// without the key, so a site with secrets never converged under it).
func TestSiteDaemonSecrets(t *testing.T) {
	t.Parallel()
	site, keyFile := secretSite(t, "/pw", "canary-daemon")
	root := t.TempDir()
	ran := make(chan error, 10)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- RunSiteDaemon(ctx, SiteDaemonOptions{
			ApplyOptions: ApplyOptions{Site: site, Root: root, Node: "n1", SecretsKey: keyFile, Log: testLog(t)},
			Interval:     time.Hour, Debounce: 20 * time.Millisecond,
			afterRun: func(_ *Report, err error) { ran <- err },
		})
	}()
	select {
	case err := <-ran:
		if err != nil {
			t.Errorf("the daemon's first run: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("timed out waiting for the daemon's first run")
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("RunSiteDaemon = %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(root, "pw")); err != nil || string(b) != "canary-daemon" {
		t.Errorf("/pw = %q, %v; want the secret opened", b, err)
	}
}

// secretSite writes a site of one node whose file resource at path holds
// canary, age-encrypted to a new secrets key in data/common.toml (line 2,
// as pw), and that key's file (0600); it returns the site and the file.
func secretSite(t *testing.T, path, canary string) (site, keyFile string) {
	t.Helper()
	text, err := catalogs.GenerateSecretKey()
	if err != nil {
		t.Fatal(err)
	}
	keys, err := catalogs.ParseSecretKeys([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	v, err := catalogs.EncryptSecret(keys.Recipient(), []byte(canary))
	if err != nil {
		t.Fatal(err)
	}
	site = testkit.WriteSite(t, map[string]string{
		"nodes.toml":       "[[node]]\nroles = [\"r\"]\n",
		"data/common.toml": "\npw = \"" + v + "\"\n",
		"roles/r.toml":     "[[file]]\npath = \"" + path + "\"\ncontent = \"{{ .params.pw }}\"\n",
	})
	keyFile = filepath.Join(t.TempDir(), "secrets.key")
	if err := os.WriteFile(keyFile, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return site, keyFile
}
