package fleet

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/herdcm/herd/agent"
	"github.com/herdcm/herd/agent/resources"
	"github.com/herdcm/herd/agent/sandbox"
	"github.com/herdcm/herd/api/herdv1"
	"github.com/herdcm/herd/server"
	"github.com/herdcm/herd/server/ca"
)

// Fleet is a real server on 127.0.0.1 (real TLS, sqlite in a temp dir) and
// agents, each with its own sandbox root, running the real daemon in this
// process.
type Fleet struct {
	tb     testing.TB
	opts   Options
	Site   string
	Dir    string // the server's state
	Server *server.Server
	Admin  herdv1.AdminClient
	Agents []*Agent
	addr   string
	log    *slog.Logger
	// httpAddr is the HTTP port's address ("" when off), kept across
	// StopServer/StartServer.
	httpAddr string
}

// Agent is one node of a Fleet.
type Agent struct {
	Name   string
	Root   string
	Daemon *agent.Daemon
	stop   context.CancelFunc
	done   chan error
	opts   agent.DaemonOptions
	// running says a daemon runs, for halt: Stop, Restart and the fleet's
	// cleanup may each halt the agent.
	running bool
}

// Options are the fleet's timers. The defaults are the production ones;
// a test that stops and restarts the server shortens Retry, so that the
// agents come back in milliseconds instead of seconds.
type Options struct {
	// Debounce is the server's wait for a site change to settle (default
	// 50 ms).
	Debounce time.Duration
	// Retry is the agents' first wait before they retry a failed
	// check-in and reconnect their Watch stream (default: the agent's, 10
	// seconds and 1 second).
	Retry time.Duration
	// ConnectWait is how long an agent waits for a connection before it
	// takes the server to be away (default: the agent's, 3 seconds).
	ConnectWait time.Duration
	// Services gives each daemon its supervisor (agent.OwnServices), as
	// herd agent has, for sites with provider-herd services; every
	// service is stopped when the test ends. Without it a service
	// resource fails for want of a supervisor.
	Services bool
	// AuditInterval is each daemon's DaemonOptions.AuditInterval: audit
	// runs between applies (default off).
	AuditInterval time.Duration
	// HTTP opens the server's HTTP port on 127.0.0.1 (the API, the
	// dashboard, /metrics); HTTPClient reaches it as an admin.
	HTTP bool
	// Environments is the server's Options.Environments: the site's
	// branches it serves (default: the site as it is).
	Environments []string
	// AgentEnvironment gives a node's agent its DaemonOptions.Environment
	// (the environment it asks for), by node name.
	AgentEnvironment map[string]string
	// Store is the server's store (server.Options.Store): a PostgreSQL
	// URL such as testkit.Postgres gives; empty, sqlite in the fleet's
	// directory.
	Store string
	// LogTo, when set, receives every log line of the server and the
	// agents at debug level (the test's log keeps warnings only).
	LogTo io.Writer
}

// NewFleet starts a server for site and n agents named node-1 … node-n,
// enrolled with a join token, each running its daemon until the test ends.
// Agents check in hourly: their runs come from the server's Watch stream
// (or Trigger), so that tests say when a run happens.
func NewFleet(tb testing.TB, site string, n int) *Fleet {
	tb.Helper()
	return NewFleetWith(tb, site, n, Options{})
}

