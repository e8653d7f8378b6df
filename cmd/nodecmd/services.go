package nodecmd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/herdcm/herd/agent"
	"github.com/herdcm/herd/agent/supervise"
)

func newServicesCmd() *cobra.Command {
	var (
		sf      stateFlags
		jsonOut bool
	)
	// withServices runs fn with the state's supervisor: the running
	// agent's, over its socket, or one of its own when no agent runs (two
	// supervisors over the same services would both restart a service
	// that exits).
	withServices := func(ctx context.Context, fn func(agent.ServiceControl) error) error {
		st, err := agent.OpenState(sf.dir())
		if err != nil {
			return err
		}
		defer st.Close()
		svc, err := agent.OpenServices(ctx, st, sf.root, slog.New(slog.DiscardHandler))
		if err != nil {
			return err
		}
		defer svc.Close()
		return fn(svc)
	}
	cmd := &cobra.Command{
		Use:   "services",
		Short: "List the supervised services: pid, uptime, restarts, health",
		Long: `List the services Herd's supervisor runs on this host (provider "herd"), with
their state, pid, uptime, restarts, health and log files. Services keep
running between runs. When an agent daemon runs over the state directory,
the command asks it, over STATE/agent.sock (root or the agent's user only);
otherwise it adopts them as a run would, with a supervisor of its own.`,
		Example: `  herd services
  herd services --root /tmp/sandbox --json
  herd services logs demo-web
  herd services restart demo-web`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withServices(cmd.Context(), func(sup agent.ServiceControl) error {
				list, err := sup.List(cmd.Context())
				if err != nil {
					return err
				}
				out := cmd.OutOrStdout()
				if jsonOut {
					if list == nil {
						list = []supervise.Status{}
					}
					return WriteJSON(out, list)
				}
				if len(list) == 0 {
					fmt.Fprintln(out, "no supervised services")
					return nil
				}
				tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "NAME\tSTATE\tPID\tUPTIME\tRESTARTS\tHEALTH\tLAST EXIT")
				for _, s := range list {
					up := "-"
					if s.PID != 0 && !s.StartedAt.IsZero() {
						up = time.Since(s.StartedAt).Round(time.Second).String()
					}
					last := "-"
					if s.LastExit != nil {
						last = describeExit(s.LastExit)
					}
					health := string(s.Health)
					if s.HealthError != "" {
						health += " (" + s.HealthError + ")"
					}
					fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\t%s\t%s\n", s.Name, s.State, s.PID, up, s.Restarts, health, last)
				}
				return tw.Flush()
			})
		},
	}
	sf.register(cmd)
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print the list as JSON")

	var all bool
	stop := &cobra.Command{
		Use:   "stop NAME... | --all",
		Short: "Stop services and forget them until a run ensures them again",
		Args:  cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, names []string) error {
			if all == (len(names) > 0) {
				return UsageError(cmd, "name services to stop, or give --all")
			}
			return withServices(cmd.Context(), func(sup agent.ServiceControl) error {
				if all {
					list, err := sup.List(cmd.Context())
					if err != nil {
						return err
					}
					for _, s := range list {
						names = append(names, s.Name)
					}
				}
				var errs []error
				for _, n := range names {
					if err := sup.Stop(cmd.Context(), n); err != nil {
						errs = append(errs, fmt.Errorf("stopping %s: %w", n, err))
						continue
					}
					fmt.Fprintf(cmd.OutOrStdout(), "stopped %s\n", n)
				}
				return errors.Join(errs...)
			})
		},
	}
	stop.Flags().BoolVar(&all, "all", false, "stop every supervised service")
	cmd.AddCommand(stop, &cobra.Command{
		Use:   "restart NAME",
		Short: "Restart a service",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withServices(cmd.Context(), func(sup agent.ServiceControl) error {
				if err := sup.Restart(cmd.Context(), args[0]); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "restarted %s\n", args[0])
				return nil
			})
		},
	}, &cobra.Command{
		Use:   "logs NAME",
		Short: "Print the end (64 KiB each) of a service's captured stdout and stderr",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withServices(cmd.Context(), func(sup agent.ServiceControl) error {
				logs, err := sup.Logs(cmd.Context(), args[0])
				if errors.Is(err, supervise.ErrUnknown) {
					return fmt.Errorf("no supervised service %s", args[0])
				}
				if err != nil {
					return err
				}
				for _, l := range logs {
					fmt.Fprintf(cmd.OutOrStdout(), "==> %s <==\n%s", l.Path, l.Text)
				}
				return nil
			})
		},
	})
	return cmd
}

func describeExit(e *supervise.ExitInfo) string {
	var b strings.Builder
	switch {
	case e.Unknown:
		b.WriteString("unknown (adopted)")
	case e.Signal != 0:
		fmt.Fprintf(&b, "signal %s", e.Signal)
	case e.Err != "":
		b.WriteString(e.Err)
	default:
		fmt.Fprintf(&b, "code %d", e.Code)
	}
	if !e.At.IsZero() {
		fmt.Fprintf(&b, ", %s ago", time.Since(e.At).Round(time.Second))
	}
	return b.String()
}
