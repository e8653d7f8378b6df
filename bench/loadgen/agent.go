package main

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	gbackoff "google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/herdcm/herd/api/herdv1"
	"github.com/herdcm/herd/server/ca"
)

// sim is one simulated agent: its own key and certificate, its own
// mutual-TLS connection (with a TLS session cache, as a real agent would
// keep), its facts and the etag of the catalog it holds.
type sim struct {
	name        string
	cert        tls.Certificate
	conn        *grpc.ClientConn
	node        herdv1.NodeClient
	factsJSON   []byte
	factsDigest string

	mu   sync.Mutex
	etag string
	// newCatalogs counts the catalogs the fleet's watch loop fetched
	// (NEW_CATALOG answers): more than one per commit means the node
	// was handed different catalogs for the same site version.
	newCatalogs atomic.Int32
}

func (a *sim) currentEtag() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.etag
}

func (a *sim) setEtag(e string) {
	a.mu.Lock()
	a.etag = e
	a.mu.Unlock()
}

// backoffConfig is the agent's connection backoff (agent/client.go).
var backoffConfig = gbackoff.Config{BaseDelay: time.Second, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Minute}

// clientOptions mirror the real agent's dial options (agent/client.go):
// TLS 1.3, a keepalive a minute, grpc's reconnect backoff from one second.
func clientOptions(cfg *tls.Config) []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithTransportCredentials(countingCreds{credentials.NewTLS(cfg)}),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: time.Minute, Timeout: 20 * time.Second}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64 << 20)),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoffConfig,
			MinConnectTimeout: 20 * time.Second,
		}),
		grpc.WithUserAgent("herd-loadgen"),
	}
}

// enrollAll enrolls n agents named node-<first+i> through the real Enroll
// RPC with the join token, over one certificate-less connection (Enroll
// is open to anyone), parallel at most conc at once, and connects each.
func enrollAll(ctx context.Context, t *target, first, n, conc int) ([]*sim, error) {
	return enrollSpread(ctx, []*target{t}, first, n, conc)
}

