package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/herdcm/herd/api/herdv1"
	"github.com/herdcm/herd/catalogs"
	"github.com/herdcm/herd/cmd/nodecmd"
)

// rehearsalDiffs is how many rehearsed nodes' changes `herd rollout
// status` fetches to group: a rehearsal stage is a handful of nodes, and
// a larger one is read with herd rollout diff.
const rehearsalDiffs = 50

func newRolloutCmd() *cobra.Command {
	var af nodecmd.AdminFlags
	cmd := &cobra.Command{
		Use:   "rollout",
		Short: "Follow and steer rollouts: list, status, approve, pause, resume, abort, diff",
		Long: `A new site version reaches the fleet as a rollout: every node's catalog is
compiled and gated by the site's policies, then released stage by stage as
herd.toml's [[rollout.stage]] says (canaries first, a bake time, a share of
failures that halts it, manual approval, rehearsals in noop).

ID is a rollout's number as herd rollout list shows it; without it, the
newest rollout of --environment (default: the server's default
environment). Each environment (a branch the server serves) has its own
rollouts; status without an ID or --environment shows the newest of each.

Exit codes: 0 success; 1 an error, or (status) the rollout is halted or
blocked; 64 bad usage.`,
		Example: `  herd rollout list
  herd rollout status              # the newest rollout
  herd rollout status 12 --all     # every node, not only the ones worth a look
  herd rollout approve             # start a stage that waits for approve = "manual"
  herd rollout pause 12
  herd rollout resume 12           # also resumes a halted rollout: you override its failures
  herd rollout abort 12            # every node it released back on the previous version
  herd rollout diff 12 --node web-01
  herd rollout pause --environment staging`,
		Args: cobra.NoArgs,
	}
	af.Register(cmd)
	var env string
	cmd.PersistentFlags().StringVar(&env, "environment", "", "the environment whose newest rollout (default: the server's default environment); list keeps its rollouts only")

	var listJSON bool
	var listLimit int
	listCmd := &cobra.Command{
		Use:     "list",
		Short:   "List rollouts, newest first",
		Example: "  herd rollout list\n  herd rollout list --limit 0 --json",
		Args:    cobra.NoArgs,
		RunE: nodecmd.WithAdmin(&af, func(cmd *cobra.Command, _ []string, c herdv1.AdminClient) error {
			all := &herdv1.ListRolloutsResponse{}
			for token := ""; listLimit <= 0 || len(all.Rollouts) < listLimit; {
				resp, err := c.ListRollouts(cmd.Context(), &herdv1.ListRolloutsRequest{PageToken: token})
				if err != nil {
					return err
				}
				all.Rollouts = append(all.Rollouts, resp.Rollouts...)
				if token = resp.NextPageToken; token == "" {
					break
				}
			}
			if env != "" {
				all.Rollouts = slices.DeleteFunc(all.Rollouts, func(r *herdv1.Rollout) bool { return r.Environment != env })
			}
			if listLimit > 0 && len(all.Rollouts) > listLimit {
				all.Rollouts = all.Rollouts[:listLimit]
			}
			if listJSON {
				return printProto(cmd, all)
			}
			return printRollouts(cmd.OutOrStdout(), all.Rollouts)
		}),
	}
	listCmd.Flags().BoolVar(&listJSON, "json", false, "print as JSON")
	listCmd.Flags().IntVar(&listLimit, "limit", 20, "how many rollouts (0: all of them)")

	var statusJSON, statusAll bool
	statusCmd := &cobra.Command{
		Use:   "status [ID]",
		Short: "Show a rollout: its stages, denials, failed nodes, rehearsal results",
		Long: `Show a rollout: the version and the one it replaces, its state and why,
each stage (state, node counts, bake time left, manual approval), the
nodes the gates denied with their messages, the nodes that failed with
their failed resources and unhealthy services, what a rehearsal predicts,
compile errors and the gates' warnings. --all lists every node.

Exit codes: 0 the rollout is neither halted nor blocked; 1 it is (or the
server cannot be reached); 64 bad usage.`,
		Example: "  herd rollout status\n  herd rollout status 12 --all\n  herd rollout status --json | jq '.nodes[] | select(.state == \"failed\")'",
		Args:    cobra.MaximumNArgs(1),
		RunE: nodecmd.WithAdmin(&af, func(cmd *cobra.Command, args []string, c herdv1.AdminClient) error {
			id, err := rolloutID(cmd, args)
			if err != nil {
				return err
			}
			which := ""
			if statusAll {
				which = "all"
			}
			if id == 0 && env == "" && !statusJSON {
				envs, err := rolloutEnvironments(cmd.Context(), c)
				if err != nil {
					return err
				}
				if len(envs) > 1 {
					return statusEach(cmd, c, envs, which)
				}
			}
			st, err := getRollout(cmd.Context(), c, id, which, env)
			if err != nil {
				return err
			}
			if statusJSON {
				if err := printProto(cmd, st); err != nil {
					return err
				}
			} else {
				changes, more, err := rehearsalChanges(cmd.Context(), c, st)
				if err != nil {
					return err
				}
				if err := printRollout(cmd.OutOrStdout(), st, changes, more, time.Now()); err != nil {
					return err
				}
			}
			if r := st.Rollout; r.State == "halted" || r.State == "blocked" {
				return &nodecmd.CodedError{Code: nodecmd.ExitError, Err: fmt.Errorf("rollout %d is %s: %s", r.Id, r.State, nodecmd.Clean(firstLine(r.Reason)))}
			}
			return nil
		}),
	}
	statusCmd.Flags().BoolVar(&statusJSON, "json", false, "print as JSON")
	statusCmd.Flags().BoolVar(&statusAll, "all", false, "list every node, not only the denied, failed, rehearsed and broken ones")

	var diffJSON bool
	var diffNode string
	diffCmd := &cobra.Command{
		Use:   "diff [ID] [--node NODE]",
		Short: "Show the catalog changes a rollout makes, grouped across nodes",
		Long: `Show how each node's catalog changes in a rollout, against the catalog the
node was approved to run before it: resources added, removed and changed,
attribute by attribute, with unified diffs of file contents. Nodes with the
same change are grouped into one entry. --json prints
{"from", "to", "nodes": {NODE: change}}.`,
		Example: "  herd rollout diff\n  herd rollout diff 12 --node web-01\n  herd rollout diff --json | jq '.nodes | keys'",
		Args:    cobra.MaximumNArgs(1),
		RunE: nodecmd.WithAdmin(&af, func(cmd *cobra.Command, args []string, c herdv1.AdminClient) error {
			id, err := rolloutID(cmd, args)
			if err != nil {
				return err
			}
			d, err := rolloutDiff(cmd.Context(), c, id, diffNode, env)
			if err != nil {
				return err
			}
			if diffJSON {
				return nodecmd.WriteJSON(cmd.OutOrStdout(), d)
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "%s → %s: %s change\n", nodecmd.Clean(shortSiteVersion(d.From)), nodecmd.Clean(shortSiteVersion(d.To)), plural(len(d.Nodes), "node"))
			return writeChanges(out, d.Nodes)
		}),
	}
	diffCmd.Flags().BoolVar(&diffJSON, "json", false, "print as JSON")
	diffCmd.Flags().StringVar(&diffNode, "node", "", "one node's change only")

	cmd.AddCommand(listCmd, statusCmd, diffCmd)
	for _, a := range []struct{ name, short, example string }{
		{"approve", "Start the stage that waits for manual approval", "herd rollout approve 12"},
		{"pause", "Hold the rollout's next release (a running bake still ends)", "herd rollout pause 12"},
		{"resume", "Go on with a paused rollout, or a halted one (overriding its failures)", "herd rollout resume 12"},
		{"abort", "Put every node the rollout released back on the previous version, at once", "herd rollout abort 12"},
	} {
		cmd.AddCommand(&cobra.Command{
			Use:     a.name + " [ID]",
			Short:   a.short,
			Example: "  " + a.example + "\n  herd rollout " + a.name + "      # the newest rollout",
			Args:    cobra.MaximumNArgs(1),
			RunE: nodecmd.WithAdmin(&af, func(cmd *cobra.Command, args []string, c herdv1.AdminClient) error {
				id, err := rolloutID(cmd, args)
				if err != nil {
					return err
				}
				resp, err := c.RolloutAction(cmd.Context(), &herdv1.RolloutActionRequest{Id: id, Action: a.name, Environment: env})
				if err != nil {
					return fmt.Errorf("%s rollout: %w", a.name, err)
				}
				fmt.Fprintln(cmd.OutOrStdout(), rolloutLine(resp.GetRollout()))
				return nil
			}),
		})
	}
	return cmd
}

