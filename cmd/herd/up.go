package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/herdcm/herd/api/herdv1"

	"github.com/herdcm/herd/agent"
	"github.com/herdcm/herd/agent/sandbox"
	"github.com/herdcm/herd/cmd/nodecmd"
	"github.com/herdcm/herd/server"
	"github.com/herdcm/herd/server/ca"
)

func newUpCmd() *cobra.Command {
	var (
		site, dir, node, logLevel string
		logFormat                                  = nodecmd.LogFormatAuto
		interval                  nodecmd.Duration = nodecmd.Duration(time.Minute)
	)
	cmd := &cobra.Command{
		Use:   "up [--site DIR] [--dir WORKDIR]",
		Short: "Quickstart: a server and an agent converging a sandbox host, on this machine",
		Long: `Start a Herd server on 127.0.0.1 serving a site (examples/site by default)
and one agent converging a sandbox host root under the work directory, then
keep both running until Ctrl-C. Everything is real: the CA, mutual TLS,
enrollment with a join token, signed catalogs, sqlite stores, dpkg installing
the site's package into the sandbox, accounts made with useradd --prefix, a
service under Herd's supervisor. Edit the site while it runs and the change
rolls out as the site's herd.toml says (the example site: a canary stage,
then the rest), gated by its policies; herd up prints each stage as it
moves, and the agent converges within seconds of its stage starting (the
server watches the site; the agent's Watch stream hears of the release).

Packages and accounts in the sandbox need root; as another user those
resources fail and say so, and the rest converges.`,
		Example: `  go run ./cmd/herd up
  herd up --site ~/my-site --dir /tmp/try-herd`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			out := cmd.OutOrStdout()
			log, err := nodecmd.LoggerFormat(cmd, logLevel, logFormat)
			if err != nil {
				return nodecmd.UsageError(cmd, err.Error())
			}
			return up(ctx, out, log, site, dir, node, time.Duration(interval))
		},
	}
	cmd.Flags().StringVar(&site, "site", "examples/site", "the site to serve")
	cmd.Flags().StringVar(&dir, "dir", filepath.Join(os.TempDir(), "herd-up"), "the work directory: server state, the sandbox host, admin credentials")
	cmd.Flags().StringVar(&node, "node", "sandbox", "the sandbox node's name")
	cmd.Flags().Var(&interval, "interval", "how often the agent checks in (besides converging at once on a new catalog)")
	cmd.Flags().StringVar(&logLevel, "log-level", "warn", "debug, info, warn or error")
	nodecmd.LogFormatFlag(cmd, &logFormat)
	return cmd
}

