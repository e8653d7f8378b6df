package nodecmd

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/herdcm/herd/agent"
	"github.com/herdcm/herd/catalogs"
	"github.com/herdcm/herd/sdnotify"
)

// agentConfig is agent.toml; every setting is also a flag of the same
// name ("_" spelled "-"), and flags win.
type agentConfig struct {
	Server           ServerList `toml:"server"`
	Site             string     `toml:"site"`
	ServerName       string     `toml:"server_name"`
	Name             string     `toml:"name"`
	JoinToken        string     `toml:"join_token"`
	CAFile           string     `toml:"ca_file"`
	CAFingerprint    string     `toml:"ca_fingerprint"`
	Root             string     `toml:"root"`
	StateDir         string     `toml:"state_dir"`
	Interval         Duration   `toml:"interval"`
	Splay            Duration   `toml:"splay"`
	AuditInterval    Duration   `toml:"audit_interval"`
	Environment      string     `toml:"environment"`
	Noop             bool       `toml:"noop"`
	Parallel         int        `toml:"parallel"`
	ResourceTimeout  Duration   `toml:"resource_timeout"`
	RunTimeout       Duration   `toml:"run_timeout"`
	FactsDir         string     `toml:"facts_dir"`
	SandboxFactsExec bool       `toml:"sandbox_facts_exec"`
	SecretsKey       string     `toml:"secrets_key"`
	LogLevel         string     `toml:"log_level"`
	LogFormat        string     `toml:"log_format"`
}

// minAuditInterval is the shortest audit_interval the agent takes.
const minAuditInterval = 10 * time.Second

// defaultAgentServer is the server an agent talks to unless told.
const defaultAgentServer = "127.0.0.1:8140"

