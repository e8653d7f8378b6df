package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/credentials"

	"github.com/herdcm/herd/server/ca"
)

// serverTLS holds the TLS configuration the listener uses. gRPC copies
// the tls.Config it is given, so keys rotated on the original would never
// reach handshakes; instead the copy's GetConfigForClient hands each
// handshake the current configuration, which rotate replaces whole.
type serverTLS struct {
	s    *Server
	base *tls.Config
	cur  atomic.Pointer[tls.Config]
}

// newServerTLS builds the server's TLS configuration: TLS 1.3, the CA's
// server certificate (asked for at each handshake, so that it moves to
// the new CA when a rotation's retiring CA retires), client certificates
// optional at the handshake (Enroll is open to anyone) but, when given,
// checked by the CA, a resumed session's included; session ticket keys
// from the CA's directory.
func (s *Server) newServerTLS() (*serverTLS, error) {
	st := &serverTLS{s: s}
	st.base = &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			cert, err := s.ca.ServerCert(s.opts.Hostnames)
			if err != nil {
				s.log.Error("server certificate", "err", err)
				return nil, err
			}
			return &cert, nil
		},
		// ClientCAs is set by current, from the CA's pool as it is now.
		ClientAuth: tls.VerifyClientCertIfGiven,
		// gRPC adds h2 to the configuration it is given, not to the one
		// GetConfigForClient returns.
		NextProtos: []string{"h2"},
		// VerifyConnection runs on full and resumed handshakes alike: a
		// session ticket carries the client's certificates, so a forged
		// ticket could otherwise present one that was never verified.
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return nil // enrollment; the interceptor refuses every other call
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			// A revoked certificate passes here so that the interceptor
			// can tell its node in words, which a failed handshake cannot.
			if _, err := s.ca.VerifyClient(ctx, cs.PeerCertificates); err != nil && !errors.Is(err, ca.ErrRevoked) {
				s.log.Warn("refused a client certificate at the handshake", "resumed", cs.DidResume, "err", err)
				return fmt.Errorf("client certificate refused: %w", err)
			}
			return nil
		},
	}
	// The ticket key once kept beside herd.db was never rotated and is not
	// with the CA; it must not linger as a credential.
	old := filepath.Join(s.opts.Dir, "session-ticket.key")
	if err := os.Remove(old); err == nil {
		s.log.Info("removed the old session ticket key; ticket keys are now kept and rotated in the CA directory", "path", old)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("removing the old session ticket key: %w", err)
	}
	if err := st.rotate(); err != nil {
		return nil, err
	}
	return st, nil
}

// config returns the tls.Config to give gRPC.
func (st *serverTLS) config() *tls.Config {
	c := st.base.Clone()
	c.ClientCAs = st.s.ca.ClientPool()
	c.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) { return st.current(), nil }
	return c
}

// current returns the configuration for a handshake, with the CA's pool
// of trusted CAs as it is now: a rotation adds the new CA to it and a
// retirement drops the old, and client certificates from either must
// verify from that moment on.
func (st *serverTLS) current() *tls.Config {
	for {
		c := st.cur.Load()
		p := st.s.ca.ClientPool()
		if c.ClientCAs == p {
			return c
		}
		n := c.Clone() // keeps the session ticket keys
		n.ClientCAs = p
		if st.cur.CompareAndSwap(c, n) {
			return n
		}
	}
}

// rotate loads the ticket keys (the CA adds and drops them as they age)
// and makes a configuration with them current.
func (st *serverTLS) rotate() error {
	keys, err := st.s.ca.TicketKeys()
	if err != nil {
		return fmt.Errorf("session ticket keys: %w", err)
	}
	c := st.base.Clone()
	c.ClientCAs = st.s.ca.ClientPool()
	c.SetSessionTicketKeys(keys)
	st.cur.Store(c)
	return nil
}

// rotateLoop rotates the ticket keys hourly until ctx ends.
func (st *serverTLS) rotateLoop(ctx context.Context) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := st.rotate(); err != nil {
				st.s.log.Warn("rotating session ticket keys", "err", err)
			}
		}
	}
}

// closingCreds wraps the server's TLS credentials so that a connection
// made with a client certificate is closed when that certificate expires
// or its name is revoked: the interceptor refuses each call anyway, and
// closing makes the agent reconnect (with a renewed certificate, when it
// has one) instead of holding a connection that can do nothing.
type closingCreds struct {
	credentials.TransportCredentials
	conns *clientConns
}

func (c closingCreds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, ai, err := c.TransportCredentials.ServerHandshake(raw)
	if err != nil {
		return conn, ai, err
	}
	ti, ok := ai.(credentials.TLSInfo)
	if !ok || len(ti.State.PeerCertificates) == 0 {
		return conn, ai, nil
	}
	leaf := ti.State.PeerCertificates[0]
	return c.conns.track(conn, leaf.Subject.CommonName, leaf.NotAfter), ai, nil
}

func (c closingCreds) Clone() credentials.TransportCredentials {
	return closingCreds{TransportCredentials: c.TransportCredentials.Clone(), conns: c.conns}
}

// revokeGrace is how long a revoked node's connections stay open after
// the revocation: its calls are refused with the reason meanwhile.
const revokeGrace = 5 * time.Second

// clientConns are the open connections made with client certificates, by
// the certificate's name.
type clientConns struct {
	mu     sync.Mutex
	byName map[string]map[*trackedConn]struct{}
}

// trackedConn is a connection clientConns closes at its certificate's
// expiry or on revocation.
type trackedConn struct {
	net.Conn
	set   *clientConns
	name  string
	timer *time.Timer
	once  sync.Once
}

func (t *trackedConn) Close() error {
	t.once.Do(func() {
		t.set.mu.Lock()
		t.timer.Stop() // assigned under the same lock in track
		delete(t.set.byName[t.name], t)
		if len(t.set.byName[t.name]) == 0 {
			delete(t.set.byName, t.name)
		}
		t.set.mu.Unlock()
	})
	return t.Conn.Close()
}

// track registers conn, made with the certificate of name valid until
// notAfter, and returns the connection to use instead of it.
func (s *clientConns) track(conn net.Conn, name string, notAfter time.Time) net.Conn {
	t := &trackedConn{Conn: conn, set: s, name: name}
	s.mu.Lock()
	defer s.mu.Unlock()
	// Under the lock: a certificate already expired fires at once, and
	// Close must find the timer set.
	t.timer = time.AfterFunc(time.Until(notAfter), func() { t.Close() })
	if s.byName == nil {
		s.byName = map[string]map[*trackedConn]struct{}{}
	}
	if s.byName[name] == nil {
		s.byName[name] = map[*trackedConn]struct{}{}
	}
	s.byName[name][t] = struct{}{}
	return t
}

// closeName closes every connection made with a certificate of name.
func (s *clientConns) closeName(name string) {
	s.mu.Lock()
	conns := make([]*trackedConn, 0, len(s.byName[name]))
	for t := range s.byName[name] {
		conns = append(conns, t)
	}
	s.mu.Unlock()
	for _, t := range conns {
		t.Close()
	}
}
