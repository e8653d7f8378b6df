package nodecmd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"

	"github.com/pelletier/go-toml/v2"
	"github.com/spf13/cobra"

	"github.com/herdcm/herd/agent"
)

// DefaultAgentConfig is where the packaged agent reads its settings.
const DefaultAgentConfig = "/etc/herd/agent.toml"

// DefaultAgentUnit is the packaged agent's systemd unit.
const DefaultAgentUnit = "herd-agent.service"

// bootstrapConfig is the part of agent.toml bootstrap writes. The join
// token is not among them: it is spent on enrollment, and a secret left
// in a config file is a secret to rotate.
type bootstrapConfig struct {
	Server        ServerList `toml:"server"`
	ServerName    string     `toml:"server_name,omitempty"`
	Name          string     `toml:"name,omitempty"`
	CAFingerprint string     `toml:"ca_fingerprint,omitempty"`
	Root          string     `toml:"root,omitempty"`
	StateDir      string     `toml:"state_dir,omitempty"`
}

func newBootstrapCmd() *cobra.Command {
	var (
		bc       bootstrapConfig
		token    string
		config   string
		noStart  bool
		force    bool
		unit     string
		logLevel string
	)
	cmd := &cobra.Command{
		Use:   "bootstrap --server ADDR --token TOKEN [--ca-fingerprint FP] [--name N] [--config FILE] [--no-start]",
		Short: "Make this host a node: write agent.toml, enroll, start the agent",
		Long: `Make this host a node of a Herd server in one step, as "herd ca token"
prints it ready to paste:

  1. write agent.toml (--config; atomically; the join token is not
     written). An existing file (the package's, say) keeps what it says
     and its mode: the settings it lacks are added at its top. One it sets
     to another value is refused unless --force, which replaces the file;
     the same settings again are fine.
  2. enroll with the join token: a key (0600) and the certificate for
     --name (default: this host's name) under the state directory. With
     --ca-fingerprint the server's CA is checked inside the first TLS
     handshake, before the token is sent; a mismatch stops here.
  3. when systemd runs this host (PID 1), "systemctl enable --now" the
     agent's unit (--unit); otherwise, or with --no-start, print how to
     start the daemon.

Running it again on an enrolled host with the same settings changes
nothing and starts the unit again if need be.`,
		Example: `  herd-agent bootstrap --server herd.example.com:8140 --token 3f1c… --ca-fingerprint sha256:9a0b…
  herd-agent bootstrap --server 10.0.0.5:8140 --token "$TOKEN" --name web-07 --no-start`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(bc.Server) == 0 || token == "" {
				return UsageError(cmd, "--server and --token are required (herd ca token prints both)")
			}
			log, err := Logger(cmd, logLevel)
			if err != nil {
				return UsageError(cmd, err.Error())
			}
			if bc.Name == "" {
				if bc.Name, err = os.Hostname(); err != nil {
					return fmt.Errorf("bootstrap: naming this node: %w (give --name)", err)
				}
			}
			// The server as it was given: one address a string, several
			// a list.
			var buf bytes.Buffer
			if err := toml.NewEncoder(&buf).EnableMarshalerInterface().Encode(bc); err != nil {
				return err
			}
			// Refused before anything else happens: enrolling under
			// settings that would then not be written leaves a host half
			// made.
			body, same, err := bootstrapFile(config, buf.Bytes(), force)
			if err != nil {
				return err
			}
			root := bc.Root
			if root == "" {
				root = "/"
			}
			state := agent.StateDirOr(bc.StateDir, root)
			ctx := cmd.Context()
			id, err := agent.Enroll(ctx, agent.EnrollOptions{
				Server: bc.Server.String(), ServerName: bc.ServerName, Name: bc.Name, JoinToken: token,
				Dir: state.TLS(), CAFingerprint: bc.CAFingerprint, Log: log,
			})
			if err != nil {
				return fmt.Errorf("bootstrap: %w", err)
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "enrolled as %s (%s)\n", id.Node, state.TLS())
			if !same {
				if err := writeConfigFile(config, body); err != nil {
					return fmt.Errorf("bootstrap: %w", err)
				}
				fmt.Fprintf(out, "wrote %s\n", config)
			}
			start := fmt.Sprintf("herd-agent agent --config %s", config)
			switch {
			case noStart:
				fmt.Fprintf(out, "not started (--no-start); start the daemon with: %s\n", start)
			case !systemdRuns():
				fmt.Fprintf(out, "systemd does not run this host; start the daemon with: %s\n", start)
			default:
				if err := systemctl(ctx, cmd.ErrOrStderr(), "enable", "--now", unit); err != nil {
					return fmt.Errorf("bootstrap: enrolled, but starting %s: %w", unit, err)
				}
				fmt.Fprintf(out, "enabled and started %s\n", unit)
			}
			return nil
		},
	}
	f := cmd.Flags()
	ServerFlag(f, &bc.Server, "the server's gRPC address, host:port; several (repeat the flag or separate with commas) are written to agent.toml as a list")
	f.StringVar(&token, "token", "", "a join token (herd ca token)")
	f.StringVar(&bc.CAFingerprint, "ca-fingerprint", "", "sha256 fingerprint of the server's CA, checked before the token is sent (herd ca fingerprint)")
	f.StringVar(&bc.Name, "name", "", "the node name to enroll as (default: this host's name)")
	f.StringVar(&bc.ServerName, "server-name", "", "the name to verify in the server's certificate (default: the --server host)")
	f.StringVar(&bc.Root, "root", "", "the host root, written to agent.toml (default /)")
	f.StringVar(&bc.StateDir, "state-dir", "", "the agent's state directory, written to agent.toml (default ROOT/var/lib/herd)")
	f.StringVar(&config, "config", DefaultAgentConfig, "the agent.toml to write")
	f.BoolVar(&noStart, "no-start", false, "write and enroll only; do not start the agent")
	f.BoolVar(&force, "force", false, "replace an existing agent.toml that sets a setting to another value (one lacking settings gets them added)")
	f.StringVar(&unit, "unit", DefaultAgentUnit, "the systemd unit to enable and start")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	return cmd
}

