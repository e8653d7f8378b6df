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
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/tap"

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
	// Environments, when set, serves branches of the site's git repository
	// as environments: each local branch a pattern names (a branch name or
	// a glob, see CheckEnvironments) is one, loaded at its commit, with
	// its own version, compiles and rollouts. Unset, the site directory
	// as it is is the one environment, DefaultEnvironment.
	Environments []string
	// DefaultEnvironment is the environment of a node that neither
	// classification nor its agent places (default "production"). With
	// Environments it must be one of the branches; its nodes.toml places
	// the nodes.
	DefaultEnvironment string
	// Dir holds the server's state: the CA, the signing key, the sqlite
	// store, and file contents by digest. Made if missing.
	Dir string
	// Listen is the gRPC address (default 127.0.0.1:8140); HTTPListen the
	// address of /healthz and /metrics in plain HTTP and, over TLS on the
	// same port, of sign-in, the dashboard and /api/v1 (default
	// 127.0.0.1:8141; "off" disables it).
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
	// it a call waits up to a second in line, then gets RESOURCE_EXHAUSTED
	// with a retry hint (default 256).
	MaxInFlight int
	// CompileWorkers bounds parallel compiles (default: GOMAXPROCS).
	CompileWorkers int
	// Progress, when set, is told how far a fleet recompile has come
	// (done of total nodes compiled) as each node's compile ends, from
	// several goroutines; herd server draws it on a terminal.
	Progress func(done, total int)
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
	// MaxConnections bounds the open gRPC connections; past it a new one
	// is closed at once (default: the file descriptor limit less 512,
	// at least 64). MaxAnonymousConnections bounds those without a client
	// certificate, which may only enroll (default 256).
	MaxConnections          int
	MaxAnonymousConnections int
	// MaxEnrollBytes bounds a message on a connection without a client
	// certificate (default 64 KiB): it is decided at the handshake, so an
	// unauthenticated client never makes the server buffer MaxMessageBytes.
	MaxEnrollBytes int
	// AnonymousTimeout bounds the TLS handshake and every call on a
	// connection without a client certificate, receiving included
	// (default 10s).
	AnonymousTimeout time.Duration
	// IdleTimeout closes a connection with no call open for this long
	// (default 15m; 30s without a client certificate). An agent holding
	// a Watch stream is never idle.
	IdleTimeout time.Duration
	// ReceiveTimeout bounds how long a call's request may take to arrive
	// on a connection with a client certificate (default 1m); a Watch
	// stream lives on once its request is in.
	ReceiveTimeout time.Duration
	// MaxCallsPerNode bounds one node's share of the MaxInFlight work
	// queue (default 4): a noisy node waits its turn instead of taking it
	// all.
	MaxCallsPerNode int
	// ReportBytesPerHour and FactsBytesPerHour are each node's quota of
	// report bytes and of changed-facts bytes, which the store keeps for
	// Retain (defaults 64 MiB and 8 MiB). Past it a call gets
	// RESOURCE_EXHAUSTED with the time until the quota allows it; a node
	// may spend an hour's worth at once.
	ReportBytesPerHour int64
	FactsBytesPerHour  int64
	// MaxWatchesPerNode bounds one node's open Watch streams; a new one
	// past it ends the node's oldest (default 4).
	MaxWatchesPerNode int
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
	// Store is where the server keeps its state: a sqlite file, or a
	// PostgreSQL database named by a postgres:// or postgresql:// URL
	// (default Dir/herd.db). Its password never appears in logs or errors.
	Store string
	// AcceptEmptyStore lets the server start on an empty store although
	// its CA already exists. Without it such a start is refused: the
	// store was lost or truncated, and with it the revocations and the
	// name history (restore it from a backup instead).
	AcceptEmptyStore bool
	// NodeTTL deactivates a node that has not checked in for this long
	// (0: never); NodePurgeTTL purges a node deactivated this long ago,
	// by NodeTTL or an operator, revoking its certificates (0: never).
	// NodePurgeTTL needs NodeTTL and is at least as long (CheckNodeTTLs).
	NodeTTL      time.Duration
	NodePurgeTTL time.Duration
	// AuditStale is how long a node may go without a report (a real run
	// or an audit run) before every audit control says no-data of it
	// instead of judging stale records (default DefaultAuditStale).
	AuditStale time.Duration
	Log        *slog.Logger
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
	if o.DefaultEnvironment == "" {
		o.DefaultEnvironment = DefaultEnvironment
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
	if o.MaxConnections <= 0 {
		o.MaxConnections = defaultMaxConnections()
	}
	if o.MaxAnonymousConnections <= 0 {
		o.MaxAnonymousConnections = 256
	}
	if o.MaxEnrollBytes <= 0 {
		o.MaxEnrollBytes = 64 << 10
	}
	if o.AnonymousTimeout <= 0 {
		o.AnonymousTimeout = 10 * time.Second
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 15 * time.Minute
	}
	if o.ReceiveTimeout <= 0 {
		o.ReceiveTimeout = time.Minute
	}
	if o.MaxCallsPerNode <= 0 {
		o.MaxCallsPerNode = 4
	}
	if o.ReportBytesPerHour <= 0 {
		o.ReportBytesPerHour = 64 << 20
	}
	if o.FactsBytesPerHour <= 0 {
		o.FactsBytesPerHour = 8 << 20
	}
	if o.MaxWatchesPerNode <= 0 {
		o.MaxWatchesPerNode = 4
	}
	if o.CatalogCache <= 0 {
		o.CatalogCache = 64 << 20
	}
	if o.AuditStale <= 0 {
		o.AuditStale = DefaultAuditStale
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

	// envs are the environments served, each with its site version and
	// rollout controller (env.go); without Options.Environments, one.
	envs environments
	// placed is the environment each node was last placed in, asked the
	// one its agent asked for at its newest check-in: node → string.
	placed, asked sync.Map
	// rolloutIDs is the newest rollout id: every environment's
	// controller takes the next one.
	rolloutIDs atomic.Int64
	recent     *byteCache
	rehearse   rehearsals
	lastPlan   atomic.Pointer[planTimes]
	// judged maps the site versions this server gated to the digest of
	// their policies (see judgedBefore).
	judged   sync.Map
	compiles compileState
	facts    factsCache
	secrets  secretsState  // the secrets key and the nodes' sealing keys (secrets.go)
	inactive inactiveNodes // deactivated nodes (nodelife.go)
	audits   auditor       // compliance audits (audit.go)
	// auditLead is whether this server runs the audits: on a shared
	// PostgreSQL store one server does, the others forward what they
	// queue to it (leader.go, cluster.go).
	auditLead leadership
	// rolloutLead is whether this server's controllers drive the
	// rollouts; on a shared store the others hand it their work (work)
	// and hear its decisions (state, answers), rollout_lead.go.
	rolloutLead leadership
	work        outbox
	state       outbox
	answers     outbox
	// calls is the operators' actions handed to the leader, waiting for
	// its answer: call id → chan rolloutAnswer.
	calls sync.Map
	// arrivals wakes the check-ins waiting for the leader's compile.
	arrivals arrivals
	// started is when Start began serving: the node TTLs count only
	// time the nodes could have reached the server.
	started time.Time
	watch   watchers
	// released is the catalogs this server released, to tell the
	// other servers sharing a PostgreSQL store (cluster.go).
	released releases
	// later holds the releases heard for nodes with no Watch stream
	// here, taken after the others (laterReleases).
	later    laterQueue
	inFlight chan struct{}
	limits   sync.Map // node → *nodeLimits
	// services holds each node's service health of its newest report:
	// node → *nodeServices (dashboard_source.go).
	services sync.Map
	// compliance is the dashboard's view of the audit results, kept
	// until they change (dashboard_compliance.go).
	compliance complianceCache
	// queryScan bounds the nodes one filtered query reads (0:
	// maxWhereScan; tests lower it).
	queryScan int
	// clientConns closes connections whose certificate expired or whose
	// name was revoked (server/tls.go).
	clientConns clientConns
	// hup serialises site reloads and keeps the TLS state for Reload
	// (server/reload.go).
	hup hangup

	// Addr and HTTPAddr are the bound addresses, set by Start (useful with
	// port 0).
	Addr, HTTPAddr string

	grpc  *grpc.Server // connections with a client certificate
	anon  *grpc.Server // connections without: Enroll, with tiny limits
	local *grpc.Server // the Local service on LocalSocket (server/local.go)
	http  *http.Server
	// httpLis is the HTTP port's listener; web its sign-in.
	httpLis net.Listener
	web     *webAuth
	lis     net.Listener // the gRPC listener, as Start bound it
	stop    context.CancelFunc
	group   *errgroup.Group
	once    sync.Once
	// errc carries the error that stopped the serving goroutines (a
	// listener that failed), once; it is closed when they have all
	// returned. See Err.
	errc chan error

	// health caches the last store write check for a second, so that a
	// flood of /healthz requests is not a flood of writes.
	health struct {
		sync.Mutex
		at  time.Time
		err error
	}
}

// New opens the server's state (creating the CA and the store on first
// start) and loads the site. It does not listen yet: see Start.
func New(ctx context.Context, opts Options) (*Server, error) {
	opts.defaults()
	// The site's version comes from git (catalogs.Load runs it in this
	// process's environment). Without this, its `git status` refreshes
	// .git/index under index.lock: a write in the tree the server watches.
	if os.Getenv("GIT_OPTIONAL_LOCKS") == "" {
		os.Setenv("GIT_OPTIONAL_LOCKS", "0")
	}
	if opts.Site == "" {
		return nil, errors.New("starting the server: no site directory")
	}
	if err := CheckNodeTTLs(opts.NodeTTL, opts.NodePurgeTTL); err != nil {
		return nil, fmt.Errorf("starting the server: %w", err)
	}
	def := opts.DefaultEnvironment
	if len(opts.Environments) == 0 && def == DefaultEnvironment {
		def = "" // the defaults' own
	}
	if err := CheckEnvironments(opts.Environments, def); err != nil {
		return nil, fmt.Errorf("starting the server: %w", err)
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("starting the server: %w", err)
	}
	if err := checkStateOutsideSite(opts.Dir, opts.Site); err != nil {
		return nil, fmt.Errorf("starting the server: %w", err)
	}
	// Whether a CA exists is decided before ca.Open, which would make one.
	caExists := false
	for _, f := range []string{"ca.crt", "signing.key"} {
		if _, err := os.Lstat(filepath.Join(opts.Dir, "ca", f)); err == nil {
			caExists = true
		}
	}
	storeAt := opts.Store
	if storeAt == "" {
		storeAt = filepath.Join(opts.Dir, "herd.db")
	}
	st, err := store.Open(storeAt, store.Options{Logger: opts.Log.With("component", "store")})
	if err != nil {
		return nil, fmt.Errorf("starting the server: %w", err)
	}
	if st.Created() && caExists && !opts.AcceptEmptyStore {
		st.Close()
		return nil, fmt.Errorf("starting the server: the store %s is empty but the CA in %s already exists: "+
			"the store was lost or truncated, and with it the revoked certificates and the nodes' history; "+
			"restore it from a backup, or start with --accept-empty-store to begin again from nothing",
			store.Redact(storeAt), filepath.Join(opts.Dir, "ca"))
	}
	// s is made after the CA; announce reaches it through this.
	var announce func(name string, serials []string)
	caOpts := ca.Options{Log: opts.Log, CertFile: opts.CACertFile, KeyFile: opts.CAKeyFile, NodeValidity: opts.NodeCertValidity}
	if st.Postgres() {
		caOpts.Shared = true
		caOpts.Announce = func(name string, serials []string) { announce(name, serials) }
	}
	authority, err := ca.Open(ctx, filepath.Join(opts.Dir, "ca"), st, caOpts)
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("starting the server: %w", err)
	}
	s := &Server{
		opts: opts, log: opts.Log, ca: authority, st: st, signer: authority.SigningKey(),
		metrics: newMetrics(), files: filepath.Join(opts.Dir, "files"),
		inFlight: make(chan struct{}, opts.MaxInFlight),
		recent:   newByteCache(opts.CatalogCache),
		errc:     make(chan error, 1),
	}
	announce = s.announceRevoked
	s.web = newWebAuth(s)
	s.released.init()
	s.later.init()
	s.compiles.init()
	s.facts.init()
	s.watch.init()
	s.audits.init()
	s.auditLead.init("audit")
	s.rolloutLead.init("rollout")
	s.work.init(rolloutWorkChannel, workBatch)
	s.state.init(rolloutStateChannel, releaseBatch)
	s.answers.init(rolloutAnswerChannel, 0)
	if !st.Postgres() {
		s.auditLead.leading.Store(true)
		s.rolloutLead.leading.Store(true)
	} else {
		s.rehearse.announce = func(node, etag string) {
			s.announceState(rolloutState{Kind: "rehearse", Node: node, Etag: etag})
		}
	}
	if err := os.MkdirAll(s.files, 0o700); err != nil {
		st.Close()
		return nil, fmt.Errorf("starting the server: %w", err)
	}
	if err := s.initSecrets(ctx); err != nil {
		st.Close()
		return nil, fmt.Errorf("starting the server: %w", err)
	}
	if err := s.warm(ctx); err != nil {
		st.Close()
		return nil, err
	}
	inactive, err := st.Deactivated(ctx, time.Time{})
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("starting the server: %w", err)
	}
	s.inactive.init(inactive)
	if newest, ok, err := st.Rollout(ctx, 0); err != nil {
		st.Close()
		return nil, fmt.Errorf("starting the server: %w", err)
	} else if ok {
		s.rolloutIDs.Store(newest.ID)
	}
	s.envs = environments{m: map[string]*environment{}, def: opts.DefaultEnvironment,
		branches: len(opts.Environments) > 0, patterns: opts.Environments}
	if !s.envs.branches {
		// The site as it is: the one environment, the same code as
		// many.
		e := &environment{name: opts.DefaultEnvironment}
		e.ctl = newController(s, e)
		if err := e.ctl.load(ctx); err != nil {
			st.Close()
			return nil, fmt.Errorf("starting the server: resuming the newest rollout: %w", err)
		}
		e.ctl.start()
		s.envs.m[e.name] = e
	}
	// A revoked node's open Watch streams end within the next poll; its
	// next call is refused by the interceptor.
	authority.OnRevoke(func(name, serial string) {
		s.watch.revoke(name, serial)
		// A grace period first, so that the node's next call hears
		// "certificate revoked" rather than a dropped connection.
		time.AfterFunc(revokeGrace, func() { s.clientConns.closeName(name) })
	})
	if err := s.reload(ctx); err != nil || s.envs.defaultEnv() == nil || s.envs.defaultEnv().site.Load() == nil {
		// The first load must work: there is no previous version to serve.
		s.closeControllers()
		st.Close()
		if err == nil {
			err = fmt.Errorf("loading the site: the default environment %q did not load", opts.DefaultEnvironment)
		}
		return nil, err
	}
	return s, nil
}

