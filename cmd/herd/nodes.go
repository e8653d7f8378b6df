package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/herdcm/herd/api/herdv1"
	"github.com/herdcm/herd/cmd/nodecmd"
)

func newNodesCmd() *cobra.Command {
	var (
		af      nodecmd.AdminFlags
		jsonOut bool
		showAll bool
		where   string
	)
	cmd := &cobra.Command{
		Use:   "nodes",
		Short: "List the fleet: versions approved and running, rollout state, last run, compile errors",
		Long: `List every node the server knows: when it last checked in, the site
version it is approved to run (what check-ins serve), the version its last
real apply ran, where the newest rollout has it (pending, released,
healthy, failed, denied, compile-error, unchanged, rehearsed, with the
rollout's id), its last run, and its compile error at the served version.

A noop run (herd agent --noop, a rehearsal) changes nothing: it shows as
"noop: would change N", never as changes, and the running version stays
the one of the last real apply.

Deactivated nodes (herd node deactivate, node_ttl) are left out; --all lists
them too, with a DEACTIVATED column saying since when.

--where keeps the nodes for which an expression is true. It is written in
the language of the site's conditions (expr-lang) and runs on the server
over each node's facts, at the top level (os.family) and under facts
(facts.os.family), and its status: name, version (approved),
applied_version, agent_version, environment, status (unreported, failed, changed,
pending, unchanged), rollout_state, compile_error, changed and failed (the
last run's counts), noop, drift, last_checkin and last_report (times; compare with
now() - duration("1h")), and checkin_age (seconds since the last check-in).
A status name wins over a fact of the same name, which stays under facts.
A node the expression fails on (a path through a fact it lacks) is not
listed: write os?.family to read a missing fact as nil. See
docs/operations.md.

DRIFT counts the resources that differed from the node's catalog at its
newest run that checked the host: an audit run (the agent's audit_interval)
or a real run. Resources marked audit = true count when they differ; in an
audit run so does every resource that would change. An audit run is never
the LAST RUN.`,
		Example: `  herd nodes
  herd nodes --where 'os.family == "debian" && memory.total_bytes < 4e9'
  herd nodes --where 'status == "failed" || checkin_age > 3600'
  herd nodes --all
  herd nodes --json | jq -r '.nodes[] | select(.compileError) | .name'`,
		Args: cobra.NoArgs,
		RunE: nodecmd.WithAdmin(&af, func(cmd *cobra.Command, _ []string, c herdv1.AdminClient) error {
			// Page by page: the server caps a page, so that a large fleet
			// is never one huge response.
			all := &herdv1.ListNodesResponse{}
			for token := ""; ; {
				// A filtered page may come back short, even empty, with a
				// token: the server bounds the nodes one call reads.
				resp, err := c.ListNodes(cmd.Context(), &herdv1.ListNodesRequest{PageToken: token, Where: where, Inactive: showAll})
				if err != nil {
					return err
				}
				all.Nodes = append(all.Nodes, resp.Nodes...)
				if token = resp.NextPageToken; token == "" {
					break
				}
			}
			if jsonOut {
				return printProto(cmd, all)
			}
			// The site line first: a version that fails to load is what
			// explains a fleet that does not move.
			envs := false
			if st, err := c.SiteStatus(cmd.Context(), &herdv1.SiteStatusRequest{}); err == nil {
				fmt.Fprintln(cmd.OutOrStdout(), siteLine(st))
				envs = len(st.Environments) > 0
			}
			return printNodes(cmd.OutOrStdout(), all.Nodes, envs)
		}),
	}
	af.Register(cmd)
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print as JSON (empty fields are left out; docs/cli.md names them)")
	cmd.Flags().BoolVar(&showAll, "all", false, "list deactivated nodes too")
	cmd.Flags().StringVar(&where, "where", "", "list only the nodes for which `EXPR` is true (facts and status; see --help)")
	return cmd
}

