package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/herdcm/herd/cmd/nodecmd"
	"github.com/herdcm/herd/sdnotify"
	"github.com/herdcm/herd/server"
	"github.com/herdcm/herd/server/store"
)

// serverConfig is server.toml; every setting is also a flag of the same
// name ("_" spelled "-"), and flags win.
type serverConfig struct {
	Site            string           `toml:"site"`
	Environments    []string         `toml:"environments"`
	DefaultEnv      string           `toml:"default_environment"`
	Dir             string           `toml:"dir"`
	Listen          string           `toml:"listen"`
	HTTPListen      string           `toml:"http_listen"`
	Hostnames       []string         `toml:"hostnames"`
	CheckinInterval nodecmd.Duration `toml:"checkin_interval"`
	Debounce        nodecmd.Duration `toml:"debounce"`
	MaxInFlight     int              `toml:"max_in_flight"`
	CompileWorkers  int              `toml:"compile_workers"`
	Retain          nodecmd.Duration `toml:"retain"`
	NodeTTL         nodecmd.Duration `toml:"node_ttl"`
	NodePurgeTTL    nodecmd.Duration `toml:"node_purge_ttl"`
	AuditStale      nodecmd.Duration `toml:"audit_stale"`
	CACert          string           `toml:"ca_cert"`
	CAKey           string           `toml:"ca_key"`
	NodeCertTTL     nodecmd.Duration `toml:"node_cert_ttl"`
	LogLevel        string           `toml:"log_level"`
	LogFormat       string           `toml:"log_format"`
	AcceptEmpty     bool             `toml:"accept_empty_store"`
	Store           string           `toml:"store"`

	MaxConnections     int              `toml:"max_connections"`
	MaxAnonymous       int              `toml:"max_anonymous_connections"`
	MaxEnrollBytes     int              `toml:"max_enroll_bytes"`
	AnonymousTimeout   nodecmd.Duration `toml:"anonymous_timeout"`
	IdleTimeout        nodecmd.Duration `toml:"idle_timeout"`
	ReceiveTimeout     nodecmd.Duration `toml:"receive_timeout"`
	MaxCallsPerNode    int              `toml:"max_calls_per_node"`
	MaxWatchesPerNode  int              `toml:"max_watches_per_node"`
	ReportBytesPerHour int64            `toml:"report_bytes_per_hour"`
	FactsBytesPerHour  int64            `toml:"facts_bytes_per_hour"`
}

// check refuses settings that cannot mean anything: a negative limit
// would otherwise fall back to the default without a word.
func (c *serverConfig) check() error {
	for name, v := range map[string]int64{
		"max-in-flight": int64(c.MaxInFlight), "compile-workers": int64(c.CompileWorkers),
		"max-connections": int64(c.MaxConnections), "max-anonymous-connections": int64(c.MaxAnonymous),
		"max-enroll-bytes": int64(c.MaxEnrollBytes), "max-calls-per-node": int64(c.MaxCallsPerNode),
		"max-watches-per-node": int64(c.MaxWatchesPerNode), "report-bytes-per-hour": c.ReportBytesPerHour,
		"facts-bytes-per-hour": c.FactsBytesPerHour, "anonymous-timeout": int64(c.AnonymousTimeout),
		"idle-timeout": int64(c.IdleTimeout), "receive-timeout": int64(c.ReceiveTimeout),
		"audit-stale": int64(c.AuditStale),
	} {
		if v < 0 {
			return fmt.Errorf("%s is %d: want 0 (the default) or more", name, v)
		}
	}
	if err := server.CheckNodeTTLs(time.Duration(c.NodeTTL), time.Duration(c.NodePurgeTTL)); err != nil {
		return err
	}
	if err := server.CheckEnvironments(c.Environments, c.DefaultEnv); err != nil {
		return err
	}
	if c.Store != "" {
		if err := store.CheckLocation(c.Store); err != nil {
			return err
		}
	}
	// An enrollment is a name, a CSR and a token: past 16 MiB the limit
	// would protect nothing.
	if c.MaxEnrollBytes > 16<<20 {
		return fmt.Errorf("max-enroll-bytes is %d: want at most %d", c.MaxEnrollBytes, 16<<20)
	}
	return nil
}