// Start listens and serves in the background until ctx ends or Close.
func (s *Server) Start(ctx context.Context) error {
	// The first call issues the certificate, if need be, so that a
	// failure stops Start; handshakes call it again (tls.go).
	if _, err := s.ca.ServerCert(s.opts.Hostnames); err != nil {
		return fmt.Errorf("starting the server: %w", err)
	}
	stls, err := s.newServerTLS()
	if err != nil {
		return fmt.Errorf("starting the server: %w", err)
	}
	// connRouter does the handshake with it (h2 included, see
	// newServerTLS), then hands the connection to one of two gRPC servers.
	tlsConf := stls.config()
	s.hup.tls.Store(stls)
	lis, err := net.Listen("tcp", s.opts.Listen)
	if err != nil {
		return fmt.Errorf("starting the server: %w", err)
	}
	s.Addr = lis.Addr().String()
	s.lis = lis
	router := newConnRouter(lis, tlsConf, s.opts.MaxConnections, s.opts.MaxAnonymousConnections, s.opts.AnonymousTimeout, s.log, s.metrics)
	common := []grpc.ServerOption{
		grpc.Creds(handshaken{}),
		// Per-connection buffers: a fleet is many mostly idle
		// connections (a Watch stream each). No read buffer: every
		// connection is a tls.Conn, which holds the decrypted record
		// already, so grpc's bufio.Reader on top of it was a second copy
		// of the same bytes, 8 KiB a node held for the connection's life
		// (32 KiB by default). The write buffer is taken from a shared
		// pool for each flush and given back (grpc's default since 1.66),
		// so it costs nothing while idle; 8 KiB still batches a
		// check-in's answer into one TLS record.
		grpc.ReadBufferSize(0),
		grpc.WriteBufferSize(8 << 10),
		grpc.ConnectionTimeout(10 * time.Second),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 20 * time.Second, PermitWithoutStream: true}),
	}
	s.grpc = grpc.NewServer(append(common,
		// Last wins: connections with a client certificate are also
		// closed when it expires or its name is revoked (server/tls.go).
		grpc.Creds(closingCreds{TransportCredentials: handshaken{}, conns: &s.clientConns}),
		grpc.InTapHandle(s.recvDeadline),
		grpc.ChainUnaryInterceptor(s.unaryAuth, s.unaryMetrics),
		grpc.ChainStreamInterceptor(s.streamReceived, s.streamAuth),
		grpc.MaxRecvMsgSize(s.opts.MaxMessageBytes),
		grpc.MaxConcurrentStreams(s.opts.MaxStreams),
		grpc.MaxHeaderListSize(64<<10),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 2 * time.Minute, Timeout: 20 * time.Second, MaxConnectionIdle: s.opts.IdleTimeout}),
	)...)
	// Without a certificate only Enroll is allowed (the interceptor
	// refuses the rest, with the same answers as on the other server), so
	// everything here is small and short: a message, the headers, the
	// streams per connection, the life of a call and of an idle
	// connection.
	anonIdle := min(30*time.Second, s.opts.IdleTimeout)
	s.anon = grpc.NewServer(append(common,
		grpc.MaxRecvMsgSize(s.opts.MaxEnrollBytes),
		grpc.MaxConcurrentStreams(2),
		grpc.MaxHeaderListSize(16<<10),
		grpc.InitialWindowSize(int32(max(s.opts.MaxEnrollBytes, 64<<10))),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 2 * time.Minute, Timeout: 20 * time.Second,
			MaxConnectionIdle: anonIdle, MaxConnectionAge: 2 * time.Minute, MaxConnectionAgeGrace: s.opts.AnonymousTimeout}),
		grpc.InTapHandle(s.anonDeadline),
		grpc.ChainUnaryInterceptor(s.unaryAuth, s.unaryMetrics),
		grpc.ChainStreamInterceptor(s.streamAuth),
	)...)
	for _, g := range []*grpc.Server{s.grpc, s.anon} {
		herdv1.RegisterEnrollServer(g, &enrollService{s: s})
		herdv1.RegisterNodeServer(g, &nodeService{s: s})
		herdv1.RegisterAdminServer(g, &adminService{s: s})
	}
	localLis, err := s.startLocal()
	if err != nil {
		lis.Close()
		return fmt.Errorf("starting the server: %w", err)
	}

	ctx, s.stop = context.WithCancel(ctx)
	g, ctx := errgroup.WithContext(ctx)
	s.group = g
	g.Go(func() error { return router.serve(ctx) })
	// A Close that comes before a Serve makes that Serve return
	// ErrServerStopped: a clean stop, not a failure to serve.
	g.Go(func() error {
		if err := s.grpc.Serve(router.authed); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			return fmt.Errorf("serving gRPC on %s: %w", s.Addr, err)
		}
		return nil
	})
	g.Go(func() error {
		if err := s.anon.Serve(router.open); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			return fmt.Errorf("serving gRPC (enrollment) on %s: %w", s.Addr, err)
		}
		return nil
	})
	g.Go(func() error {
		if err := s.local.Serve(localLis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			return fmt.Errorf("serving the local admin socket: %w", err)
		}
		return nil
	})
	if s.opts.HTTPListen != "off" {
		hl, err := net.Listen("tcp", s.opts.HTTPListen)
		if err != nil {
			lis.Close()
			localLis.Close()
			return fmt.Errorf("starting the server: %w", err)
		}
		s.HTTPAddr = hl.Addr().String()
		// One port, plain HTTP and TLS (server/http.go).
		sniffer := &httpSniffer{lis: hl, tlsConf: httpTLS(stls), out: newChanListener(hl.Addr()), log: s.log}
		s.httpLis = hl
		s.http = &http.Server{Handler: s.httpHandler(), ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 2 * time.Minute,
			MaxHeaderBytes: 64 << 10, ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)}
		g.Go(func() error { return sniffer.serve(ctx) })
		g.Go(func() error {
			// The sniffer closes its output when the port closes.
			if err := s.http.Serve(sniffer.out); !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("serving HTTP on %s: %w", s.HTTPAddr, err)
			}
			return nil
		})
	}
	watchSite := s.watchSite()
	g.Go(func() error { return watchSite(ctx) })
	s.started = time.Now()
	g.Go(func() error { s.prune(ctx); return nil })
	g.Go(func() error { s.sweepNodes(ctx); return nil })
	g.Go(func() error { s.runAudits(ctx); return nil })
	g.Go(func() error { stls.rotateLoop(ctx); return nil })
	if s.st.Postgres() {
		g.Go(func() error { s.hearRevocations(ctx); return nil })
		g.Go(func() error { s.hearReleases(ctx); return nil })
		g.Go(func() error { s.laterReleases(ctx); return nil })
		g.Go(func() error { s.sendReleases(ctx); return nil })
		g.Go(func() error { s.hearAudits(ctx); return nil })
		g.Go(func() error { s.lead(ctx, &s.auditLead); return nil })
		g.Go(func() error { s.hearRolloutWork(ctx); return nil })
		g.Go(func() error { s.hearRolloutState(ctx); return nil })
		g.Go(func() error { s.hearAnswers(ctx); return nil })
		g.Go(func() error { s.send(ctx, &s.work); return nil })
		g.Go(func() error { s.send(ctx, &s.state); return nil })
		g.Go(func() error { s.send(ctx, &s.answers); return nil })
		g.Go(func() error { s.followRollouts(ctx); return nil })
		g.Go(func() error { s.lead(ctx, &s.rolloutLead); return nil })
	}
	g.Go(func() error {
		<-ctx.Done()
		s.shutdown()
		return nil
	})
	// Any goroutine's error cancels ctx, which shuts the rest down; the
	// owner learns of it through Err instead of a process serving
	// nothing.
	go func() {
		if err := g.Wait(); err != nil {
			s.log.Error("the server stopped", "err", err)
			s.errc <- err
		}
		close(s.errc)
	}()
	s.log.Info("serving", "grpc", s.Addr, "http", s.HTTPAddr, "site", s.opts.Site, "environments", s.envs.names(), "version", s.envs.defaultEnv().site.Load().version)
	return nil
}