// bootstrapFile is the agent.toml bootstrap leaves at path, given the
// settings it was asked for (keys, TOML-encoded). An existing file keeps
// what it says: the settings it lacks are added at its top, and the rest
// of it (comments, interval, parallel… as the package installed them) is
// kept byte for byte. A setting the file already has with another value is
// a conflict: refused unless force, which replaces the file with the
// settings alone. same is whether the file already says everything (then
// nothing is written); a file that does not read as TOML is refused
// unless force.
func bootstrapFile(path string, settings []byte, force bool) (body []byte, same bool, err error) {
	const header = "# Written by herd-agent bootstrap; herd agent --help lists every setting.\n"
	fresh := append([]byte(header), settings...)
	old, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return fresh, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("bootstrap: reading %s: %w", path, err)
	}
	var want, have map[string]any
	if err := toml.Unmarshal(settings, &want); err != nil {
		return nil, false, fmt.Errorf("bootstrap: encoding the settings: %w", err)
	}
	if err := toml.Unmarshal(old, &have); err != nil {
		if force {
			return fresh, false, nil
		}
		return nil, false, fmt.Errorf("bootstrap: %s does not read as TOML (%v); fix it, or pass --force to replace it with:\n%s", path, err, fresh)
	}
	var conflicts []string
	var missing bytes.Buffer
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v, ok := have[k]
		switch {
		case !ok:
			line, err := toml.Marshal(map[string]any{k: want[k]})
			if err != nil {
				return nil, false, fmt.Errorf("bootstrap: encoding %s: %w", k, err)
			}
			missing.Write(line)
		case !reflect.DeepEqual(v, want[k]):
			conflicts = append(conflicts, fmt.Sprintf("%s = %v here, %v in the file", k, want[k], v))
		}
	}
	switch {
	case len(conflicts) > 0 && !force:
		return nil, false, fmt.Errorf("bootstrap: %s exists with other settings (%s); fix them, or pass --force to replace the file with:\n%s",
			path, strings.Join(conflicts, "; "), fresh)
	case len(conflicts) > 0:
		return fresh, false, nil
	case missing.Len() == 0:
		return old, true, nil
	}
	return append(append(append([]byte(header), missing.Bytes()...), '\n'), old...), false, nil
}

// writeConfigFile writes body to path atomically (a temporary file in
// the same directory, fsynced, renamed, the directory fsynced), with the
// mode of the file it replaces (the package installs agent.toml 0600: it
// may hold a join token), else 0644.
func writeConfigFile(path string, body []byte) error {
	mode := os.FileMode(0o644)
	if fi, err := os.Stat(path); err == nil {
		mode = fi.Mode().Perm()
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(body); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// systemdRuns says whether systemd is this host's init, as sd_booted(3)
// decides it.
func systemdRuns() bool {
	fi, err := os.Lstat("/run/systemd/system")
	return err == nil && fi.IsDir()
}

// systemctl runs systemctl with args, its output to w.
func systemctl(ctx context.Context, w io.Writer, args ...string) error {
	c := exec.CommandContext(ctx, "systemctl", args...)
	c.Stdout, c.Stderr = w, w
	if err := c.Run(); err != nil {
		return fmt.Errorf("systemctl %s: %w", strings.Join(args, " "), err)
	}
	return nil
}