func newAgentCmd() *cobra.Command {
	cfg := agentConfig{
		Server: ServerList{defaultAgentServer}, Root: "/", Interval: Duration(30 * time.Minute), Splay: Duration(time.Minute),
		Parallel: 4, ResourceTimeout: Duration(10 * time.Minute), RunTimeout: Duration(time.Hour), LogLevel: "info",
		LogFormat: LogFormatAuto,
	}
	defaults := cfg
	var (
		configFile string
		once       bool
		reenroll   bool
		tags, only []string
	)
	cmd := &cobra.Command{
		Use:   "agent --server ADDR [--join-token T] [--once] [--noop] [--root DIR] | agent --site DIR",
		Short: "Run the agent: enroll once, then check in, converge and report",
		Long: `Run the Herd agent on this host.

The first start enrolls: it makes a key (kept 0600 under STATE/tls), asks the
server for a certificate for --name (default: this host's name) and, with a
join token, gets it at once; without one it waits for "herd ca sign NAME".
From then on the node's name is the one in its certificate.

Each run checks in (facts by digest, in full only when they changed), takes
a new signed catalog or keeps the cached one, fetches the files it ships,
converges the host with the same engine as herd apply, and sends the report;
reports wait in a spool until the server has them. With the server
unreachable the last good catalog is applied. A Watch stream makes the agent
run at once when the server releases a new catalog, and files whose resource
says drift = "watch" are put back within a second of a hand edit. With
--audit-interval the agent also checks the host against its cached catalog
that long after each run (noop, no check-in) and reports what differs as
drift; a real run puts the next audit off.

A masterless host runs the daemon with --site DIR instead of --server: it
applies the site from the local checkout at once, again whenever the
checkout changes (debounced), and every --interval, and keeps supervising
the site's services between runs (after herd apply exits, nothing does).
With --site there is no enrollment: --name is the node name, and the
server settings are refused.

Settings come from --config (TOML, decoded strictly) and flags; flags win.
SIGHUP makes the agent run at once with --config read again.

Under systemd (Type=notify) the daemon says READY=1 once its supervisor has
adopted the services, and pings the watchdog while its run loop is alive.
When its own program is replaced (a package upgrade, by its own run or by
hand), it finishes the run, sends the report and re-executes the new
program in place: same pid, every service adopted, none restarted.`,
		Example: `  herd agent --server herd.example.com:8140 --join-token "$TOKEN"
  herd agent --config /etc/herd/agent.toml
  herd agent --server 127.0.0.1:8140 --root /tmp/sandbox --once --noop
  herd agent --config /etc/herd/agent.toml --audit-interval 5m
  herd agent --site /srv/site --interval 15m`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// SIGHUP runs now with the configuration read again (it would
			// otherwise kill the agent); caught from the start.
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			// Taken out of the environment before anything is started,
			// so that no service or command inherits systemd's socket.
			notify, err := sdnotify.FromEnv()
			if err != nil {
				return err
			}
			if err := ApplyConfigFile(cmd, configFile, &cfg); err != nil {
				return err
			}
			sel, err := catalogs.ParseSelection(tags, only)
			if err != nil {
				return UsageError(cmd, err.Error())
			}
			if !sel.Empty() && !once {
				// A daemon converging part of its catalog on every run
				// would let the rest drift unseen.
				return UsageError(cmd, "--tags and --only make a partial run: they need --once")
			}
			if cfg.AuditInterval < 0 || (cfg.AuditInterval > 0 && time.Duration(cfg.AuditInterval) < minAuditInterval) {
				// Each audit checks the whole catalog and sends a report:
				// "5ms" is a typo, not a wish to do nothing else.
				return UsageError(cmd, fmt.Sprintf("audit_interval %s: want 0 (off) or at least %s", time.Duration(cfg.AuditInterval), minAuditInterval))
			}
			// The status line of an enrollment waiting for an operator;
			// the log goes through the same line keeper.
			progress := NewProgress(cmd.ErrOrStderr())
			log, _, err := LoggerProgress(cmd, progress, cfg.LogLevel, cfg.LogFormat)
			if err != nil {
				return UsageError(cmd, err.Error())
			}
			if err := prepareSandbox(cfg.Root, cfg.Noop); err != nil {
				return err
			}
			if cfg.Site != "" {
				return runSiteAgent(cmd, cfg, once, sel, hup, notify, log)
			}
			if cfg.SecretsKey != "" {
				// Refused rather than ignored: with a server, the server
				// opens the secrets and seals them to this node.
				return UsageError(cmd, "--secrets-key (secrets_key) has meaning only with --site: with a server, the server opens the site's secrets and seals them to this node's own key")
			}
			state := agent.StateDirOr(cfg.StateDir, cfg.Root)
			stateDir, certDir := state.String(), state.TLS()
			ctx := cmd.Context()
			if reenroll {
				moved, err := agent.Reenroll(certDir)
				if err != nil {
					return err
				}
				if moved != "" {
					log.Info("re-enrolling: the old identity was moved aside", "to", moved)
				}
			}
			name := cfg.Name
			if name == "" {
				name, _ = os.Hostname()
			}
			if _, err := agent.EnrollIfNeeded(ctx, agent.EnrollOptions{
				Server: cfg.Server.String(), ServerName: cfg.ServerName, Name: name, JoinToken: cfg.JoinToken,
				Dir: certDir, CAFile: cfg.CAFile, CAFingerprint: cfg.CAFingerprint, Log: log,
				Waiting: func(fp string, next, waited time.Duration) {
					progress.Status(fmt.Sprintf("waiting %s for an operator to run: herd ca sign %s --fingerprint %s (asking again in %s)",
						waited.Round(time.Second), name, fp, next.Round(time.Second)))
				},
			}, nil); err != nil {
				progress.Clear()
				return err
			}
			progress.Clear()
			out := cmd.OutOrStdout()
			// The daemon owns the state's supervisor for its whole life;
			// a single run uses the daemon's when one runs.
			services := OwnSupervisor(cfg.Root, log)
			if once {
				services = supervisorFor(cfg.Root, log)
			}
			options := func(cfg agentConfig) agent.DaemonOptions {
				return agent.DaemonOptions{
					Server: cfg.Server.String(), ServerName: cfg.ServerName, Root: cfg.Root, StateDir: stateDir, CertDir: certDir,
					Interval: time.Duration(cfg.Interval), Splay: time.Duration(cfg.Splay), AuditInterval: time.Duration(cfg.AuditInterval),
					Noop: cfg.Noop, Parallel: cfg.Parallel,
					ResourceTimeout: time.Duration(cfg.ResourceTimeout), RunTimeout: time.Duration(cfg.RunTimeout),
					FactsDir: cfg.FactsDir, SandboxFactsExec: cfg.SandboxFactsExec, AgentVersion: Version(), Log: log, Once: once,
					Environment: cfg.Environment,
					Services:    services,
					Emit:        func(e agent.Event) { WriteEvent(out, e, false, false) },
				}
			}
			daemonOptions := options
			options = func(cfg agentConfig) agent.DaemonOptions {
				o := daemonOptions(cfg)
				if !once {
					// Each run of the daemon is summed up on stdout, as
					// herd apply's is; --once prints its one report.
					o.Done = func(r *agent.Report) { WriteSummary(out, r) }
				}
				return o
			}
			o := options(cfg)
			o.Notify = notify
			if once {
				o.Select = sel
				d, err := agent.NewDaemon(ctx, o)
				if err != nil {
					return err
				}
				defer d.Close()
				r, err := d.RunOnce(ctx)
				if r != nil {
					WriteSummary(out, r)
				}
				if err != nil {
					return err
				}
				if code := r.ExitCode(); code != 0 {
					return &CodedError{Code: code}
				}
				return nil
			}
			// The daemon watches its own program for a package upgrade
			// and stops for this command to re-execute it (upgrade.go).
			exe, err := os.Executable()
			if err != nil {
				log.Warn("the agent's program is unknown: upgrades take effect at the next restart", "err", err)
			}
			o.Executable = exe
			d, err := agent.NewDaemon(ctx, o)
			if err != nil {
				return err
			}
			closeDaemon := sync.OnceValue(d.Close)
			defer closeDaemon()
			go d.HandleHangups(ctx, hup, func() (agent.DaemonOptions, error) {
				// What a restart would read: defaults, the file, flags.
				next := flagsOver(cmd, defaults, cfg)
				if err := ApplyConfigFile(cmd, configFile, &next); err != nil {
					return agent.DaemonOptions{}, err
				}
				if next.StateDir != cfg.StateDir || next.LogLevel != cfg.LogLevel || next.LogFormat != cfg.LogFormat {
					return agent.DaemonOptions{}, errors.New("state_dir, log_level and log_format change only with a restart of the agent")
				}
				return options(next), nil
			})
			err = d.Run(ctx)
			LogStop(ctx, log, "agent")
			if errors.Is(err, agent.ErrUpgraded) {
				// Everything let go (the supervisor, the locks, the state:
				// all close-on-exec besides), the same pid runs the new
				// program, which adopts the services.
				if cerr := closeDaemon(); cerr != nil {
					log.Warn("closing before the re-exec", "err", cerr)
				}
				signal.Stop(hup)
				return agent.Reexec(exe, notify.Env())
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&configFile, "config", "", "a TOML file with any of these settings")
	f.BoolVar(&reenroll, "reenroll", false, "make a new key and enroll again (after the certificate was revoked or expired); the old identity is moved aside")
	ServerFlag(f, &cfg.Server, "the server's gRPC address; several (repeat the flag or separate with commas) are tried in order, the next when one fails")
	f.StringVar(&cfg.Site, "site", "", "run masterless: apply this local site checkout on a schedule and on change (no server)")
	f.StringVar(&cfg.SecretsKey, "secrets-key", "", "with --site: a copy of the server's secrets key (secrets.key, 0600), to open the site's secrets")
	f.StringVar(&cfg.ServerName, "server-name", "", "the name to verify in the server's certificate (default: the --server host)")
	f.StringVar(&cfg.Name, "name", "", "the node name to enroll as (default: this host's name)")
	f.StringVar(&cfg.JoinToken, "join-token", "", "a join token (herd ca token), so the certificate is issued at once")
	f.StringVar(&cfg.CAFile, "ca-file", "", "the server's CA bundle, to verify it from the first contact on")
	f.StringVar(&cfg.CAFingerprint, "ca-fingerprint", "", "sha256 fingerprint of the server's CA certificate, checked before the join token is sent")
	f.StringVar(&cfg.Root, "root", cfg.Root, "the host root; a directory other than / is a sandbox")
	f.StringVar(&cfg.StateDir, "state-dir", "", "the agent's state directory (default ROOT/var/lib/herd)")
	f.Var(&cfg.Interval, "interval", "time between runs when the server names no check-in time")
	f.Var(&cfg.Splay, "splay", "random delay added to the interval")
	f.Var(&cfg.AuditInterval, "audit-interval", "check the host against its catalog this long after each run and report drift (0: off)")
	f.StringVar(&cfg.Environment, "environment", "", "the environment (site branch) to ask the server for; a classification rule on the server wins")
	f.BoolVar(&cfg.Noop, "noop", false, "check only: report what would change and change nothing")
	f.IntVar(&cfg.Parallel, "parallel", cfg.Parallel, "resources converged at once, at most")
	f.Var(&cfg.ResourceTimeout, "resource-timeout", "how long one resource may take")
	f.Var(&cfg.RunTimeout, "run-timeout", "how long one run may take")
	f.StringVar(&cfg.FactsDir, "facts-dir", "", "external facts directory (default ROOT/etc/herd/facts.d)")
	f.BoolVar(&cfg.SandboxFactsExec, "sandbox-facts-exec", false, "run the executables in a sandbox root's facts directory, as this user (under / they always run)")
	f.StringVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "debug, info, warn or error")
	LogFormatFlag(cmd, &cfg.LogFormat)
	f.BoolVar(&once, "once", false, "run once and exit with apply's exit codes")
	selectionFlags(cmd, &tags, &only)
	return cmd
}