func up(ctx context.Context, out io.Writer, log *slog.Logger, site, dir, node string, interval time.Duration) error {
	site, _ = filepath.Abs(site)
	dir, _ = filepath.Abs(dir)
	root := filepath.Join(dir, "sandbox")
	serverDir := filepath.Join(dir, "server")
	adminDir := filepath.Join(dir, "admin")
	for _, d := range []string{root, serverDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if err := sandbox.Init(root); err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(out, "note: not running as root: the sandbox's package and account resources will fail (dpkg --root and useradd --prefix need root)")
	}

	srv, err := server.New(ctx, server.Options{
		Site: site, Dir: serverDir, Listen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0",
		CheckinInterval: interval, Debounce: 300 * time.Millisecond, Log: log.With("component", "server"),
	})
	if err != nil {
		return nodecmd.SiteError(site, err)
	}
	defer srv.Close()
	if err := srv.Start(ctx); err != nil {
		return err
	}
	authority := srv.CA()
	caFile := filepath.Join(serverDir, "ca.crt")
	bundle, err := ca.BundlePEM(authority.BundleDER())
	if err != nil {
		return err
	}
	if err := os.WriteFile(caFile, bundle, 0o644); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(adminDir, "admin.crt")); err != nil {
		certPEM, keyPEM, err := authority.IssueAdmin(ctx, "herd-up-admin")
		if err != nil && !errors.Is(err, ca.ErrExists) {
			return err
		}
		if err == nil {
			os.MkdirAll(adminDir, 0o700)
			os.WriteFile(filepath.Join(adminDir, "admin.key"), keyPEM, 0o600)
			os.WriteFile(filepath.Join(adminDir, "admin.crt"), certPEM, 0o644)
			os.WriteFile(filepath.Join(adminDir, "ca.crt"), bundle, 0o644)
		}
	}

	state := agent.DefaultStateDir(root)
	stateDir, certDir := state.String(), state.TLS()
	if _, err := agent.EnrollIfNeeded(ctx, agent.EnrollOptions{
		Server: srv.Addr, Name: node, Dir: certDir, CAFile: caFile, Log: log.With("component", "agent"),
	}, func(ctx context.Context) (string, error) {
		token, _, err := authority.NewToken(ctx, node, 10*time.Minute, true)
		return token, err
	}); err != nil {
		return err
	}

	fmt.Fprintf(out, "herd up: a server and an agent converging a sandbox host\n")
	fmt.Fprintf(out, "  site     %s\n", site)
	fmt.Fprintf(out, "  server   %s (gRPC, mutual TLS); http://%s/metrics\n", srv.Addr, srv.HTTPAddr)
	fmt.Fprintf(out, "  sandbox  %s (node %q)\n\n", root, node)

	d, err := agent.NewDaemon(ctx, agent.DaemonOptions{
		Server: srv.Addr, Root: root, StateDir: stateDir, CertDir: certDir, Interval: interval,
		AgentVersion: nodecmd.Version(), Log: log.With("component", "agent"),
		Services: nodecmd.OwnSupervisor(root, log),
		Emit:     func(e agent.Event) { nodecmd.WriteEvent(out, e, false, false) },
		// Every run's summary, the first included, as herd apply prints it.
		Done: func(r *agent.Report) { nodecmd.WriteSummary(out, r) },
	})
	if err != nil {
		return err
	}
	defer stopSandboxServices(root, out)
	defer d.Close()
	if _, err := d.RunOnce(ctx); err != nil {
		return err
	}
	// The rollout of every edit, printed as its stages progress.
	if c, closeConn, err := dialAdmin(srv.Addr, adminDir); err != nil {
		fmt.Fprintf(out, "note: rollouts will not be followed here: %v\n", err)
	} else {
		defer closeConn()
		watchCtx, stopWatch := context.WithCancel(ctx)
		watched := make(chan struct{})
		go func() {
			defer close(watched)
			watchRollouts(watchCtx, out, c)
		}()
		defer func() { stopWatch(); <-watched }()
	}
	self, _ := os.Executable()
	herdCmd := herdCommand(self)
	cwd, _ := os.Getwd()
	fmt.Fprintf(out, `
Look around (in another terminal, from %[7]s):
  cat %[1]s/etc/herd-demo-web/app.conf                 # a file rendered from a template
  %[2]s services --root %[1]s          # the supervised demo-web service
  %[2]s backups --root %[1]s           # contents runs replaced
  HERD_SERVER=%[3]s HERD_ADMIN_DIR=%[4]s %[2]s reports %[5]s
  HERD_SERVER=%[3]s HERD_ADMIN_DIR=%[4]s %[2]s nodes

Edit %[6]s and the change rolls out as its herd.toml says (the example
site: the canary stage first, then the rest), printed here stage by stage;
the agent converges within seconds of its stage starting. For example:
  %[8]s
  HERD_SERVER=%[3]s HERD_ADMIN_DIR=%[4]s %[2]s rollout status
Ctrl-C stops the server, the agent and the sandbox's services.

`, root, herdCmd, srv.Addr, adminDir, node, site, cwd, upEdit.command(site))
	if err := runBeside(ctx, srv.Err(), d.Run); err != nil {
		return err
	}
	if cause := context.Cause(ctx); cause != nil && cause != context.Canceled {
		fmt.Fprintf(out, "\nstopping: %v\n", cause)
	} else {
		fmt.Fprintln(out, "\nstopping")
	}
	return nil
}

// upEdit is the edit herd up suggests: one that really changes the
// sandbox node's catalog (TestUpEditHint compiles the example site before
// and after it). The sandbox takes its workers from nodes.toml's web rule,
// which wins over roles/web.toml's default: an edit there would change
// nothing.
var upEdit = siteEdit{file: "nodes.toml", from: "workers = 4", to: "workers = 6"}

// siteEdit is a one-line edit of a site file, as a sed command.
type siteEdit struct{ file, from, to string }

// command is the edit as a shell command on the site in dir.
func (e siteEdit) command(dir string) string {
	return fmt.Sprintf("sed -i 's/%s/%s/' %s", e.from, e.to, filepath.Join(dir, e.file))
}

// herdCommand is how the lines herd up prints should call herd: this
// binary, unless it is the temporary one `go run` built (deleted when
// herd up exits, and a path nobody should paste), then `go run` again.
func herdCommand(self string) string {
	if self == "" || strings.Contains(filepath.ToSlash(self), "/go-build") {
		return "go run ./cmd/herd"
	}
	return self
}

// dialAdmin connects to the Admin service at addr with the admin
// credentials herd up wrote into dir.
func dialAdmin(addr, dir string) (herdv1.AdminClient, func(), error) {
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "admin.crt"), filepath.Join(dir, "admin.key"))
	if err != nil {
		return nil, nil, fmt.Errorf("loading admin credentials: %w", err)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		return nil, nil, fmt.Errorf("loading the server's CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, nil, fmt.Errorf("%s holds no certificate", filepath.Join(dir, "ca.crt"))
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}, RootCAs: pool})))
	if err != nil {
		return nil, nil, fmt.Errorf("connecting to %s: %w", addr, err)
	}
	return herdv1.NewAdminClient(conn), func() { conn.Close() }, nil
}

// Rollout polling: every 250 ms while a rollout runs, so that each stage
// shows as it moves; every 2 s otherwise, one small local call, to see
// the next one begin.
const (
	rolloutPollRunning = 250 * time.Millisecond
	rolloutPollIdle    = 2 * time.Second
)