// NewFleetWith is NewFleet with timers.
func NewFleetWith(tb testing.TB, site string, n int, o Options) *Fleet {
	tb.Helper()
	if o.Debounce == 0 {
		o.Debounce = 50 * time.Millisecond
	}
	f := &Fleet{tb: tb, opts: o, Site: site, Dir: tb.TempDir(), addr: "127.0.0.1:0",
		log: slog.New(slog.NewTextHandler(logWriter{tb}, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	if o.LogTo != nil {
		f.log = slog.New(slog.NewTextHandler(o.LogTo, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if o.HTTP {
		f.httpAddr = "127.0.0.1:0"
	}
	f.StartServer()
	tb.Cleanup(func() {
		for _, a := range f.Agents {
			a.halt()
			if o.Services {
				StopServices(tb, a.Root)
			}
		}
		if f.Server != nil {
			f.Server.Close()
		}
	})
	certPEM, keyPEM, err := f.Server.CA().IssueAdmin(context.Background(), "fleet-admin")
	if err != nil {
		tb.Fatal(err)
	}
	f.Admin = herdv1.NewAdminClient(f.dial(certPEM, keyPEM))
	for i := 1; i <= n; i++ {
		f.AddAgent("node-" + strconv.Itoa(i))
	}
	return f
}

// StartServer starts (or restarts, on the same address and state) the
// server.
func (f *Fleet) StartServer() {
	f.tb.Helper()
	httpListen := "off"
	if f.httpAddr != "" {
		httpListen = f.httpAddr
	}
	s, err := server.New(context.Background(), server.Options{
		Site: f.Site, Dir: f.Dir, Listen: f.addr, HTTPListen: httpListen, Debounce: f.opts.Debounce, Log: f.log, Store: f.opts.Store,
		Environments: f.opts.Environments,
	})
	if err != nil {
		f.tb.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		f.tb.Fatal(err)
	}
	f.Server, f.addr = s, s.Addr
	if f.httpAddr != "" {
		f.httpAddr = s.HTTPAddr
	}
}

// HTTPClient returns a client of the server's HTTP port (Options.HTTP)
// signed in with a new admin certificate, and the port's https base URL.
func (f *Fleet) HTTPClient() (*http.Client, string) {
	f.tb.Helper()
	if f.httpAddr == "" {
		f.tb.Fatal("the fleet has no HTTP port: set Options.HTTP")
	}
	certPEM, keyPEM, err := f.Server.CA().IssueAdmin(context.Background(), "fleet-http")
	if err != nil {
		f.tb.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		f.tb.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.CertPEM(f.Server.CA().CACertDER()))
	tr := &http.Transport{TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}, RootCAs: pool, ServerName: "127.0.0.1"}}
	f.tb.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}, "https://" + f.httpAddr
}

// StopServer stops the server; the agents go on with their cached
// catalogs and spool their reports.
func (f *Fleet) StopServer() {
	f.tb.Helper()
	if err := f.Server.Close(); err != nil {
		f.tb.Fatal(err)
	}
	f.Server = nil
}

// AddAgent enrolls a node and starts its daemon.
func (f *Fleet) AddAgent(name string) *Agent {
	f.tb.Helper()
	ctx := context.Background()
	root := filepath.Join(f.tb.TempDir(), name)
	if err := os.MkdirAll(root, 0o755); err != nil {
		f.tb.Fatal(err)
	}
	if err := sandbox.Init(root); err != nil {
		f.tb.Fatal(err)
	}
	caFile := filepath.Join(root, "ca.crt")
	if err := os.WriteFile(caFile, ca.CertPEM(f.Server.CA().CACertDER()), 0o644); err != nil {
		f.tb.Fatal(err)
	}
	certDir := agent.DefaultStateDir(root).TLS()
	token := func(ctx context.Context) (string, error) {
		token, _, err := f.Server.CA().NewToken(ctx, name, time.Hour, true)
		return token, err
	}
	if _, err := agent.EnrollIfNeeded(ctx, agent.EnrollOptions{Server: f.addr, Name: name, Dir: certDir, CAFile: caFile, Log: f.log}, token); err != nil {
		f.tb.Fatalf("enrolling %s: %v", name, err)
	}
	opts := agent.DaemonOptions{
		Server: f.addr, Root: root, CertDir: certDir, Interval: time.Hour, Log: f.log,
		MinBackoff: f.opts.Retry, WatchBackoff: f.opts.Retry, ConnectWait: f.opts.ConnectWait,
		AuditInterval: f.opts.AuditInterval, Environment: f.opts.AgentEnvironment[name],
	}
	if f.opts.Services {
		opts.Services = func(ctx context.Context, st *agent.State) (resources.Services, func(), error) {
			s, err := agent.OwnServices(ctx, st, root, f.log)
			if err != nil {
				return nil, nil, err
			}
			return s, func() { s.Close() }, nil
		}
	}
	a := &Agent{Name: name, Root: root, opts: opts}
	a.start(f.tb)
	f.Agents = append(f.Agents, a)
	return a
}

// Stop stops the agent's daemon and closes it, so that a test may run
// one of its own on the agent's state (a partial --once run); the fleet's
// cleanup stopping it again does nothing.
func (a *Agent) Stop() { a.halt() }

func (a *Agent) start(tb testing.TB) {
	tb.Helper()
	d, err := agent.NewDaemon(context.Background(), a.opts)
	if err != nil {
		tb.Fatal(err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	a.Daemon, a.stop, a.done, a.running = d, stop, make(chan error, 1), true
	go func() { a.done <- d.Run(runCtx) }()
}

// Restart stops the agent's daemon and starts it again with the same
// options, as a restarted herd agent: between the two, before is called
// (which may change the agent's state or certificate directory).
func (a *Agent) Restart(tb testing.TB, before func()) {
	tb.Helper()
	a.halt()
	if before != nil {
		before()
	}
	a.start(tb)
}

func (a *Agent) halt() {
	if !a.running {
		return
	}
	a.running = false
	a.stop()
	select {
	case <-a.done:
	case <-time.After(30 * time.Second):
	}
	a.Daemon.Close()
}

// AwaitConverged waits until every agent's newest run applied the catalog
// the server has for it now, without a failure, and returns the catalog
// etag of each node. A node whose catalog is still the one named in
// before (a previous AwaitConverged's result) is not converged yet: pass
// it after a change to wait for the change.
func (f *Fleet) AwaitConverged(timeout time.Duration, before map[string]string) map[string]string {
	f.tb.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for {
		resp, err := f.Admin.ListNodes(context.Background(), &herdv1.ListNodesRequest{})
		if err == nil {
			etags, pending := map[string]string{}, []string{}
			byName := map[string]*herdv1.NodeInfo{}
			for _, n := range resp.Nodes {
				byName[n.Name] = n
			}
			for _, a := range f.Agents {
				n := byName[a.Name]
				switch {
				case n == nil || n.CatalogEtag == "":
					pending = append(pending, a.Name+": no catalog")
				case before != nil && n.CatalogEtag == before[a.Name]:
					pending = append(pending, a.Name+": no new catalog yet")
				case n.AppliedEtag != n.CatalogEtag:
					pending = append(pending, a.Name+": runs "+short(n.AppliedEtag)+", should run "+short(n.CatalogEtag))
				case n.LastSummary.GetFailed() > 0:
					pending = append(pending, a.Name+": its last run failed")
				default:
					etags[a.Name] = n.CatalogEtag
				}
			}
			if len(pending) == 0 {
				return etags
			}
			last = strings.Join(pending, "; ")
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			f.tb.Fatalf("the fleet did not converge in %s: %s", timeout, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// WriteSite changes files of the site; the server sees the change, and the
// agents hear of their new catalogs through Watch.
func (f *Fleet) WriteSite(files map[string]string) {
	f.tb.Helper()
	for name, content := range files {
		p := filepath.Join(f.Site, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			f.tb.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			f.tb.Fatal(err)
		}
	}
}

func (f *Fleet) dial(certPEM, keyPEM []byte) *grpc.ClientConn {
	f.tb.Helper()
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		f.tb.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.CertPEM(f.Server.CA().CACertDER()))
	conf := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}, RootCAs: pool}
	// A target that survives StopServer/StartServer: the address stays.
	conn, err := grpc.NewClient(f.addr, grpc.WithTransportCredentials(credentials.NewTLS(conf)))
	if err != nil {
		f.tb.Fatal(err)
	}
	f.tb.Cleanup(func() { conn.Close() })
	return conn
}

type logWriter struct{ tb testing.TB }

func (w logWriter) Write(p []byte) (int, error) {
	w.tb.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func short(etag string) string {
	if len(etag) > 19 {
		return etag[:19]
	}
	if etag == "" {
		return "nothing"
	}
	return etag
}
