package server

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"

	"github.com/herdcm/herd/api/herdv1"
	"github.com/herdcm/herd/server/ca"
	"github.com/herdcm/herd/server/store"
)

// Options configure a Server. The zero values of the optional fields are
// the documented defaults; `herd server` fills them from server.toml and
// flags.
type Options struct {
	// Site is the site directory (a git work tree gives versions by commit).
	Site string
	// Dir holds the server's state: the CA, the signing key, the sqlite
	// store, and file contents by digest. Made if missing.
	Dir string
	// Listen is the gRPC address (default 127.0.0.1:8140); HTTPListen the
	// address of /healthz and /metrics (default 127.0.0.1:8141; "off"
	// disables it).
	Listen     string
	HTTPListen string
	// Hostnames are the names and addresses in the server's certificate
	// (default: localhost, 127.0.0.1 and this host's name).
	Hostnames []string
	// CheckinInterval is how often a node checks in; the server spreads
	// the fleet evenly over it (default 30m).
	CheckinInterval time.Duration
	// Debounce is how long the site must be quiet before a change is
	// loaded (default 500ms).
	Debounce time.Duration
	// MaxInFlight bounds the check-ins and reports handled at once; past
	// it a call gets RESOURCE_EXHAUSTED with a retry hint (default 256).
	MaxInFlight int
	// CompileWorkers bounds parallel compiles (default: GOMAXPROCS).
	CompileWorkers int
	// MaxMessageBytes bounds a received message (default 16 MiB);
	// MaxFactsBytes the facts of one check-in (default 1 MiB);
	// MaxFactsDepth their nesting (default 32); MaxReportEvents the events
	// of one report (default 10,000).
	MaxMessageBytes int
	MaxFactsBytes   int
	MaxFactsDepth   int
	MaxReportEvents int
	// MaxStreams bounds concurrent streams per connection (default 16).
	MaxStreams uint32
	// NodeCertValidity is how long a node certificate is valid (default
	// 30 days); agents renew theirs at two thirds of its life.
	NodeCertValidity time.Duration
	// CACertFile and CAKeyFile name an existing CA (PEM) to issue from,
	// instead of the one created under Dir on first start. Both or neither.
	CACertFile, CAKeyFile string
	// CatalogCache is the byte budget of recently compiled or fetched
	// catalogs kept in memory (default 64 MiB); the rest are read from
	// the store when a node fetches them.
	CatalogCache int
	// Retain is how long reports and facts/catalog history are kept
	// (default 90 days); older ones are pruned hourly.
	Retain time.Duration
	Log    *slog.Logger
}