// watchRollouts prints rollouts as they progress until ctx ends: each new
// rollout, every change of a stage's state or counts, and how it ends. A
// rollout already over when herd up starts is not printed.
func watchRollouts(ctx context.Context, out io.Writer, c herdv1.AdminClient) {
	var last *herdv1.Rollout
	first := true
	for {
		wait := rolloutPollIdle
		resp, err := c.GetRollout(ctx, &herdv1.GetRolloutRequest{PageSize: 1})
		if err == nil && resp.Rollout != nil {
			cur := resp.Rollout
			if first && rolloutOver(cur.State) {
				last = cur
			}
			for _, l := range rolloutProgress(last, cur) {
				fmt.Fprintln(out, l)
			}
			last = cur
			if !rolloutOver(cur.State) {
				wait = rolloutPollRunning
			}
		}
		first = false
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// rolloutOver says whether a rollout in state moves no more by itself.
func rolloutOver(state string) bool {
	switch state {
	case "done", "aborted", "superseded", "halted", "blocked":
		return true
	}
	return false
}

// rolloutProgress is what changed from prev (nil: nothing seen yet) to
// cur, in lines for herd up's terminal: a new rollout with its stages,
// each stage whose state or counts moved, and the rollout's own state.
//
// The rollout of the first version a server loads is not shown: every
// node got that version at once, there being nothing to roll back to.
func rolloutProgress(prev, cur *herdv1.Rollout) []string {
	if cur.PreviousVersion == "" {
		return nil
	}
	var lines []string
	if prev == nil || prev.Id != cur.Id {
		names := make([]string, len(cur.Stages))
		for i, s := range cur.Stages {
			names[i] = nodecmd.Clean(s.Name)
		}
		lines = append(lines, fmt.Sprintf("rollout %d: site %s ← %s, stages %s", cur.Id, nodecmd.Clean(shortSiteVersion(cur.Version)),
			nodecmd.Clean(previousVersion(cur.PreviousVersion)), strings.Join(names, " → ")))
		prev = nil
	}
	before := map[string]*herdv1.RolloutStage{}
	for _, s := range prev.GetStages() {
		before[s.Name] = s
	}
	for _, s := range cur.Stages {
		p := before[s.Name]
		if p != nil && p.State == s.State && maps.Equal(p.Counts, s.Counts) {
			continue
		}
		if p == nil && s.State == "pending" {
			// Not started: the header named it.
			continue
		}
		state := nodecmd.Clean(s.State)
		switch {
		case s.State == "baking" && s.BakeNs > 0:
			state += " " + time.Duration(s.BakeNs).String()
		case s.State == "awaiting-approval":
			state += fmt.Sprintf(" (herd rollout approve %d)", cur.Id)
		}
		what := counts(s.Counts)
		if s.Nodes == 0 {
			what = "no nodes"
		}
		lines = append(lines, fmt.Sprintf("  stage %s: %s: %s", nodecmd.Clean(s.Name), state, what))
	}
	if prev == nil || prev.State != cur.State {
		line := fmt.Sprintf("rollout %d: %s", cur.Id, nodecmd.Clean(cur.State))
		if cur.Reason != "" {
			line += ": " + nodecmd.Clean(firstLine(cur.Reason))
		}
		if cur.State == "halted" || cur.State == "blocked" {
			line += fmt.Sprintf(" (herd rollout status %d)", cur.Id)
		}
		lines = append(lines, line)
	}
	return lines
}

// runBeside runs run (the agent) until ctx ends or the server stops: a
// server whose listener failed serves nothing, so the quickstart exits
// non-zero with its error, as herd server does, rather than keep an agent
// checking in to nobody until Ctrl-C. Only ctx ending is a clean stop.
func runBeside(parent context.Context, srvErr <-chan error, run func(context.Context) error) error {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	select {
	case err := <-done:
		if err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
		return nil
	case err, ok := <-srvErr:
		cancel()
		<-done
		if parent.Err() != nil {
			// Ctrl-C stops the server too (it serves until the
			// context ends): that is the clean stop.
			return nil
		}
		if ok && err != nil {
			return fmt.Errorf("herd server stopped: %w", err)
		}
		// Closed with no error: nothing here closed the server, so it
		// stopped on its own, and the agent has no one to talk to.
		return errors.New("herd server stopped")
	}
}

// stopSandboxServices stops what the quickstart started in its sandbox,
// so that Ctrl-C leaves no process behind.
func stopSandboxServices(root string, out io.Writer) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := agent.OpenState(agent.DefaultStateDir(root).String())
	if err != nil {
		return
	}
	defer st.Close()
	s, err := agent.NewServices(ctx, st, root, nil)
	if err != nil {
		return
	}
	defer s.Close()
	for _, status := range s.Supervisor().List() {
		if err := s.Stop(ctx, status.Name); err != nil {
			fmt.Fprintf(out, "stopping %s: %v\n", status.Name, err)
		}
	}
}