// runSiteAgent is `herd agent --site DIR`: the masterless daemon, or with
// --once a single run, as herd apply does it.
func runSiteAgent(cmd *cobra.Command, cfg agentConfig, once bool, sel catalogs.Selection, hup <-chan os.Signal, notify *sdnotify.Notifier, log *slog.Logger) error {
	// A setting that would be ignored is refused: these only mean
	// something with a server.
	for _, name := range []string{"server", "server-name", "join-token", "ca-file", "ca-fingerprint", "environment"} {
		if cmd.Flags().Changed(name) {
			return UsageError(cmd, "--"+name+" has no meaning with --site (a masterless agent talks to no server)")
		}
	}
	if cfg.Server.String() != defaultAgentServer || cfg.ServerName != "" || cfg.JoinToken != "" || cfg.CAFile != "" || cfg.CAFingerprint != "" || cfg.Environment != "" {
		return UsageError(cmd, "the config file's server settings have no meaning with --site (a masterless agent talks to no server)")
	}
	if cfg.AuditInterval != 0 {
		// Audit runs report drift to a server; a masterless agent has
		// none to tell.
		return UsageError(cmd, "audit_interval has no meaning with --site (audit runs report drift to a server; use herd apply --noop)")
	}
	if cfg.Noop && !once {
		return UsageError(cmd, "--noop with --site needs --once: a daemon that only checks supervises nothing (or use herd apply --noop)")
	}
	out := cmd.OutOrStdout()
	ao := agent.ApplyOptions{
		Site: cfg.Site, Node: cfg.Name, Root: cfg.Root, StateDir: cfg.StateDir, Noop: cfg.Noop, Select: sel, Parallel: cfg.Parallel,
		ResourceTimeout: time.Duration(cfg.ResourceTimeout), RunTimeout: time.Duration(cfg.RunTimeout),
		FactsDir: cfg.FactsDir, SandboxFactsExec: cfg.SandboxFactsExec, AgentVersion: Version(), Log: log,
		SecretsKey: cfg.SecretsKey,
		Services:   supervisorFor(cfg.Root, log),
		Emit:       func(e agent.Event) { WriteEvent(out, e, false, false) },
	}
	if !once {
		// The masterless daemon owns the state's supervisor for its whole
		// life, as the pulling daemon does.
		ao.Services = OwnSupervisor(cfg.Root, log)
	}
	if once {
		r, err := agent.Apply(cmd.Context(), ao)
		if err != nil {
			var ds catalogs.Diagnostics
			if errors.As(err, &ds) {
				return SiteError(cfg.Site, err)
			}
			return err
		}
		WriteSummary(out, r)
		if code := r.ExitCode(); code != 0 {
			return &CodedError{Code: code}
		}
		return nil
	}
	exe, err := os.Executable()
	if err != nil {
		log.Warn("the agent's program is unknown: upgrades take effect at the next restart", "err", err)
	}
	err = agent.RunSiteDaemon(cmd.Context(), agent.SiteDaemonOptions{
		ApplyOptions: ao, Interval: time.Duration(cfg.Interval), Splay: time.Duration(cfg.Splay), Hangup: hup, Notify: notify,
		Executable: exe,
		Done:       func(r *agent.Report) { WriteSummary(out, r) },
	})
	LogStop(cmd.Context(), log, "agent")
	if errors.Is(err, agent.ErrUpgraded) {
		return agent.Reexec(exe, notify.Env())
	}
	return err
}

// flagsOver returns base with the settings given as flags taken from cfg.
func flagsOver(cmd *cobra.Command, base, cfg agentConfig) agentConfig {
	dst, src := reflect.ValueOf(&base).Elem(), reflect.ValueOf(cfg)
	for i := range dst.NumField() {
		tag := strings.Split(dst.Type().Field(i).Tag.Get("toml"), ",")[0]
		if f := cmd.Flags().Lookup(strings.ReplaceAll(tag, "_", "-")); f != nil && f.Changed {
			dst.Field(i).Set(src.Field(i))
		}
	}
	return base
}