func (o *Options) defaults() {
	if o.Listen == "" {
		o.Listen = "127.0.0.1:8140"
	}
	if o.HTTPListen == "" {
		o.HTTPListen = "127.0.0.1:8141"
	}
	if len(o.Hostnames) == 0 {
		o.Hostnames = []string{"localhost", "127.0.0.1", "::1"}
		if h, err := os.Hostname(); err == nil {
			o.Hostnames = append(o.Hostnames, h)
		}
	}
	if o.CheckinInterval <= 0 {
		o.CheckinInterval = 30 * time.Minute
	}
	if o.Debounce <= 0 {
		o.Debounce = 500 * time.Millisecond
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = 256
	}
	if o.MaxMessageBytes <= 0 {
		o.MaxMessageBytes = 16 << 20
	}
	if o.MaxFactsBytes <= 0 {
		o.MaxFactsBytes = 1 << 20
	}
	if o.MaxFactsDepth <= 0 {
		o.MaxFactsDepth = 32
	}
	if o.MaxReportEvents <= 0 {
		o.MaxReportEvents = 10000
	}
	if o.MaxStreams == 0 {
		o.MaxStreams = 16
	}
	if o.CatalogCache <= 0 {
		o.CatalogCache = 64 << 20
	}
	if o.Retain <= 0 {
		o.Retain = 90 * 24 * time.Hour
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
}

// Server is a running Herd server.
type Server struct {
	opts    Options
	log     *slog.Logger
	ca      *ca.CA
	st      *store.Store
	signer  ed25519.PrivateKey
	metrics *metrics
	files   string // content store: Dir/files/<hex>

	site     atomic.Pointer[siteState]
	recent   *byteCache
	saves    pendingSaves
	compiles compileState
	facts    factsCache
	watch    watchers
	inFlight chan struct{}
	// clientConns closes connections whose certificate expired or whose
	// name was revoked (server/tls.go).
	clientConns clientConns

	// Addr and HTTPAddr are the bound addresses, set by Start (useful with
	// port 0).
	Addr, HTTPAddr string

	grpc  *grpc.Server
	local *grpc.Server // the Local service on LocalSocket (server/local.go)
	http  *http.Server
	stop  context.CancelFunc
	group *errgroup.Group
	once  sync.Once
}

// New opens the server's state (creating the CA and the store on first
// start) and loads the site. It does not listen yet: see Start.
func New(ctx context.Context, opts Options) (*Server, error) {
	opts.defaults()
	if opts.Site == "" {
		return nil, errors.New("starting the server: no site directory")
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("starting the server: %w", err)
	}
	st, err := store.Open(filepath.Join(opts.Dir, "herd.db"), store.Options{Logger: opts.Log.With("component", "store")})
	if err != nil {
		return nil, fmt.Errorf("starting the server: %w", err)
	}
	authority, err := ca.Open(ctx, filepath.Join(opts.Dir, "ca"), st, ca.Options{Log: opts.Log, CertFile: opts.CACertFile, KeyFile: opts.CAKeyFile, NodeValidity: opts.NodeCertValidity})
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("starting the server: %w", err)
	}
	s := &Server{
		opts: opts, log: opts.Log, ca: authority, st: st, signer: authority.SigningKey(),
		metrics: newMetrics(), files: filepath.Join(opts.Dir, "files"),
		inFlight: make(chan struct{}, opts.MaxInFlight),
		recent:   newByteCache(opts.CatalogCache),
		saves:    pendingSaves{sem: make(chan struct{}, maxPendingSaves)},
	}
	s.compiles.init()
	s.facts.init()
	s.watch.init()
	if err := os.MkdirAll(s.files, 0o700); err != nil {
		st.Close()
		return nil, fmt.Errorf("starting the server: %w", err)
	}
	if err := s.warm(ctx); err != nil {
		st.Close()
		return nil, err
	}
	// A revoked node's open Watch streams end within the next poll; its
	// next call is refused by the interceptor.
	authority.OnRevoke(func(name, serial string) {
		s.watch.revoke(name, serial)
		// A grace period first, so that the node's next call hears
		// "certificate revoked" rather than a dropped connection.
		time.AfterFunc(revokeGrace, func() { s.clientConns.closeName(name) })
	})
	if err := s.reload(ctx); err != nil {
		// The first load must work: there is no previous version to serve.
		st.Close()
		return nil, err
	}
	return s, nil
}