// rolloutID is the optional ID argument: 0 (the newest rollout) when
// absent.
func rolloutID(cmd *cobra.Command, args []string) (int64, error) {
	if len(args) == 0 {
		return 0, nil
	}
	id, err := strconv.ParseInt(strings.TrimPrefix(args[0], "#"), 10, 64)
	if err != nil || id <= 0 {
		return 0, nodecmd.UsageError(cmd, fmt.Sprintf("rollout ID %q: want a rollout's number, as herd rollout list shows it", args[0]))
	}
	return id, nil
}

// rolloutEnvironments lists the environments of the newest rollouts
// (one page of them), sorted.
func rolloutEnvironments(ctx context.Context, c herdv1.AdminClient) ([]string, error) {
	resp, err := c.ListRollouts(ctx, &herdv1.ListRolloutsRequest{PageSize: 200})
	if err != nil {
		return nil, err
	}
	var envs []string
	for _, r := range resp.Rollouts {
		if r.Environment != "" && !slices.Contains(envs, r.Environment) {
			envs = append(envs, r.Environment)
		}
	}
	slices.Sort(envs)
	return envs, nil
}

// statusEach prints the newest rollout of each environment; it fails
// when one of them is halted or blocked.
func statusEach(cmd *cobra.Command, c herdv1.AdminClient, envs []string, which string) error {
	out := cmd.OutOrStdout()
	var stuck []string
	for i, env := range envs {
		st, err := getRollout(cmd.Context(), c, 0, which, env)
		if err != nil {
			// A branch that went is no longer served: its rollouts stay
			// listed, but it has no newest one to show.
			fmt.Fprintf(out, "environment %s: %v\n", nodecmd.Clean(env), err)
			continue
		}
		if i > 0 {
			fmt.Fprintln(out)
		}
		fmt.Fprintf(out, "environment %s\n", nodecmd.Clean(env))
		changes, more, err := rehearsalChanges(cmd.Context(), c, st)
		if err != nil {
			return err
		}
		if err := printRollout(out, st, changes, more, time.Now()); err != nil {
			return err
		}
		if r := st.Rollout; r.State == "halted" || r.State == "blocked" {
			stuck = append(stuck, fmt.Sprintf("%s's rollout %d is %s: %s", env, r.Id, r.State, nodecmd.Clean(firstLine(r.Reason))))
		}
	}
	if len(stuck) > 0 {
		return &nodecmd.CodedError{Code: nodecmd.ExitError, Err: errors.New(strings.Join(stuck, "; "))}
	}
	return nil
}

