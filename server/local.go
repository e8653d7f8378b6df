package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/local"

	"github.com/herdcm/herd/api/herdv1"
)

// LocalSocket is the unix socket a running server with state directory
// dir serves the Local service on. Its directory is 0700: whoever can
// open the socket can read the CA key, so it needs no other credential.
func LocalSocket(dir string) string { return filepath.Join(dir, "admin.sock") }

// startLocal serves the Local service on LocalSocket until shutdown. A
// socket another server answers on means that server owns dir: two
// servers must not share one store. One nobody answers on is left from a
// crash and replaced.
func (s *Server) startLocal() (net.Listener, error) {
	path := LocalSocket(s.opts.Dir)
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("another server is running on %s (it answers on %s)", s.opts.Dir, path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("removing the stale socket %s: %w", path, err)
	}
	lis, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		lis.Close()
		return nil, fmt.Errorf("listening on %s: %w", path, err)
	}
	s.local = grpc.NewServer(grpc.Creds(local.NewCredentials()), grpc.MaxRecvMsgSize(1<<20))
	ls := &localService{s: s}
	herdv1.RegisterLocalServer(s.local, ls)
	s.local.RegisterService(&localLoginDesc, ls) // server/web_local.go
	return lis, nil
}

// localService is the Local service: what an operator on the server's
// machine does through the running server instead of opening its store.
type localService struct {
	herdv1.UnimplementedLocalServer
	s *Server
}

func (l *localService) IssueAdmin(ctx context.Context, req *herdv1.IssueAdminRequest) (*herdv1.IssueAdminResponse, error) {
	cert, err := l.s.ca.IssueAdminFor(ctx, req.Name, req.CsrDer)
	if err != nil {
		return nil, caStatus(err, "issuing admin certificate "+req.Name)
	}
	return &herdv1.IssueAdminResponse{CertificateDer: cert.DER, CaCertificateDer: l.s.ca.BundleDER()}, nil
}

// DialLocal connects to the Local service of the server running on dir;
// it fails with an error wrapping os.ErrNotExist when none runs there.
func DialLocal(ctx context.Context, dir string) (herdv1.LocalClient, func() error, error) {
	conn, err := dialLocalConn(ctx, dir)
	if err != nil {
		return nil, nil, err
	}
	return herdv1.NewLocalClient(conn), conn.Close, nil
}

// dialLocalConn connects to the local socket of the server running on
// dir, failing with os.ErrNotExist when none answers.
func dialLocalConn(ctx context.Context, dir string) (*grpc.ClientConn, error) {
	path := LocalSocket(dir)
	c, err := (&net.Dialer{Timeout: 2 * time.Second}).DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("no server is running on %s (%v): %w", dir, err, os.ErrNotExist)
	}
	c.Close()
	conn, err := grpc.NewClient("unix://"+path, grpc.WithTransportCredentials(local.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", path, err)
	}
	return conn, nil
}
