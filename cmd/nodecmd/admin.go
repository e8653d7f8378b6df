package nodecmd

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/herdcm/herd/api/herdv1"
)

// AdminFlags locate the server and the operator's admin credentials:
// DIR/admin.crt, DIR/admin.key and DIR/ca.crt, as `herd ca admin` writes
// them.
type AdminFlags struct {
	server, serverName string
	// Dir holds admin.crt, admin.key and ca.crt.
	Dir string
}

// Register adds the flags to cmd and its sub-commands.
func (a *AdminFlags) Register(cmd *cobra.Command) {
	def := os.Getenv("HERD_ADMIN_DIR")
	if def == "" {
		if home, err := os.UserHomeDir(); err == nil {
			def = filepath.Join(home, ".config", "herd", "admin")
		}
	}
	addr := os.Getenv("HERD_SERVER")
	if addr == "" {
		addr = "127.0.0.1:8140"
	}
	cmd.PersistentFlags().StringVar(&a.server, "server", addr, "the server's gRPC address (or $HERD_SERVER)")
	cmd.PersistentFlags().StringVar(&a.Dir, "admin-dir", def, "admin credentials: admin.crt, admin.key, ca.crt (or $HERD_ADMIN_DIR)")
	cmd.PersistentFlags().StringVar(&a.serverName, "server-name", "", "the name in the server's certificate (default: the --server host)")
}

// dial connects to the Admin service with the admin certificate.
func (a *AdminFlags) Dial(ctx context.Context) (herdv1.AdminClient, func(), error) {
	cert, err := tls.LoadX509KeyPair(filepath.Join(a.Dir, "admin.crt"), filepath.Join(a.Dir, "admin.key"))
	if err != nil {
		return nil, nil, fmt.Errorf("loading admin credentials from %s (make them with herd ca admin, or choose them with --admin-dir or $HERD_ADMIN_DIR): %w", a.Dir, err)
	}
	caPEM, err := os.ReadFile(filepath.Join(a.Dir, "ca.crt"))
	if err != nil {
		return nil, nil, fmt.Errorf("loading the server's CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, nil, fmt.Errorf("%s holds no certificate", filepath.Join(a.Dir, "ca.crt"))
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}, RootCAs: pool, ServerName: a.serverName}
	conn, err := grpc.NewClient(a.server, grpc.WithTransportCredentials(credentials.NewTLS(conf)))
	if err != nil {
		return nil, nil, fmt.Errorf("connecting to %s: %w", a.server, err)
	}
	return herdv1.NewAdminClient(conn), func() { conn.Close() }, nil
}

// WithAdmin wraps a RunE that needs the Admin service. An error from a
// call to the server comes back as a sentence (RPCError).
func WithAdmin(a *AdminFlags, fn func(cmd *cobra.Command, args []string, c herdv1.AdminClient) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		c, closeConn, err := a.Dial(cmd.Context())
		if err != nil {
			return err
		}
		defer closeConn()
		return RPCError(a.server, a.Dir, fn(cmd, args, c))
	}
}

// Server is the server's address the admin commands dial (--server).
func (a *AdminFlags) Server() string { return a.server }

// ServerCAFingerprint returns "sha256:<hex>" of the CA the server
// presents in its TLS chain, the one an enrolling agent's
// --ca-fingerprint must name: read from a handshake verified with the
// admin's CA bundle, so that during a CA rotation it is the CA that
// actually vouches for the server, not merely the first in ca.crt.
func (a *AdminFlags) ServerCAFingerprint(ctx context.Context) (string, error) {
	caPEM, err := os.ReadFile(filepath.Join(a.Dir, "ca.crt"))
	if err != nil {
		return "", fmt.Errorf("loading the server's CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return "", fmt.Errorf("%s holds no certificate", filepath.Join(a.Dir, "ca.crt"))
	}
	d := tls.Dialer{Config: &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool, ServerName: a.serverName, NextProtos: []string{"h2"}}}
	if d.Config.ServerName == "" {
		host, _, err := net.SplitHostPort(a.server)
		if err != nil {
			return "", fmt.Errorf("the server address %q: %w", a.server, err)
		}
		d.Config.ServerName = host
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", a.server)
	if err != nil {
		return "", fmt.Errorf("reading the server's CA from %s: %w", a.server, err)
	}
	defer c.Close()
	chains := c.(*tls.Conn).ConnectionState().VerifiedChains
	if len(chains) == 0 || len(chains[0]) < 2 {
		return "", fmt.Errorf("reading the server's CA from %s: no verified chain", a.server)
	}
	root := chains[0][len(chains[0])-1]
	sum := sha256.Sum256(root.Raw)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}