// Err returns a channel that carries the error that stopped the server
// (a listener failed, the watcher gave up) and is closed once the server
// has stopped, as etcd's embed.Etcd.Err does. Its owner selects on it
// beside its own signals: a server that cannot serve must not keep the
// process running. Before Start, nothing is ever sent.
func (s *Server) Err() <-chan error { return s.errc }

// Close stops serving: open streams end, in-flight calls finish, the
// store's writer drains. It returns the error that stopped the serving
// goroutines, if one did, joined with the store's.
func (s *Server) Close() error {
	var serveErr error
	if s.stop != nil {
		s.stop()
		serveErr = s.group.Wait()
	}
	s.shutdown()
	s.closeControllers()
	return errors.Join(serveErr, s.st.Close())
}

// closeControllers stops every environment's rollout controller.
func (s *Server) closeControllers() {
	for _, e := range s.envs.all() {
		e.ctl.close()
	}
}

func (s *Server) shutdown() {
	s.once.Do(func() {
		s.watch.closeAll()
		if s.local != nil {
			s.local.Stop()
		}
		var wg sync.WaitGroup
		for _, g := range []*grpc.Server{s.grpc, s.anon} {
			if g == nil {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				done := make(chan struct{})
				go func() { g.GracefulStop(); close(done) }()
				select {
				case <-done:
				case <-time.After(3 * time.Second):
					// Calls in flight had their chance; thousands of
					// idle connections are not worth waiting for.
					g.Stop()
				}
			}()
		}
		wg.Wait()
		// After the gRPC servers: they have stopped taking connections,
		// so the router's end is a clean one.
		if s.lis != nil {
			s.lis.Close()
		}
		if s.http != nil {
			s.httpLis.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			s.http.Shutdown(ctx)
			cancel()
		}
	})
}