// Start listens and serves in the background until ctx ends or Close.
func (s *Server) Start(ctx context.Context) error {
	cert, err := s.ca.ServerCert(s.opts.Hostnames)
	if err != nil {
		return fmt.Errorf("starting the server: %w", err)
	}
	// Send the CA with the leaf: an agent pinning the CA by fingerprint
	// checks it inside the handshake, before it sends its join token.
	cert.Certificate = append(cert.Certificate, s.ca.CACertDER())
	stls, err := s.newServerTLS(cert)
	if err != nil {
		return fmt.Errorf("starting the server: %w", err)
	}
	tlsConf := stls.config()
	lis, err := net.Listen("tcp", s.opts.Listen)
	if err != nil {
		return fmt.Errorf("starting the server: %w", err)
	}
	s.Addr = lis.Addr().String()
	s.grpc = grpc.NewServer(
		grpc.Creds(closingCreds{TransportCredentials: credentials.NewTLS(tlsConf), conns: &s.clientConns}),
		grpc.MaxRecvMsgSize(s.opts.MaxMessageBytes),
		grpc.MaxConcurrentStreams(s.opts.MaxStreams),
		// Small per-connection buffers: a fleet is many mostly idle
		// connections (a Watch stream each), and grpc's 32 KiB defaults
		// would cost 64 KiB a node. (The write buffer is shared and
		// released after each flush, grpc's default.)
		grpc.ReadBufferSize(8<<10),
		grpc.WriteBufferSize(8<<10),
		grpc.ConnectionTimeout(10*time.Second),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 20 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 2 * time.Minute, Timeout: 20 * time.Second}),
		grpc.ChainUnaryInterceptor(s.unaryAuth, s.unaryMetrics),
		grpc.ChainStreamInterceptor(s.streamAuth),
	)
	herdv1.RegisterEnrollServer(s.grpc, &enrollService{s: s})
	herdv1.RegisterNodeServer(s.grpc, &nodeService{s: s})
	herdv1.RegisterAdminServer(s.grpc, &adminService{s: s})
	localLis, err := s.startLocal()
	if err != nil {
		lis.Close()
		return fmt.Errorf("starting the server: %w", err)
	}

	ctx, s.stop = context.WithCancel(ctx)
	g, ctx := errgroup.WithContext(ctx)
	s.group = g
	g.Go(func() error { return s.grpc.Serve(lis) })
	g.Go(func() error { return s.local.Serve(localLis) })
	if s.opts.HTTPListen != "off" {
		hl, err := net.Listen("tcp", s.opts.HTTPListen)
		if err != nil {
			lis.Close()
			localLis.Close()
			return fmt.Errorf("starting the server: %w", err)
		}
		s.HTTPAddr = hl.Addr().String()
		mux := http.NewServeMux()
		mux.HandleFunc("/healthz", s.healthz)
		mux.Handle("/metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}))
		s.http = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		g.Go(func() error {
			if err := s.http.Serve(hl); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
	}
	watchSite := s.watchSite()
	g.Go(func() error { return watchSite(ctx) })
	g.Go(func() error { s.prune(ctx); return nil })
	g.Go(func() error { stls.rotateLoop(ctx); return nil })
	g.Go(func() error {
		<-ctx.Done()
		s.shutdown()
		return nil
	})
	s.log.Info("serving", "grpc", s.Addr, "http", s.HTTPAddr, "site", s.opts.Site, "version", s.site.Load().version)
	return nil
}

// Close stops serving: open streams end, in-flight calls finish, the
// store's writer drains.
func (s *Server) Close() error {
	if s.stop != nil {
		s.stop()
		s.group.Wait()
	}
	s.shutdown()
	s.saves.wg.Wait()
	return s.st.Close()
}

func (s *Server) shutdown() {
	s.once.Do(func() {
		s.watch.closeAll()
		if s.local != nil {
			s.local.Stop()
		}
		if s.grpc != nil {
			done := make(chan struct{})
			go func() { s.grpc.GracefulStop(); close(done) }()
			select {
			case <-done:
			case <-time.After(3 * time.Second):
				// Calls in flight had their chance; thousands of idle
				// connections are not worth waiting for.
				s.grpc.Stop()
			}
		}
		if s.http != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			s.http.Shutdown(ctx)
			cancel()
		}
	})
}

// prune removes reports and history older than Retain, hourly, so that
// the store does not grow without end.
func (s *Server) prune(ctx context.Context) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			p, err := s.st.Prune(ctx, time.Now().Add(-s.opts.Retain))
			if err != nil {
				s.log.Warn("pruning the store", "err", err)
				continue
			}
			s.log.Debug("pruned the store", "pruned", p)
			if _, err := s.ca.PrunePending(ctx); err != nil {
				s.log.Warn("pruning pending enrollments", "err", err)
			}
		}
	}
}

// CA returns the server's certificate authority (for `herd up` and tests
// that issue admin certificates).
func (s *Server) CA() *ca.CA { return s.ca }

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	st := s.site.Load()
	if st == nil || st.site == nil {
		http.Error(w, "no site loaded", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintf(w, "ok %s\n", st.version)
}
