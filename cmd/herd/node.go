package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/herdcm/herd/api/herdv1"
	"github.com/herdcm/herd/cmd/nodecmd"
)

// newNodeCmd is `herd node`: one node's life in the fleet.
func newNodeCmd() *cobra.Command {
	var af nodecmd.AdminFlags
	cmd := &cobra.Command{
		Use:   "node",
		Short: "Deactivate, activate or purge a node: cattle come and go",
		Long: `Take a node out of the fleet, or bring it back.

deactivate keeps the node's history but leaves it out of herd nodes (unless
--all), of new rollouts, and of the current one: a stage does not wait for it.
A deactivated node that checks in again is active again by itself.

purge deletes what the server holds of the node (its facts, reports,
catalog history, rollout rows) and revokes its certificates: its agent must
enroll again to come back. It asks for --yes.

The server does both by itself with node_ttl and node_purge_ttl (herd server
--help). Exit status: 0 done, 1 refused or failed (no such node, no --yes),
64 bad usage (a missing NAME, an unknown flag or subcommand).`,
		Example: `  herd node deactivate web-07
  herd node activate web-07
  herd node purge web-07 --yes`,
	}
	af.Register(cmd)
	act := func(action, short, done string) *cobra.Command {
		return &cobra.Command{
			Use:     action + " NAME",
			Short:   short,
			Example: fmt.Sprintf("  herd node %s web-07", action),
			Args:    cobra.ExactArgs(1),
			RunE: nodecmd.WithAdmin(&af, func(cmd *cobra.Command, args []string, c herdv1.AdminClient) error {
				resp, err := c.NodeLifecycle(cmd.Context(), &herdv1.NodeLifecycleRequest{Node: args[0], Action: action})
				if err != nil {
					return err
				}
				line := fmt.Sprintf("%s %s", done, nodecmd.Clean(args[0]))
				if ms := resp.GetNode().GetDeactivatedUnixMs(); ms != 0 {
					line += " (deactivated " + time.UnixMilli(ms).Local().Format(time.DateTime) + ")"
				}
				fmt.Fprintln(cmd.OutOrStdout(), line)
				return nil
			}),
		}
	}
	var (
		yes       bool
		purgeNode func(*cobra.Command, []string) error
	)
	purge := &cobra.Command{
		Use:   "purge NAME --yes",
		Short: "Delete everything the server holds of a node and revoke its certificates",
		Long: `Delete the node's facts, reports, catalog history and rollout rows, and
revoke its certificates (its open streams end, its calls are refused). This
cannot be undone: it asks for --yes.`,
		Example: "  herd node purge web-07 --yes",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			// Refused before the server is asked anything.
			if !yes {
				return fmt.Errorf("purging %s deletes its history and revokes its certificates: run again with --yes to do it", nodecmd.Clean(args[0]))
			}
			return purgeNode(cmd, args)
		},
	}
	purgeNode = nodecmd.WithAdmin(&af, func(cmd *cobra.Command, args []string, c herdv1.AdminClient) error {
		if _, err := c.NodeLifecycle(cmd.Context(), &herdv1.NodeLifecycleRequest{Node: args[0], Action: "purge"}); err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "purged %s: its data is deleted and its certificates revoked; to bring it back, enroll it again (herd agent --reenroll)\n", nodecmd.Clean(args[0]))
		return nil
	})
	purge.Flags().BoolVar(&yes, "yes", false, "really purge")
	cmd.AddCommand(
		act("deactivate", "Take a node out of the fleet views and rollouts, keeping its history", "deactivated"),
		act("activate", "Bring a deactivated node back", "activated"),
		purge,
	)
	return cmd
}