// printNodes writes the fleet as a table for people, with an ENV column
// when the server serves environments. Every string in it came from a
// node or the site and is cleaned.
func printNodes(w io.Writer, nodes []*herdv1.NodeInfo, envs bool) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	// A DEACTIVATED column only when a deactivated node is listed
	// (herd nodes --all).
	inactive := slices.ContainsFunc(nodes, func(n *herdv1.NodeInfo) bool { return n.DeactivatedUnixMs != 0 })
	deactivated := func(n *herdv1.NodeInfo) string {
		switch {
		case !inactive:
			return ""
		case n.DeactivatedUnixMs == 0:
			return "-\t"
		}
		return ago(n.DeactivatedUnixMs) + "\t"
	}
	env := func(n *herdv1.NodeInfo) string {
		if !envs {
			return ""
		}
		return cmp.Or(nodecmd.Clean(n.Environment), "-") + "\t"
	}
	head := "NODE\t"
	if envs {
		head += "ENV\t"
	}
	if inactive {
		head += "DEACTIVATED\t"
	}
	fmt.Fprintln(tw, head+"CHECK-IN\tAPPROVED\tRUNNING\tROLLOUT\tLAST RUN\tDRIFT\tCOMPILE ERROR")
	for _, n := range nodes {
		approved := "-"
		if n.CatalogEtag != "" {
			approved = nodecmd.Clean(shortSiteVersion(n.CatalogVersion))
		}
		running := "-"
		if n.AppliedVersion != "" {
			running = nodecmd.Clean(shortSiteVersion(n.AppliedVersion))
		}
		rollout := "-"
		if n.RolloutState != "" {
			rollout = nodecmd.Clean(n.RolloutState)
			if n.RolloutId != 0 {
				rollout += fmt.Sprintf(" #%d", n.RolloutId)
			}
		}
		// Drift is the count of the newest run that checked the host (an
		// audit or a real run); "-" before any report.
		drift := "-"
		if n.LastReportUnixMs != 0 {
			drift = fmt.Sprint(n.Drift)
		}
		fmt.Fprintf(tw, "%s\t%s%s%s\t%s\t%s\t%s\t%s\t%s\t%s\n", nodecmd.Clean(n.Name), env(n), deactivated(n), ago(n.LastCheckinUnixMs), approved, running, rollout,
			lastRun(n), drift, nodecmd.Clean(firstLine(n.CompileError)))
	}
	return tw.Flush()
}

// lastRun summarises a node's last report. A noop run changed nothing:
// it says what would change, never "changed".
func lastRun(n *herdv1.NodeInfo) string {
	s := n.LastSummary
	if n.LastReportUnixMs == 0 || s == nil {
		return "-"
	}
	if n.LastNoop {
		return fmt.Sprintf("%s ago: noop: would change %d, %d failed", ago(n.LastReportUnixMs), s.Changed, s.Failed)
	}
	return fmt.Sprintf("%s ago: %d changed, %d failed", ago(n.LastReportUnixMs), s.Changed, s.Failed)
}

// shortSiteVersion is a site version cut for a table: a content digest to
// its first 12 hex digits after "sha256:", a git commit to 12.
func shortSiteVersion(v string) string {
	if rest, ok := strings.CutPrefix(v, "sha256:"); ok {
		return "sha256:" + short(rest, 12)
	}
	if len(v) == 40 && strings.Trim(v, "0123456789abcdef") == "" {
		return v[:12]
	}
	return v
}

// short is s cut to n bytes.
func short(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func printProto(cmd *cobra.Command, m proto.Message) error {
	b, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(m)
	if err != nil {
		return err
	}
	// Re-indent through encoding/json so that output is stable (protojson
	// randomises whitespace on purpose).
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	return nodecmd.WriteJSON(cmd.OutOrStdout(), v)
}

func ago(unixMs int64) string {
	if unixMs == 0 {
		return "never"
	}
	return time.Since(time.UnixMilli(unixMs)).Round(time.Second).String()
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " …"
	}
	return s
}
