package main

import (
	"errors"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/herdcm/herd/agent"
)

// agentConfig is agent.toml; every setting is also a flag of the same
// name ("_" spelled "-"), and flags win.
type agentConfig struct {
	Server          string   `toml:"server"`
	ServerName      string   `toml:"server_name"`
	Name            string   `toml:"name"`
	JoinToken       string   `toml:"join_token"`
	CAFile          string   `toml:"ca_file"`
	CAFingerprint   string   `toml:"ca_fingerprint"`
	Root            string   `toml:"root"`
	StateDir        string   `toml:"state_dir"`
	Interval        duration `toml:"interval"`
	Splay           duration `toml:"splay"`
	Noop            bool     `toml:"noop"`
	Parallel        int      `toml:"parallel"`
	ResourceTimeout duration `toml:"resource_timeout"`
	RunTimeout      duration `toml:"run_timeout"`
	FactsDir        string   `toml:"facts_dir"`
	LogLevel        string   `toml:"log_level"`
}

func newAgentCmd() *cobra.Command {
	cfg := agentConfig{
		Server: "127.0.0.1:8140", Root: "/", Interval: duration(30 * time.Minute), Splay: duration(time.Minute),
		Parallel: 4, ResourceTimeout: duration(10 * time.Minute), RunTimeout: duration(time.Hour), LogLevel: "info",
	}
	defaults := cfg
	var (
		configFile string
		once       bool
	)
	cmd := &cobra.Command{
		Use:   "agent --server ADDR [--join-token T] [--once] [--noop] [--root DIR]",
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
says drift = "watch" are put back within a second of a hand edit.

Settings come from --config (TOML, decoded strictly) and flags; flags win.
SIGHUP makes the agent run at once with --config read again.`,
		Example: `  herd agent --server herd.example.com:8140 --join-token "$TOKEN"
  herd agent --config /etc/herd/agent.toml
  herd agent --server 127.0.0.1:8140 --root /tmp/sandbox --once --noop`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// SIGHUP runs now with the configuration read again (it would
			// otherwise kill the agent); caught from the start.
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			if err := applyConfigFile(cmd, configFile, &cfg); err != nil {
				return err
			}
			log, err := logger(cmd, cfg.LogLevel)
			if err != nil {
				return usageError(cmd, err.Error())
			}
			if err := prepareSandbox(cfg.Root); err != nil {
				return err
			}
			stateDir := cfg.StateDir
			if stateDir == "" {
				stateDir = filepath.Join(cfg.Root, "var/lib/herd")
			}
			certDir := filepath.Join(stateDir, "tls")
			ctx := cmd.Context()
			if _, err := agent.LoadIdentity(certDir); errors.Is(err, agent.ErrNotEnrolled) {
				name := cfg.Name
				if name == "" {
					name, _ = os.Hostname()
				}
				if _, err := agent.Enroll(ctx, agent.EnrollOptions{
					Server: cfg.Server, ServerName: cfg.ServerName, Name: name, JoinToken: cfg.JoinToken,
					Dir: certDir, CAFile: cfg.CAFile, CAFingerprint: cfg.CAFingerprint, Log: log,
				}); err != nil {
					return err
				}
			} else if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			options := func(cfg agentConfig) agent.DaemonOptions {
				return agent.DaemonOptions{
					Server: cfg.Server, ServerName: cfg.ServerName, Root: cfg.Root, StateDir: stateDir, CertDir: certDir,
					Interval: time.Duration(cfg.Interval), Splay: time.Duration(cfg.Splay), Noop: cfg.Noop, Parallel: cfg.Parallel,
					ResourceTimeout: time.Duration(cfg.ResourceTimeout), RunTimeout: time.Duration(cfg.RunTimeout),
					FactsDir: cfg.FactsDir, AgentVersion: herdVersion(), Log: log, Once: once,
					Services: supervisorFor(cfg.Root, log),
					Emit:     func(e agent.Event) { writeEvent(out, e, false, false) },
				}
			}
			o := options(cfg)
			if once {
				d, err := agent.NewDaemon(ctx, o)
				if err != nil {
					return err
				}
				defer d.Close()
				r, err := d.RunOnce(ctx)
				if r != nil {
					writeSummary(out, r)
				}
				if err != nil {
					return err
				}
				if code := r.ExitCode(); code != 0 {
					return &codedError{code: code}
				}
				return nil
			}
			d, err := agent.NewDaemon(ctx, o)
			if err != nil {
				return err
			}
			defer d.Close()
			go d.HandleHangups(ctx, hup, func() (agent.DaemonOptions, error) {
				// What a restart would read: defaults, the file, flags.
				next := flagsOver(cmd, defaults, cfg)
				if err := applyConfigFile(cmd, configFile, &next); err != nil {
					return agent.DaemonOptions{}, err
				}
				if next.StateDir != cfg.StateDir || next.LogLevel != cfg.LogLevel {
					return agent.DaemonOptions{}, errors.New("state_dir and log_level change only with a restart of the agent")
				}
				return options(next), nil
			})
			return d.Run(ctx)
		},
	}
	f := cmd.Flags()
	f.StringVar(&configFile, "config", "", "a TOML file with any of these settings")
	f.StringVar(&cfg.Server, "server", cfg.Server, "the server's gRPC address")
	f.StringVar(&cfg.ServerName, "server-name", "", "the name to verify in the server's certificate (default: the --server host)")
	f.StringVar(&cfg.Name, "name", "", "the node name to enroll as (default: this host's name)")
	f.StringVar(&cfg.JoinToken, "join-token", "", "a join token (herd ca token), so the certificate is issued at once")
	f.StringVar(&cfg.CAFile, "ca-file", "", "the server's CA bundle, to verify it from the first contact on")
	f.StringVar(&cfg.CAFingerprint, "ca-fingerprint", "", "sha256 fingerprint of the server's CA certificate, checked before the join token is sent")
	f.StringVar(&cfg.Root, "root", cfg.Root, "the host root; a directory other than / is a sandbox")
	f.StringVar(&cfg.StateDir, "state-dir", "", "the agent's state directory (default ROOT/var/lib/herd)")
	f.Var(&cfg.Interval, "interval", "time between runs when the server names no check-in time")
	f.Var(&cfg.Splay, "splay", "random delay added to the interval")
	f.BoolVar(&cfg.Noop, "noop", false, "check only: report what would change and change nothing")
	f.IntVar(&cfg.Parallel, "parallel", cfg.Parallel, "resources converged at once, at most")
	f.Var(&cfg.ResourceTimeout, "resource-timeout", "how long one resource may take")
	f.Var(&cfg.RunTimeout, "run-timeout", "how long one run may take")
	f.StringVar(&cfg.FactsDir, "facts-dir", "", "external facts directory (default ROOT/etc/herd/facts.d)")
	f.StringVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "debug, info, warn or error")
	f.BoolVar(&once, "once", false, "run once and exit with apply's exit codes")
	return cmd
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
