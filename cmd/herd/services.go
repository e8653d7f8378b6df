package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
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
		wait    time.Duration
	)
	// withServices runs fn with the host's supervisor. It takes the run
	// lock first: two supervisors over the same services would both
	// restart a service that exits.
	withServices := func(ctx context.Context, fn func(*supervise.Supervisor) error) error {
		lock, err := agent.AcquireLock(ctx, sf.dir(), wait)
		if err != nil {
			return err
		}
		defer lock.Release()
		st, err := agent.OpenState(sf.dir())
		if err != nil {
			return err
		}
		defer st.Close()
		svc, err := agent.NewServices(ctx, st, sf.root, slog.New(slog.DiscardHandler))
		if err != nil {
			return err
		}
		defer svc.Close()
		return fn(svc.Supervisor())
	}
	cmd := &cobra.Command{
		Use:   "services",
		Short: "List the supervised services: pid, uptime, restarts, health",
		Long: `List the services Herd's supervisor runs on this host (provider "herd"), with
their state, pid, uptime, restarts, health and log files. Services keep
running between runs; listing them adopts them as a run would, so it takes
the run lock (--wait to wait for a run in progress).`,
		Example: `  herd services
  herd services --root /tmp/sandbox --json
  herd services logs demo-web
  herd services restart demo-web`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withServices(cmd.Context(), func(sup *supervise.Supervisor) error {
				list := sup.List()
				out := cmd.OutOrStdout()
				if jsonOut {
					enc := json.NewEncoder(out)
					enc.SetIndent("", "  ")
					if list == nil {
						list = []supervise.Status{}
					}
					return enc.Encode(list)
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
	cmd.PersistentFlags().DurationVar(&wait, "wait", 10*time.Second, "how long to wait for a run in progress")
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print the list as JSON")

	var all bool
	stop := &cobra.Command{
		Use:   "stop NAME... | --all",
		Short: "Stop services and forget them until a run ensures them again",
		RunE: func(cmd *cobra.Command, names []string) error {
			if all == (len(names) > 0) {
				return usageError(cmd, "name services to stop, or give --all")
			}
			return withServices(cmd.Context(), func(sup *supervise.Supervisor) error {
				if all {
					for _, s := range sup.List() {
						names = append(names, s.Name)
					}
				}
				var errs []error
				for _, n := range names {
					if err := sup.Remove(cmd.Context(), n); err != nil {
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
			return withServices(cmd.Context(), func(sup *supervise.Supervisor) error {
				if err := sup.Restart(cmd.Context(), args[0]); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "restarted %s\n", args[0])
				return nil
			})
		},
	}, &cobra.Command{
		Use:   "logs NAME",
		Short: "Print a service's captured stdout and stderr",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withServices(cmd.Context(), func(sup *supervise.Supervisor) error {
				s, ok := sup.Status(args[0])
				if !ok {
					return fmt.Errorf("no supervised service %s", args[0])
				}
				for _, p := range []string{s.Stdout, s.Stderr} {
					f, err := os.Open(p)
					if err != nil {
						return err
					}
					fmt.Fprintf(cmd.OutOrStdout(), "==> %s <==\n", p)
					_, err = io.Copy(cmd.OutOrStdout(), f)
					f.Close()
					if err != nil {
						return err
					}
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
