package agent

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/herdcm/herd/api/herdv1"
	"github.com/herdcm/herd/catalogs"
	"github.com/herdcm/herd/facts"
)

// RetryAfterKey is the trailer metadata key an overloaded server sets, with
// RESOURCE_EXHAUSTED (or UNAVAILABLE), to the number of milliseconds the
// agent should wait before it calls again, as a decimal integer. The agent
// treats it as a floor for its own jittered backoff. A trailer rather than
// a google.rpc.RetryInfo status detail: it needs no extra protobuf types on
// either side and is readable with grpcurl.
const RetryAfterKey = "retry-after-ms"

// Wire limits. A catalog of tens of thousands of resources fits; a server
// that sends more is refused rather than allowed to grow the agent.
const (
	maxRecvMsgSize = 32 << 20
	maxSendMsgSize = 16 << 20
	// rpcTimeout bounds one unary call (a check-in, a report).
	rpcTimeout = 60 * time.Second
	// connectWait bounds the wait for a connection before a check-in: a
	// TLS connection takes a few round trips; past this the server is
	// taken to be away and the cached catalog is applied.
	connectWait = 3 * time.Second
)

// serverName returns the name to verify in the server's certificate: the
// host part of addr unless given.
func serverName(addr, name string) string {
	if name != "" {
		return name
	}
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}

// dialOptions are the gRPC options every agent connection uses: TLS 1.3,
// keepalive so that a Watch stream through a NAT or a dead peer is noticed
// within a minute and a half, message limits, and a reconnect backoff that
// a fleet coming back after an outage spreads out.
func dialOptions(creds credentials.TransportCredentials) []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		// The server's keepalive enforcement must allow a ping a minute
		// (grpc's default minimum is five); a refused ping only makes
		// grpc-go double this interval, so it is safe either way.
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: time.Minute, Timeout: 20 * time.Second}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxRecvMsgSize), grpc.MaxCallSendMsgSize(maxSendMsgSize)),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: time.Second, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Minute},
			MinConnectTimeout: 20 * time.Second,
		}),
		grpc.WithUserAgent("herd-agent"),
	}
}

// dialNode opens (lazily) the mutual-TLS connection of an enrolled node
// to its servers (addrs, a comma-separated list: dialServers): its
// certificate, the CA bundle from enrollment (or the one a renewal
// brought) as the only roots, each server's name verified.
func dialNode(id *Identity, addrs, name string, log *slog.Logger) (*grpc.ClientConn, error) {
	// Session resumption makes a reconnect after a server restart a
	// cheap handshake: a whole fleet reconnecting at once costs the
	// server far less. One cache for every server: it is keyed by name.
	sessions := tls.NewLRUClientSessionCache(8)
	tlsFor := func(sn string) *tls.Config {
		return &tls.Config{
			MinVersion: tls.VersionTLS13,
			// The current certificate at each handshake: a renewed one
			// is used from the next connection on.
			GetClientCertificate: id.clientCertificate,
			ServerName:           sn,
			// The server is verified by VerifyConnection, against the
			// bundle in force at each handshake (resumed ones
			// included): RootCAs is fixed when the connection is made,
			// and a CA rotation moves the server's certificate to a CA
			// the node learns of by renewing.
			InsecureSkipVerify: true,
			VerifyConnection: func(cs tls.ConnectionState) error {
				if len(cs.PeerCertificates) == 0 {
					return errors.New("the server presented no certificate")
				}
				if err := verifyServer(cs.PeerCertificates, id.roots(), sn); err != nil {
					return fmt.Errorf("the server's certificate does not verify with this node's CA bundle: %w", err)
				}
				return nil
			},
			ClientSessionCache: sessions,
		}
	}
	return dialServers(addrs, name, tlsFor, log)
}

// awaitConnection asks a connection that is waiting out grpc's reconnect
// backoff to try again now, and waits (up to limit) until it is ready. The
// daemon's own jittered schedule already decides when to call; grpc's
// backoff on top would make a run fail against a server that has been back
// for a while. The wait is the whole limit when the server is still away:
// the channel stays in TRANSIENT_FAILURE while it retries (pick_first's
// sticky failure), so a failed attempt cannot be told from one under way.
func awaitConnection(ctx context.Context, conn *grpc.ClientConn, limit time.Duration) {
	s := conn.GetState()
	if s == connectivity.Ready {
		return
	}
	if s == connectivity.TransientFailure {
		conn.ResetConnectBackoff()
	}
	conn.Connect()
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for s != connectivity.Ready && s != connectivity.Shutdown && conn.WaitForStateChange(ctx, s) {
		s = conn.GetState()
	}
}

// RPCError is a failed call to the server, with the server's retry hint
// when it gave one.
type RPCError struct {
	Op         string        // what was being done: "checking in", "sending report …"
	RetryAfter time.Duration // from the RetryAfterKey trailer; 0 when none
	Err        error         // the gRPC status error
}