// getRollout fetches a rollout (0: the newest of env, "" the default
// environment) and its nodes, page by page.
func getRollout(ctx context.Context, c herdv1.AdminClient, id int64, which, env string) (*herdv1.GetRolloutResponse, error) {
	all := &herdv1.GetRolloutResponse{}
	for token := ""; ; {
		resp, err := c.GetRollout(ctx, &herdv1.GetRolloutRequest{Id: id, Nodes: which, PageToken: token, Environment: env})
		if err != nil {
			return nil, err
		}
		if all.Rollout == nil {
			all.Rollout = resp.Rollout
			// Later pages answer for the same rollout even when a newer
			// one starts meanwhile.
			id = resp.GetRollout().GetId()
		}
		all.Nodes = append(all.Nodes, resp.Nodes...)
		if token = resp.NextPageToken; token == "" {
			break
		}
	}
	if all.Rollout == nil {
		return nil, fmt.Errorf("the server answered with no rollout")
	}
	return all, nil
}

// diffOutput is herd rollout diff --json, in the shape of herd diff's.
type diffOutput struct {
	From  string                     `json:"from"`
	To    string                     `json:"to"`
	Nodes map[string]catalogs.Change `json:"nodes"`
}

// rolloutDiff fetches a rollout's changes, page by page, and decodes them.
func rolloutDiff(ctx context.Context, c herdv1.AdminClient, id int64, node, env string) (*diffOutput, error) {
	d := &diffOutput{Nodes: map[string]catalogs.Change{}}
	for token := ""; ; {
		resp, err := c.RolloutDiff(ctx, &herdv1.RolloutDiffRequest{Id: id, Node: node, PageToken: token, Environment: env})
		if err != nil {
			return nil, err
		}
		d.From, d.To = resp.PreviousVersion, resp.Version
		for _, nc := range resp.Changes {
			var ch catalogs.Change
			if err := json.Unmarshal(nc.ChangeJson, &ch); err != nil {
				return nil, fmt.Errorf("decoding the change of node %s: %w", nodecmd.Clean(nc.Node), err)
			}
			d.Nodes[nc.Node] = ch
		}
		if token = resp.NextPageToken; token == "" {
			break
		}
	}
	return d, nil
}

