package server_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/herdcm/herd/agent"
	"github.com/herdcm/herd/agent/sandbox"
	"github.com/herdcm/herd/server"
	"github.com/herdcm/herd/server/ca"
	"github.com/herdcm/herd/testkit"
)

// startMotdServer starts a real server on 127.0.0.1 whose site gives
// every node one file, with node certificates valid for validity (0: the
// default), and stops it when the test ends.
func startMotdServer(t *testing.T, validity time.Duration) *server.Server {
	t.Helper()
	site := testkit.WriteSite(t, map[string]string{
		"nodes.toml":   "[[node]]\nroles = [\"r\"]\n",
		"roles/r.toml": "[[file]]\npath = \"/etc/motd\"\ncontent = \"hi\\n\"\n",
	})
	ctx := context.Background()
	s, err := server.New(ctx, server.Options{Site: site, Dir: t.TempDir(), Listen: "127.0.0.1:0", HTTPListen: "off", NodeCertValidity: validity})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// writeCAFile writes the CA certificate der where an agent pins it
// (--ca-file) and returns the path.
func writeCAFile(t *testing.T, der []byte) string {
	t.Helper()
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(caFile, ca.CertPEM(der), 0o644); err != nil {
		t.Fatal(err)
	}
	return caFile
}

// newAgentRoot lays out a sandbox host for an agent and returns its root
// and the directory of its identity.
func newAgentRoot(t *testing.T) (root, certDir string) {
	t.Helper()
	root = t.TempDir()
	if err := sandbox.Init(root); err != nil {
		t.Fatal(err)
	}
	return root, agent.DefaultStateDir(root).TLS()
}