func (e *RPCError) Error() string {
	s := e.Op + ": " + e.Err.Error()
	if e.RetryAfter > 0 {
		s += fmt.Sprintf(" (server asks to retry after %s)", e.RetryAfter)
	}
	return s
}

func (e *RPCError) Unwrap() error { return e.Err }

// Code returns the gRPC status code of the failure.
func (e *RPCError) Code() codes.Code { return status.Code(e.Err) }

func rpcError(op string, err error, trailer metadata.MD) error {
	return &RPCError{Op: op, Err: err, RetryAfter: retryAfter(trailer)}
}

// retryHint returns the server's retry hint carried by err, if any.
func retryHint(err error) time.Duration {
	var re *RPCError
	if errors.As(err, &re) {
		return re.RetryAfter
	}
	return 0
}

// retryAfter reads RetryAfterKey from trailer metadata. A value that is not
// a positive number of milliseconds up to a day is ignored: the hint only
// ever delays the agent, and a wrong one must not silence it.
func retryAfter(md metadata.MD) time.Duration {
	vs := md.Get(RetryAfterKey)
	if len(vs) == 0 {
		return 0
	}
	ms, err := strconv.ParseInt(strings.TrimSpace(vs[0]), 10, 64)
	if err != nil || ms <= 0 || ms > int64(24*time.Hour/time.Millisecond) {
		return 0
	}
	return time.Duration(ms) * time.Millisecond
}

// volatileFacts are the facts that change between any two runs (counters
// and free space). They are left out of what the agent sends, so that the
// facts digest changes only when the host does and the full facts travel
// only then; and so that no condition or template makes a catalog churn
// on them.
var volatileFacts = [][]string{
	{"uptime", "seconds"},
	{"memory", "available_bytes"},
	{"memory", "swap_free_bytes"},
	{"mounts", "*", "available_bytes"},
	{"mounts", "*", "used_bytes"},
}

// factsPayload returns the facts as the server receives them, canonical
// JSON (encoding/json sorts map keys) without the volatile facts, and its
// digest ("sha256:<hex>", the digest of exactly those bytes). It removes
// the volatile facts from f.
func factsPayload(f facts.Facts) ([]byte, string, error) {
	for _, p := range volatileFacts {
		dropFact(map[string]any(f), p)
	}
	b, err := json.Marshal(f)
	if err != nil {
		return nil, "", fmt.Errorf("encoding facts: %w", err)
	}
	return b, catalogs.Digest(b), nil
}

// dropFact deletes the fact at path; "*" stands for every key at its level.
func dropFact(m map[string]any, path []string) {
	if len(path) == 1 {
		delete(m, path[0])
		return
	}
	if path[0] == "*" {
		for _, v := range m {
			if sub, ok := asFactMap(v); ok {
				dropFact(sub, path[1:])
			}
		}
		return
	}
	if sub, ok := asFactMap(m[path[0]]); ok {
		dropFact(sub, path[1:])
	}
}

func asFactMap(v any) (map[string]any, bool) {
	switch m := v.(type) {
	case map[string]any:
		return m, true
	case facts.Facts:
		return m, true
	}
	return nil, false
}

// fetchFiles fetches, by digest, every static file of cat that the cache
// lacks, a few at a time. A file that fails is named in the error; the
// others are still fetched, and only the resources that need a missing
// file fail in the run.
func fetchFiles(ctx context.Context, node herdv1.NodeClient, cache fileCache, cat *catalogs.Catalog) error {
	const parallel = 4
	var (
		wg   sync.WaitGroup
		sem  = make(chan struct{}, parallel)
		mu   sync.Mutex
		errs []error
	)
	for _, fr := range cat.Files {
		if cache.has(fr.Digest) {
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := fetchFile(ctx, node, cache, fr); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

func fetchFile(ctx context.Context, node herdv1.NodeClient, cache fileCache, fr catalogs.FileRef) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the stream when the file is refused half way
	op := "fetching " + fr.Path + " (" + fr.Digest + ")"
	stream, err := node.GetFile(ctx, &herdv1.GetFileRequest{Digest: fr.Digest})
	if err != nil {
		return rpcError(op, err, nil)
	}
	err = cache.put(fr.Digest, fr.Size, func(w io.Writer) error {
		var chunk herdv1.FileChunk
		for {
			// One message reused for every chunk: a large file costs
			// the agent one chunk of memory, not its size.
			chunk.Reset()
			if err := stream.RecvMsg(&chunk); err != nil {
				if errors.Is(err, io.EOF) {
					return nil
				}
				return rpcError("receiving", err, stream.Trailer())
			}
			if _, err := w.Write(chunk.Data); err != nil {
				return err
			}
		}
	})
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}