func newServerCmd() *cobra.Command {
	cfg := serverConfig{
		Dir: "/var/lib/herd-server", Listen: "127.0.0.1:8140", HTTPListen: "127.0.0.1:8141",
		CheckinInterval: nodecmd.Duration(30 * time.Minute), Debounce: nodecmd.Duration(500 * time.Millisecond), MaxInFlight: 256, LogLevel: "info", LogFormat: nodecmd.LogFormatAuto,
		Retain: nodecmd.Duration(90 * 24 * time.Hour), NodeCertTTL: nodecmd.Duration(30 * 24 * time.Hour),
	}
	var configFile string
	cmd := &cobra.Command{
		Use:   "server [--config server.toml]",
		Short: "Serve a site to the fleet: enrollment, catalogs, files, reports",
		Long: `Run the Herd server: it compiles one signed catalog per node from the site,
serves it over gRPC with mutual TLS, and records facts and reports in its
store: sqlite in --dir, or a PostgreSQL database (--store postgres://…). The first start creates the CA, the server certificate and
the catalog signing key under --dir.

The site is watched: an edit (or a git commit) is debounced, the fleet is
recompiled, and agents holding a Watch stream converge at once. A site that
fails to load leaves the previous version served; a node whose compile fails
keeps its last good catalog (see herd nodes).

With --environments (server.toml environments = ["production", "staging"],
or globs such as "feature-*") the site must be a git repository and each
local branch they name is an environment: loaded at its commit, with its
own version, compiles and rollouts. A node's environment is its nodes.toml
rule's environment in the default environment's branch, else its agent's
--environment, else --default-environment (default production).

Settings come from --config (TOML, decoded strictly) and flags; flags win.
SIGHUP reloads: the site is loaded again, the TLS certificate and session
ticket keys read again, revocations in the store or the CRL taken, and
server.toml read again: log_level changes at once, and every other changed
setting is logged as needing a restart. Under systemd (Type=notify) it
says READY=1, RELOADING=1 and STOPPING=1, and pings the watchdog.
SIGINT or SIGTERM stops it gracefully. When serving fails (a listener
dies), it exits 1 with the error.

It refuses to start when its store is empty (lost, truncated) but its CA
exists: restore the store from a backup, or pass --accept-empty-store.`,
		Example: `  herd server --site /srv/site --dir /var/lib/herd-server --listen 0.0.0.0:8140 --hostnames herd.example.com
  herd server --config /etc/herd/server.toml
  herd server --site /srv/site --environments production,staging,'feature-*'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// SIGHUP reloads (serverreload.go); caught from the start, as
			// it would otherwise kill the server.
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			notify, err := sdnotify.FromEnv()
			if err != nil {
				return err
			}
			defaults := cfg
			if err := nodecmd.ApplyConfigFile(cmd, configFile, &cfg); err != nil {
				return err
			}
			if cfg.Site == "" {
				return nodecmd.UsageError(cmd, "a site is required (--site or site in the config file)")
			}
			if err := cfg.check(); err != nil {
				return nodecmd.UsageError(cmd, err.Error())
			}
			// On a terminal a fleet recompile shows how far it has come;
			// the log goes through the same line keeper.
			progress := nodecmd.NewProgress(cmd.ErrOrStderr())
			log, level, err := nodecmd.LoggerProgress(cmd, progress, cfg.LogLevel, cfg.LogFormat)
			if err != nil {
				return nodecmd.UsageError(cmd, err.Error())
			}
			s, err := server.New(cmd.Context(), server.Options{
				Site: cfg.Site, Environments: cfg.Environments, DefaultEnvironment: cfg.DefaultEnv, Dir: cfg.Dir, Listen: cfg.Listen, HTTPListen: cfg.HTTPListen, Hostnames: cfg.Hostnames,
				CheckinInterval: time.Duration(cfg.CheckinInterval), Debounce: time.Duration(cfg.Debounce),
				MaxInFlight: cfg.MaxInFlight, CompileWorkers: cfg.CompileWorkers, Retain: time.Duration(cfg.Retain),
				CACertFile: cfg.CACert, CAKeyFile: cfg.CAKey, NodeCertValidity: time.Duration(cfg.NodeCertTTL), AcceptEmptyStore: cfg.AcceptEmpty, Store: cfg.Store, Log: log,
				MaxConnections: cfg.MaxConnections, MaxAnonymousConnections: cfg.MaxAnonymous, MaxEnrollBytes: cfg.MaxEnrollBytes,
				AnonymousTimeout: time.Duration(cfg.AnonymousTimeout), IdleTimeout: time.Duration(cfg.IdleTimeout),
				ReceiveTimeout:  time.Duration(cfg.ReceiveTimeout),
				MaxCallsPerNode: cfg.MaxCallsPerNode, MaxWatchesPerNode: cfg.MaxWatchesPerNode,
				ReportBytesPerHour: cfg.ReportBytesPerHour, FactsBytesPerHour: cfg.FactsBytesPerHour,
				NodeTTL: time.Duration(cfg.NodeTTL), NodePurgeTTL: time.Duration(cfg.NodePurgeTTL),
				AuditStale: time.Duration(cfg.AuditStale),
				Progress: func(done, total int) {
					progress.Count("compiling the fleet", "nodes", done, total)
				},
			})
			if err != nil {
				return nodecmd.SiteError(cfg.Site, err)
			}
			if err := s.Start(cmd.Context()); err != nil {
				s.Close()
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "herd server: gRPC on %s, metrics on %s, site %s\n", s.Addr, s.HTTPAddr, cfg.Site)
			if err := notify.Ready(serverStatus(s)); err != nil {
				log.Warn("telling systemd the server is ready", "err", err)
			}
			defer notify.Stopping("stopping")
			reload := &serverReload{cmd: cmd, configFile: configFile, defaults: defaults, running: &cfg, level: level, notify: notify, log: log}
			// The watchdog pings while this loop comes round.
			wd := notify.Watchdog()
			wctx, stopWatchdog := context.WithCancel(cmd.Context())
			defer stopWatchdog()
			go wd.Run(wctx)
			var tick <-chan time.Time
			if every := wd.Every(); every > 0 {
				t := time.NewTicker(every)
				defer t.Stop()
				tick = t.C
			}
			for {
				wd.Alive(2 * wd.Every())
				// A server whose listener failed serves nothing: exit
				// non-zero with its error rather than wait for a signal
				// that may never come.
				select {
				case <-cmd.Context().Done():
					nodecmd.LogStop(cmd.Context(), log, "server")
					return s.Close()
				case err, ok := <-s.Err():
					cerr := s.Close()
					if !ok {
						return cerr
					}
					return fmt.Errorf("herd server stopped: %w", err)
				case <-tick:
				case <-hup:
					// A reload may load and compile a whole site: the loop
					// promises to be back within a bound that covers it.
					wd.Alive(reloadBound)
					reload.do(cmd.Context(), s)
				}
			}
		},
	}
	f := cmd.Flags()
	f.StringVar(&configFile, "config", "", "a TOML file with any of these settings")
	f.StringVar(&cfg.Site, "site", cfg.Site, "the site directory (a git work tree gives versions by commit)")
	f.StringSliceVar(&cfg.Environments, "environments", nil, "serve these branches of the site's git repository as environments (names or globs; default: the site as it is, one environment)")
	f.StringVar(&cfg.DefaultEnv, "default-environment", "", "the environment of a node nothing else places, one of the branches (default production; needs --environments)")
	f.StringVar(&cfg.Dir, "dir", cfg.Dir, "the server's state: CA, signing key, store, file contents")
	f.StringVar(&cfg.Listen, "listen", cfg.Listen, "gRPC address")
	f.StringVar(&cfg.HTTPListen, "http-listen", cfg.HTTPListen, `address of /healthz and /metrics, and over TLS of sign-in and /api/v1 ("off" to disable)`)
	f.StringSliceVar(&cfg.Hostnames, "hostnames", nil, "names and addresses in the server's certificate (default localhost, 127.0.0.1, this host)")
	f.Var(&cfg.CheckinInterval, "checkin-interval", "how often nodes check in; the server spreads them over it")
	f.Var(&cfg.Debounce, "debounce", "quiet time before a site change is loaded")
	f.IntVar(&cfg.MaxInFlight, "max-in-flight", cfg.MaxInFlight, "check-ins and reports handled at once; more wait up to a second, then get RESOURCE_EXHAUSTED with a retry hint")
	f.IntVar(&cfg.CompileWorkers, "compile-workers", 0, "parallel compiles (default: one per core)")
	f.Var(&cfg.Retain, "retain", "how long reports and history are kept")
	f.Var(&cfg.NodeTTL, "node-ttl", "deactivate a node that has not checked in for this long (0: never); a check-in brings it back")
	f.Var(&cfg.NodePurgeTTL, "node-purge-ttl", "purge a node (its data deleted, its certificates revoked) this long after its deactivation (0: never; needs --node-ttl, at least as long)")
	f.Var(&cfg.AuditStale, "audit-stale", "a node without a report for this long is no-data for every audit control (default 2h)")
	f.StringVar(&cfg.CACert, "ca-cert", "", "an existing CA certificate (PEM) to issue from, instead of creating one under --dir")
	f.StringVar(&cfg.CAKey, "ca-key", "", "the private key (PEM) of --ca-cert")
	f.IntVar(&cfg.MaxConnections, "max-connections", 0, "open gRPC connections at most; more are closed at once (default: the fd limit less 512)")
	f.IntVar(&cfg.MaxAnonymous, "max-anonymous-connections", 0, "connections without a client certificate (enrollment only) at most (default 256)")
	f.IntVar(&cfg.MaxEnrollBytes, "max-enroll-bytes", 0, "largest message on a connection without a client certificate (default 65536)")
	f.Var(&cfg.AnonymousTimeout, "anonymous-timeout", "handshake and call time limit without a client certificate (default 10s)")
	f.Var(&cfg.IdleTimeout, "idle-timeout", "close a connection with no call open for this long (default 15m; 30s without a certificate)")
	f.Var(&cfg.ReceiveTimeout, "receive-timeout", "time a call's request may take to arrive, with a client certificate (default 1m)")
	f.IntVar(&cfg.MaxCallsPerNode, "max-calls-per-node", 0, "one node's share of --max-in-flight (default 4)")
	f.IntVar(&cfg.MaxWatchesPerNode, "max-watches-per-node", 0, "Watch streams one node may hold; a newer one ends its oldest (default 4)")
	f.Int64Var(&cfg.ReportBytesPerHour, "report-bytes-per-hour", 0, "report bytes a node may send an hour (default 64 MiB)")
	f.Int64Var(&cfg.FactsBytesPerHour, "facts-bytes-per-hour", 0, "bytes of changed facts a node may send an hour (default 8 MiB)")
	f.StringVar(&cfg.Store, "store", "", "the store: a sqlite file, or a PostgreSQL URL postgres://USER@HOST/DB (password from PGPASSWORD or ~/.pgpass) (default DIR/herd.db)")
	f.BoolVar(&cfg.AcceptEmpty, "accept-empty-store", false, "start although the store is empty and the CA exists (the store was lost: revocations and history start from nothing)")
	f.Var(&cfg.NodeCertTTL, "node-cert-ttl", "how long a node certificate is valid; agents renew at two thirds of it")
	f.StringVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "debug, info, warn or error")
	nodecmd.LogFormatFlag(cmd, &cfg.LogFormat)
	return cmd
}