// anonDeadline bounds a call on a connection without a client
// certificate, receiving its message included: a client that stalls
// halfway through a message holds its bytes for AnonymousTimeout at most.
func (s *Server) anonDeadline(ctx context.Context, _ *tap.Info) (context.Context, error) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.AnonymousTimeout)
	// The stream's own cancel, when the call ends, ends ctx too; then
	// cancel has nothing left to release, but vet cannot see that.
	context.AfterFunc(ctx, cancel)
	return ctx, nil
}

// defaultMaxConnections leaves room under the file descriptor limit for
// the store, the site and the HTTP port.
func defaultMaxConnections() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur > 1<<20 {
		return 16384
	}
	return max(int(rl.Cur)-512, 64)
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
			if _, err := s.ca.Retire(ctx); err != nil {
				s.log.Warn("retiring the previous CA", "err", err)
			}
		}
	}
}

// CA returns the server's certificate authority (for `herd up` and tests
// that issue admin certificates).
func (s *Server) CA() *ca.CA { return s.ca }

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	st := s.defaultSite()
	if st == nil || st.site == nil {
		http.Error(w, "no site loaded", http.StatusServiceUnavailable)
		return
	}
	// A server whose store cannot commit refuses every report: that is
	// not healthy, whatever else works.
	if err := s.checkStore(r.Context()); err != nil {
		http.Error(w, "store: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintf(w, "ok %s\n", st.version)
}

// checkStore is the store's write check, at most once a second.
func (s *Server) checkStore(ctx context.Context) error {
	s.health.Lock()
	defer s.health.Unlock()
	if !s.health.at.IsZero() && time.Since(s.health.at) < time.Second {
		return s.health.err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	s.health.err = s.st.CheckWrite(ctx)
	s.health.at = time.Now()
	return s.health.err
}
