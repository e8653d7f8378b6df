package server_test

import (
	"context"
	"crypto/tls"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/herdcm/herd/agent"
	"github.com/herdcm/herd/api/herdv1"
	"github.com/herdcm/herd/server"
	"github.com/herdcm/herd/testkit"
)

// TestAgentFailsOverToAnotherServer: an agent given [a dead address,
// server A, server B] (two real servers issuing from one CA and signing
// key, each with its own store) enrolls and runs with A; when A stops, the
// same daemon's next run checks in with B and B has its report, and the
// log names the server the agent moved to.
func TestAgentFailsOverToAnotherServer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	site := testkit.WriteSite(t, map[string]string{
		"nodes.toml":   "[[node]]\nroles = [\"r\"]\n",
		"roles/r.toml": "[[file]]\npath = \"/etc/motd\"\ncontent = \"hi\\n\"\n",
	})
	dirA, dirB := t.TempDir(), t.TempDir()
	startServer := func(dir string) *server.Server {
		t.Helper()
		s, err := server.New(ctx, server.Options{Site: site, Dir: dir, Listen: "127.0.0.1:0", HTTPListen: "off"})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Start(ctx); err != nil {
			s.Close()
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	// An address nothing listens on any more: connection refused.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := lis.Addr().String()
	lis.Close()

	// The node enrolls with A, past the dead address.
	first := startServer(dirA)
	root, certDir := newAgentRoot(t)
	caFile := writeCAFile(t, first.CA().CACertDER())
	token, _, err := first.CA().NewToken(ctx, "web-01", time.Hour, true)
	if err != nil {
		t.Fatal(err)
	}
	logs := &testkit.SyncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	if _, err := agent.Enroll(ctx, agent.EnrollOptions{Server: dead + "," + first.Addr, Name: "web-01", JoinToken: token, Dir: certDir, CAFile: caFile, Log: log}); err != nil {
		t.Fatalf("enrolling past a dead address: %v", err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	// B is A's copy, as an operator copies the CA to a second server: the
	// same CA and signing key, and (until servers share one store) the
	// store that records the node's certificate.
	copyDir(t, dirA, dirB)
	a, b := startServer(dirA), startServer(dirB)
	servers := strings.Join([]string{dead, a.Addr, b.Addr}, ",")
	d, err := agent.NewDaemon(ctx, agent.DaemonOptions{Server: servers, Root: root, CertDir: certDir, Interval: time.Hour, Once: true, ConnectWait: 20 * time.Second, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	withA, err := d.RunOnce(ctx)
	if err != nil {
		t.Fatalf("run with A: %v", err)
	}
	if got := reportIDs(t, a, "web-01"); !contains(got, withA.RunID) {
		t.Fatalf("A's reports = %v, want run %s", got, withA.RunID)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	withB, err := d.RunOnce(runCtx)
	if err != nil {
		t.Fatalf("run after A stopped: %v\nlog:\n%s", err, logs)
	}
	if got := reportIDs(t, b, "web-01"); !contains(got, withB.RunID) {
		t.Errorf("B's reports = %v, want run %s", got, withB.RunID)
	}
	if want := "server=" + b.Addr; !strings.Contains(logs.String(), want) {
		t.Errorf("log lacks %q:\n%s", want, logs)
	}
}

// reportIDs lists the run IDs of node's reports on s, as an admin asks.
func reportIDs(t *testing.T, s *server.Server, node string) []string {
	t.Helper()
	ctx := context.Background()
	certPEM, keyPEM, err := s.CA().IssueAdmin(ctx, "ops")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	conf := &tls.Config{RootCAs: s.CA().Pool(), ServerName: "localhost", MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}}
	conn, err := grpc.NewClient(s.Addr, grpc.WithTransportCredentials(credentials.NewTLS(conf)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	resp, err := herdv1.NewAdminClient(conn).ListReports(ctx, &herdv1.ListReportsRequest{Node: node})
	if err != nil {
		t.Fatalf("listing %s's reports: %v", node, err)
	}
	var ids []string
	for _, r := range resp.Reports {
		ids = append(ids, r.GetReport().GetRunId())
	}
	return ids
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// copyDir copies the tree of directories and regular files under src
// into dst.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		switch {
		case e.IsDir():
			return os.MkdirAll(to, 0o700)
		case e.Type().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return os.WriteFile(to, b, 0o600)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("copying %s: %v", src, err)
	}
}