// rehearsalChanges fetches the catalog changes of the rollout's rehearsed
// nodes (at most rehearsalDiffs of them; more says how many were left).
func rehearsalChanges(ctx context.Context, c herdv1.AdminClient, st *herdv1.GetRolloutResponse) (changes map[string]catalogs.Change, more int, err error) {
	changes = map[string]catalogs.Change{}
	for _, n := range st.Nodes {
		if n.State != "rehearsed" {
			continue
		}
		if len(changes) == rehearsalDiffs {
			more++
			continue
		}
		d, err := rolloutDiff(ctx, c, st.Rollout.Id, n.Node, "")
		if err != nil {
			return nil, 0, fmt.Errorf("the rehearsed change of %s: %w", nodecmd.Clean(n.Node), err)
		}
		maps.Copy(changes, d.Nodes)
	}
	return changes, more, nil
}

// rolloutLine is one rollout in one line: the answer to an action.
func rolloutLine(r *herdv1.Rollout) string {
	line := fmt.Sprintf("rollout %d: %s ← %s: %s", r.GetId(), nodecmd.Clean(shortSiteVersion(r.GetVersion())), nodecmd.Clean(previousVersion(r.GetPreviousVersion())), nodecmd.Clean(r.GetState()))
	if r.GetReason() != "" {
		line += ": " + nodecmd.Clean(firstLine(r.GetReason()))
	}
	return line
}

func previousVersion(v string) string {
	if v == "" {
		return "(nothing)"
	}
	return shortSiteVersion(v)
}

// printRollouts writes the rollout list as a table.
func printRollouts(w io.Writer, rs []*herdv1.Rollout) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tVERSION\tPREVIOUS\tSTATE\tSTAGES\tNODES\tCREATED\tREASON")
	for _, r := range rs {
		done := 0
		for _, s := range r.Stages {
			if s.State == "done" {
				done++
			}
		}
		state := r.State
		if r.SupersededBy != 0 {
			state += fmt.Sprintf(" by %d", r.SupersededBy)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d/%d done\t%s\t%s\t%s\n", r.Id, nodecmd.Clean(shortSiteVersion(r.Version)), nodecmd.Clean(previousVersion(r.PreviousVersion)),
			nodecmd.Clean(state), done, len(r.Stages), counts(r.Counts), stamp(r.CreatedUnixMs), nodecmd.Clean(firstLine(r.Reason)))
	}
	return tw.Flush()
}

// stateOrder is the order node states and decisions are listed in: the
// way a node goes, then what holds one back.
var stateOrder = []string{"allowed", "pending", "released", "healthy", "unchanged", "rehearsed", "failed", "denied", "compile-error"}

