package server_test

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herdcm/herd/agent"
	"github.com/herdcm/herd/server"
	"github.com/herdcm/herd/server/ca"
	"github.com/herdcm/herd/testkit"
)

// TestRevokedAgentSaysSoAndReenrolls: a real agent whose certificate is
// revoked gets an error naming the revocation on every run (and applies
// nothing); after agent.Reenroll (herd agent --reenroll) a fresh join
// token enrolls it again with a new key, and it runs.
func TestRevokedAgentSaysSoAndReenrolls(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := startMotdServer(t, 0)
	root, certDir := newAgentRoot(t)
	caFile := writeCAFile(t, s.CA().CACertDER())
	enroll := func() {
		t.Helper()
		token, _, err := s.CA().NewToken(ctx, "web-01", time.Hour, true)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := agent.Enroll(ctx, agent.EnrollOptions{Server: s.Addr, Name: "web-01", JoinToken: token, Dir: certDir, CAFile: caFile}); err != nil {
			t.Fatalf("Enroll: %v", err)
		}
	}
	runOnce := func() error {
		t.Helper()
		d, err := agent.NewDaemon(ctx, agent.DaemonOptions{Server: s.Addr, Root: root, CertDir: certDir, Interval: time.Hour, Once: true})
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		_, err = d.RunOnce(ctx)
		return err
	}
	enroll()
	if err := runOnce(); err != nil {
		t.Fatalf("first run: %v", err)
	}
	if err := s.CA().Revoke(ctx, "web-01"); err != nil {
		t.Fatal(err)
	}
	motd := filepath.Join(root, "etc/motd")
	if err := os.WriteFile(motd, []byte("edited\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for i := range 2 { // every run, not only the first
		err := runOnce()
		if !errors.Is(err, agent.ErrRevoked) || !strings.Contains(err.Error(), "--reenroll") {
			t.Fatalf("run %d after revocation = %v; want agent.ErrRevoked naming --reenroll", i, err)
		}
	}
	if b, _ := os.ReadFile(motd); string(b) != "edited\n" {
		t.Errorf("a revoked node applied its cached catalog: motd = %q", b)
	}

	// A fresh token alone is refused while the old identity stays.
	enroll() // loads the old identity: no call
	if err := runOnce(); !errors.Is(err, agent.ErrRevoked) {
		t.Fatalf("run before --reenroll = %v, want ErrRevoked", err)
	}
	moved, err := agent.Reenroll(certDir)
	if err != nil || moved == "" {
		t.Fatalf("Reenroll = %q, %v", moved, err)
	}
	enroll()
	if err := runOnce(); err != nil {
		t.Fatalf("run after re-enrolling: %v", err)
	}
	if b, _ := os.ReadFile(motd); string(b) != "hi\n" {
		t.Errorf("motd after re-enrolling = %q, want the catalog's", b)
	}
}

// TestAgentWaitsOutASquatter: an attacker's request holds the name; the
// real agent keeps asking (it does not give up), the operator rejects the
// attacker's request, and the agent's own key becomes the pending one.
func TestAgentWaitsOutASquatter(t *testing.T) {
	t.Parallel()
	site := testkit.WriteSite(t, map[string]string{
		"nodes.toml":   "[[node]]\nroles = [\"r\"]\n",
		"roles/r.toml": "[[file]]\npath = \"/etc/motd\"\ncontent = \"hi\\n\"\n",
	})
	ctx := context.Background()
	refused := make(chan struct{}, 100)
	log := slog.New(slog.NewTextHandler(signalWriter{mark: "another key's request is pending", ch: refused}, nil))
	s, err := server.New(ctx, server.Options{Site: site, Dir: t.TempDir(), Listen: "127.0.0.1:0", HTTPListen: "off", Log: log})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	_, squat, _ := ca.NewKeyAndCSR("web-09")
	if _, err := s.CA().Enroll(ctx, "web-09", squat, "", "203.0.113.66:1"); err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(caFile, ca.CertPEM(s.CA().CACertDER()), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "tls")
	done := make(chan error, 1)
	enrollCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		_, err := agent.Enroll(enrollCtx, agent.EnrollOptions{Server: s.Addr, Name: "web-09", Dir: dir, CAFile: caFile})
		done <- err
	}()
	<-refused // the agent met the squatter
	if err := s.CA().Reject(ctx, "web-09"); err != nil {
		t.Fatal(err)
	}
	// The agent's own request takes the name on its next try.
	var fp string
	for fp == "" {
		select {
		case err := <-done:
			t.Fatalf("the agent gave up while squatted: %v", err)
		default:
		}
		list, err := s.CA().List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range list {
			if l.Name == "web-09" && l.State == ca.StatePending {
				fp = l.Fingerprint
			}
		}
		if fp == "" {
			time.Sleep(50 * time.Millisecond) // polling the CA; the agent's retry is its own
		}
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, "key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(keyPEM)
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := ca.Fingerprint(key.(crypto.Signer).Public())
	if fp != want {
		t.Errorf("the pending request after reject has key %s, want the agent's %s", fp, want)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Enroll = %v, want it still waiting until cancelled", err)
	}
}

// signalWriter sends on ch each time a log line contains mark.
type signalWriter struct {
	mark string
	ch   chan struct{}
}

func (w signalWriter) Write(p []byte) (int, error) {
	if strings.Contains(string(p), w.mark) {
		select {
		case w.ch <- struct{}{}:
		default:
		}
	}
	return len(p), nil
}
