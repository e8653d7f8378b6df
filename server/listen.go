package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/credentials"
)

// The gRPC port is one listener feeding two gRPC servers. connRouter does
// the TLS handshake itself (bounded in time and in how many connections
// are open) and hands a connection that presented a certificate from the
// CA to the authenticated server, and any other to the anonymous one,
// whose limits are tiny: only Enroll is allowed there, and an enrollment
// request is a name, a CSR and a token. So the limits are decided per
// connection, at the handshake, before a single message is read: an
// unauthenticated client can neither make the server buffer a 16 MiB
// message nor hold more than a few streams, for long, or many
// connections.
type connRouter struct {
	lis       net.Listener
	tlsConf   *tls.Config
	handshake time.Duration
	log       *slog.Logger
	m         *metrics

	conns, anon       atomic.Int64
	maxConns, maxAnon int64

	authed, open *chanListener
	wg           sync.WaitGroup // handshakes in progress
}

func newConnRouter(lis net.Listener, conf *tls.Config, maxConns, maxAnon int, handshake time.Duration, log *slog.Logger, m *metrics) *connRouter {
	return &connRouter{
		lis: lis, tlsConf: conf, handshake: handshake, log: log, m: m,
		maxConns: int64(maxConns), maxAnon: int64(maxAnon),
		authed: newChanListener(lis.Addr()), open: newChanListener(lis.Addr()),
	}
}

// serve accepts connections until the listener is closed; ctx ending is
// a clean stop, any other Accept failure is the error that stops the
// server.
func (r *connRouter) serve(ctx context.Context) error {
	defer r.authed.Close()
	defer r.open.Close()
	defer r.wg.Wait()
	for {
		c, err := r.lis.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("accepting connections: %w", err)
		}
		// Past the cap the connection is closed at once: the file
		// descriptors left are the ones `herd nodes` and the store need.
		if r.conns.Add(1) > r.maxConns {
			r.conns.Add(-1)
			r.m.refusedConns.WithLabelValues("max-connections").Inc()
			c.Close()
			continue
		}
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			r.route(ctx, c)
		}()
	}
}

// route does the handshake and hands the connection on.
func (r *connRouter) route(ctx context.Context, raw net.Conn) {
	release := func() { r.conns.Add(-1) }
	tc := tls.Server(raw, r.tlsConf)
	hctx, cancel := context.WithTimeout(ctx, r.handshake)
	err := tc.HandshakeContext(hctx)
	cancel()
	if err != nil {
		raw.Close()
		release()
		r.log.Debug("TLS handshake failed", "remote", raw.RemoteAddr().String(), "err", err)
		return
	}
	st := tc.ConnectionState()
	to := r.authed
	if len(st.VerifiedChains) == 0 {
		if r.anon.Add(1) > r.maxAnon {
			r.anon.Add(-1)
			r.m.refusedConns.WithLabelValues("max-anonymous").Inc()
			tc.Close()
			release()
			return
		}
		to = r.open
		release = func() { r.anon.Add(-1); r.conns.Add(-1) }
	}
	c := &routedConn{Conn: tc, state: st, release: release}
	if !to.put(c) {
		c.Close()
	}
}

// routedConn is a connection whose TLS handshake is done; Close gives its
// slot back, once.
type routedConn struct {
	net.Conn
	state   tls.ConnectionState
	release func()
	once    sync.Once
}

func (c *routedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// chanListener is a net.Listener fed by connRouter.
type chanListener struct {
	addr  net.Addr
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

// put hands c to Accept; false when the listener is closed.
func (l *chanListener) put(c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }

// handshaken are the transport credentials of connections connRouter
// already shook hands on: it only describes them to gRPC, which reads the
// verified chains from them (see authorize).
type handshaken struct{}

func (handshaken) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("server-side credentials only")
}

func (handshaken) ServerHandshake(c net.Conn) (net.Conn, credentials.AuthInfo, error) {
	rc, ok := c.(*routedConn)
	if !ok {
		return nil, nil, errors.New("a connection that did not pass the TLS handshake")
	}
	return rc, credentials.TLSInfo{State: rc.state, CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity}}, nil
}

func (handshaken) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "tls"}
}

func (h handshaken) Clone() credentials.TransportCredentials { return h }

func (handshaken) OverrideServerName(string) error { return nil }