// enrollSpread is enrollAll over several servers: agent i enrolls with,
// and connects to, ts[i mod len(ts)] (with its join token, over one
// certificate-less connection to each).
func enrollSpread(ctx context.Context, ts []*target, first, n, conc int) ([]*sim, error) {
	ecs := make([]herdv1.EnrollClient, len(ts))
	for k, t := range ts {
		conf := &tls.Config{RootCAs: t.pool, ServerName: "localhost", MinVersion: tls.VersionTLS13}
		conn, err := grpc.NewClient(t.addr, clientOptions(conf)...)
		if err != nil {
			return nil, fmt.Errorf("enrolling: %w", err)
		}
		defer conn.Close()
		ecs[k] = herdv1.NewEnrollClient(conn)
	}
	agents := make([]*sim, n)
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(conc)
	for i := range n {
		t, ec := ts[i%len(ts)], ecs[i%len(ts)]
		g.Go(func() error {
			name := fmt.Sprintf("node-%d", first+i)
			keyPEM, csr, err := ca.NewKeyAndCSR(name)
			if err != nil {
				return err
			}
			resp, err := ec.Enroll(ctx, &herdv1.EnrollRequest{Name: name, CsrDer: csr, JoinToken: t.token})
			if err != nil {
				return fmt.Errorf("enrolling %s: %w", name, err)
			}
			if resp.Status != herdv1.EnrollResponse_ISSUED {
				return fmt.Errorf("enrolling %s: %v, want ISSUED", name, resp.Status)
			}
			cert, err := tls.X509KeyPair(ca.CertPEM(resp.CertificateDer), keyPEM)
			if err != nil {
				return fmt.Errorf("enrolling %s: %w", name, err)
			}
			fj, err := json.Marshal(nodeFacts(first + i))
			if err != nil {
				return err
			}
			sum := sha256.Sum256(fj)
			a := &sim{name: name, cert: cert, factsJSON: fj, factsDigest: "sha256:" + hex.EncodeToString(sum[:])}
			if err := a.connect(t); err != nil {
				return err
			}
			agents[i] = a
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		closeAll(agents)
		return nil, err
	}
	return agents, nil
}

// connect opens the agent's own connection (lazily: the handshake happens
// on the first call).
func (a *sim) connect(t *target) error {
	conf := &tls.Config{
		RootCAs: t.pool, ServerName: "localhost", MinVersion: tls.VersionTLS13,
		Certificates:       []tls.Certificate{a.cert},
		ClientSessionCache: tls.NewLRUClientSessionCache(1),
	}
	conn, err := grpc.NewClient(t.addr, clientOptions(conf)...)
	if err != nil {
		return fmt.Errorf("connecting %s: %w", a.name, err)
	}
	a.conn, a.node = conn, herdv1.NewNodeClient(conn)
	return nil
}

func closeAll(agents []*sim) {
	for _, a := range agents {
		if a != nil && a.conn != nil {
			a.conn.Close()
		}
	}
}

// register makes every agent's first check-in, with its facts in full:
// the server compiles, signs and stores its catalog.
func register(ctx context.Context, agents []*sim, conc int) error {
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(conc)
	for _, a := range agents {
		g.Go(func() error {
			return retrying(ctx, func() error {
				resp, err := a.node.Checkin(ctx, &herdv1.CheckinRequest{FactsDigest: a.factsDigest, FactsJson: a.factsJSON}, grpc.WaitForReady(true))
				if err != nil {
					return err
				}
				if resp.Status != herdv1.CheckinResponse_NEW_CATALOG {
					return fmt.Errorf("first check-in of %s: %v (%s), want NEW_CATALOG", a.name, resp.Status, resp.CompileError)
				}
				a.setEtag(resp.Etag)
				return nil
			})
		})
	}
	return g.Wait()
}

// retrying calls fn until it succeeds, honouring the server's
// RESOURCE_EXHAUSTED retry hint the way the agent does (at least the hint,
// plus up to a quarter of it as jitter). Other errors end it.
func retrying(ctx context.Context, fn func() error) error {
	for {
		err := fn()
		hint, busy := retryHint(err)
		if !busy {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(hint + time.Duration(rand.Int64N(int64(hint/4)+1))):
		}
	}
}

// trailerKey is the trailer the server's admission control sets.
const trailerKey = "retry-after-ms"

// retryHint says whether err is the server's RESOURCE_EXHAUSTED, and the
// wait it asked for (500 ms when it named none).
func retryHint(err error) (time.Duration, bool) {
	var hinted *hintedError
	if errors.As(err, &hinted) {
		return hinted.after, true
	}
	if status.Code(err) == codes.ResourceExhausted {
		return 500 * time.Millisecond, true
	}
	return 0, false
}

// hintedError carries the retry-after-ms trailer of a refused call.
type hintedError struct {
	after time.Duration
	err   error
}

func (e *hintedError) Error() string { return e.err.Error() }
func (e *hintedError) Unwrap() error { return e.err }

// withHint wraps a RESOURCE_EXHAUSTED error with the trailer's hint.
func withHint(err error, md metadata.MD) error {
	if status.Code(err) != codes.ResourceExhausted {
		return err
	}
	for _, v := range md.Get(trailerKey) {
		if ms, perr := strconv.Atoi(v); perr == nil {
			return &hintedError{after: time.Duration(ms) * time.Millisecond, err: err}
		}
	}
	return err
}

// watchBackoff is the agent's watch reconnect wait (agent.Schedule.Backoff with
// a one-second floor and a one-minute ceiling): half the doubled delay
// plus up to as much again at random.
func watchBackoff(failures int) time.Duration {
	d := time.Second
	for i := 1; i < failures && d < time.Minute; i++ {
		d *= 2
	}
	d = min(d, time.Minute)
	return d/2 + time.Duration(rand.Int64N(int64(d/2)))
}

// handshakes counts the client's TLS handshakes, and those that resumed a
// session (no certificate exchange, no signatures).
var handshakes, resumed atomic.Int64

// countingCreds counts handshakes and resumptions.
type countingCreds struct {
	credentials.TransportCredentials
}

func (c countingCreds) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := c.TransportCredentials.ClientHandshake(ctx, authority, raw)
	if err == nil {
		handshakes.Add(1)
		if ti, ok := info.(credentials.TLSInfo); ok && ti.State.DidResume {
			resumed.Add(1)
		}
	}
	return conn, info, err
}

func (c countingCreds) Clone() credentials.TransportCredentials {
	return countingCreds{c.TransportCredentials.Clone()}
}