// counts writes a count map as "healthy 3, pending 2", in stateOrder
// and then by name.
func counts(m map[string]int32) string {
	keys := slices.Collect(maps.Keys(m))
	slices.SortFunc(keys, func(a, b string) int {
		ia, ib := slices.Index(stateOrder, a), slices.Index(stateOrder, b)
		if ia < 0 {
			ia = len(stateOrder)
		}
		if ib < 0 {
			ib = len(stateOrder)
		}
		if ia != ib {
			return ia - ib
		}
		return strings.Compare(a, b)
	})
	var parts []string
	for _, k := range keys {
		if m[k] != 0 {
			parts = append(parts, fmt.Sprintf("%s %d", nodecmd.Clean(k), m[k]))
		}
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ", ")
}

// printRollout writes herd rollout status for people. Every string in it
// that came from a node, a gate or the site is cleaned.
func printRollout(w io.Writer, st *herdv1.GetRolloutResponse, rehearsed map[string]catalogs.Change, more int, now time.Time) error {
	r := st.Rollout
	fmt.Fprintf(w, "rollout %d: %s ← %s\n", r.Id, nodecmd.Clean(shortSiteVersion(r.Version)), nodecmd.Clean(previousVersion(r.PreviousVersion)))
	state := nodecmd.Clean(r.State)
	if r.SupersededBy != 0 {
		state += fmt.Sprintf(" by rollout %d", r.SupersededBy)
	}
	fmt.Fprintf(w, "  state    %s\n", state)
	if r.Reason != "" {
		for i, l := range strings.Split(strings.TrimRight(r.Reason, "\n"), "\n") {
			label := "  reason   "
			if i > 0 {
				label = "           "
			}
			fmt.Fprintf(w, "%s%s\n", label, nodecmd.Clean(l))
		}
	}
	fmt.Fprintf(w, "  created  %s, updated %s ago\n", stamp(r.CreatedUnixMs), now.Sub(time.UnixMilli(r.UpdatedUnixMs)).Round(time.Second))
	fmt.Fprintf(w, "  nodes    %s\n", counts(r.Counts))

	if len(r.Stages) > 0 {
		fmt.Fprintln(w, "\nstages:")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  STAGE\tSTATE\tNODES\tCOUNTS\tBAKE\tMAX FAILED")
		for _, s := range r.Stages {
			fmt.Fprintf(tw, "  %s\t%s\t%d\t%s\t%s\t%s\n", nodecmd.Clean(s.Name), stageState(r, s), s.Nodes, counts(s.Counts), bake(s, now), nodecmd.Clean(orDash(s.MaxFailed)))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}

	var denied, failed, broken, warned, rehearsals []*herdv1.RolloutNode
	for _, n := range st.Nodes {
		switch {
		case n.Decision == "denied" || len(n.Deny) > 0:
			denied = append(denied, n)
		case n.Decision == "compile-error":
			broken = append(broken, n)
		}
		if n.State == "failed" || len(n.Failures) > 0 {
			failed = append(failed, n)
		}
		if n.State == "rehearsed" {
			rehearsals = append(rehearsals, n)
		}
		if len(n.Warn) > 0 {
			warned = append(warned, n)
		}
	}
	if len(denied) > 0 {
		fmt.Fprintf(w, "\ndenied by the gates (%s):\n", plural(len(denied), "node"))
		for _, n := range denied {
			writeMessages(w, n.Node, n.Deny)
		}
	}
	if len(failed) > 0 {
		fmt.Fprintf(w, "\nfailed (%s):\n", plural(len(failed), "node"))
		for _, n := range failed {
			fmt.Fprintf(w, "  %s (stage %s):\n", nodecmd.Clean(n.Node), nodecmd.Clean(orDash(n.Stage)))
			if len(n.Failures) == 0 {
				fmt.Fprintln(w, "    (no failure recorded)")
			}
			for _, f := range n.Failures {
				fmt.Fprintf(w, "    %s\n", nodecmd.Clean(firstLine(f)))
			}
		}
	}
	if len(broken) > 0 {
		fmt.Fprintf(w, "\ncompile errors (%s; they keep their previous catalog):\n", plural(len(broken), "node"))
		for _, n := range broken {
			fmt.Fprintf(w, "  %s: %s\n", nodecmd.Clean(n.Node), nodecmd.Clean(firstLine(n.CompileError)))
		}
	}
	if len(rehearsals) > 0 {
		fmt.Fprintf(w, "\nrehearsal: what would change (%s ran the new catalog in noop; nothing changed):\n", plural(len(rehearsals), "node"))
		for _, n := range rehearsals {
			s := n.Rehearsal
			fmt.Fprintf(w, "  %s: would change %d of %d resources, %d failed, %d skipped\n", nodecmd.Clean(n.Node), s.GetChanged(), s.GetResources(), s.GetFailed(), s.GetSkipped())
		}
		if len(rehearsed) > 0 {
			fmt.Fprintln(w, "  the change, grouped:")
			var b bytes.Buffer
			if err := writeChanges(&b, rehearsed); err != nil {
				return err
			}
			for _, l := range strings.SplitAfter(b.String(), "\n") {
				if l != "" {
					fmt.Fprint(w, "    "+l)
				}
			}
		}
		if more > 0 {
			fmt.Fprintf(w, "  (and %s more rehearsed: herd rollout diff %d --node NODE)\n", plural(more, "node"), r.Id)
		}
	}
	if len(warned) > 0 {
		fmt.Fprintf(w, "\nwarnings (%s):\n", plural(len(warned), "node"))
		for _, n := range warned {
			writeMessages(w, n.Node, n.Warn)
		}
	}
	if st.NextPageToken == "" && len(st.Nodes) == 0 && r.State != "done" {
		fmt.Fprintf(w, "\nno node worth a look; herd rollout status %d --all lists them all\n", r.Id)
	}
	return nil
}

// stageState is a stage's state with what it waits for.
func stageState(r *herdv1.Rollout, s *herdv1.RolloutStage) string {
	state := nodecmd.Clean(s.State)
	switch {
	case s.State == "awaiting-approval":
		state += fmt.Sprintf(" (herd rollout approve %d)", r.Id)
	case s.Manual && s.State == "pending":
		state += " (manual)"
	}
	if s.Noop {
		state += " (rehearsal)"
	}
	return state
}

// bake is a stage's bake time and, while it bakes, what is left of it.
func bake(s *herdv1.RolloutStage, now time.Time) string {
	if s.BakeNs == 0 {
		return "-"
	}
	out := time.Duration(s.BakeNs).String()
	if s.BakeUntilUnixMs > 0 {
		if left := time.UnixMilli(s.BakeUntilUnixMs).Sub(now); left > 0 {
			out += fmt.Sprintf(" (%s left)", left.Round(time.Second))
		} else if s.State == "baking" {
			out += " (ended: waiting for a last good report)"
		}
	}
	return out
}

func writeMessages(w io.Writer, node string, msgs []*herdv1.PolicyMessage) {
	for _, m := range msgs {
		line := fmt.Sprintf("  %s: %s", nodecmd.Clean(node), nodecmd.Clean(firstLine(m.Message)))
		if m.Resource != "" {
			line += fmt.Sprintf(" [%s]", nodecmd.Clean(m.Resource))
		}
		fmt.Fprintln(w, line)
	}
}

// writeChanges groups per-node changes and writes them with
// catalogs.WriteChanges. Node names and the changes' values (rendered
// from facts a node sent) are cleaned line by line, tabs kept, so that no
// control sequence reaches the terminal.
func writeChanges(w io.Writer, changes map[string]catalogs.Change) error {
	clean := make(map[string]catalogs.Change, len(changes))
	for n, c := range changes {
		clean[nodecmd.Clean(n)] = c
	}
	var b bytes.Buffer
	if err := catalogs.WriteChanges(&b, catalogs.GroupChanges(clean), catalogs.WriteOptions{}); err != nil {
		return err
	}
	for _, l := range strings.SplitAfter(b.String(), "\n") {
		if l == "" {
			continue
		}
		body, nl := strings.CutSuffix(l, "\n")
		fmt.Fprint(w, cleanKeepTabs(body))
		if nl {
			fmt.Fprintln(w)
		}
	}
	return nil
}

// cleanKeepTabs is nodecmd.Clean for a line of a diff, where a tab is
// content rather than a control sequence.
func cleanKeepTabs(s string) string {
	for p := range strings.SplitSeq(s, "\t") {
		if nodecmd.Clean(p) != p {
			return nodecmd.Clean(s)
		}
	}
	return s
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
