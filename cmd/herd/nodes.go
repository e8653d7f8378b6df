package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
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

DRIFT counts the resources that differed from the node's catalog at its
newest run that checked the host: an audit run (the agent's audit_interval)
or a real run. Resources marked audit = true count when they differ; in an
audit run so does every resource that would change. An audit run is never
the LAST RUN.`,
		Example: `  herd nodes
  herd nodes --json | jq '.nodes[] | select(.compileError != "")'`,
		Args: cobra.NoArgs,
		RunE: nodecmd.WithAdmin(&af, func(cmd *cobra.Command, _ []string, c herdv1.AdminClient) error {
			// Page by page: the server caps a page, so that a large fleet
			// is never one huge response.
			all := &herdv1.ListNodesResponse{}
			for token := ""; ; {
				resp, err := c.ListNodes(cmd.Context(), &herdv1.ListNodesRequest{PageToken: token})
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
			if st, err := c.SiteStatus(cmd.Context(), &herdv1.SiteStatusRequest{}); err == nil {
				fmt.Fprintln(cmd.OutOrStdout(), siteLine(st))
			}
			return printNodes(cmd.OutOrStdout(), all.Nodes)
		}),
	}
	af.Register(cmd)
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print as JSON")
	return cmd
}

func newReportsCmd() *cobra.Command {
	var (
		af      nodecmd.AdminFlags
		jsonOut bool
		limit   int
	)
	cmd := &cobra.Command{
		Use:     "reports [NODE]",
		Short:   "Show recent run reports, for a node or the fleet",
		Example: "  herd reports web-01\n  herd reports --limit 200 --json",
		Args:    cobra.MaximumNArgs(1),
		RunE: nodecmd.WithAdmin(&af, func(cmd *cobra.Command, args []string, c herdv1.AdminClient) error {
			node := ""
			if len(args) == 1 {
				node = args[0]
			}
			// Page by page until --limit: the server caps each page (in
			// reports and in bytes), and text output is written as pages
			// come, so that neither side holds the fleet's history.
			all := &herdv1.ListReportsResponse{}
			out := cmd.OutOrStdout()
			got := 0
			for token := ""; limit <= 0 || got < limit; {
				size := int32(0)
				if limit > 0 {
					size = int32(min(limit-got, math.MaxInt32))
				}
				resp, err := c.ListReports(cmd.Context(), &herdv1.ListReportsRequest{Node: node, PageSize: size, PageToken: token})
				if err != nil {
					return err
				}
				if limit > 0 && got+len(resp.Reports) > limit {
					resp.Reports = resp.Reports[:limit-got]
				}
				got += len(resp.Reports)
				if jsonOut {
					all.Reports = append(all.Reports, resp.Reports...)
				} else {
					printReports(out, resp.Reports)
				}
				if token = resp.NextPageToken; token == "" {
					break
				}
			}
			if jsonOut {
				return printProto(cmd, all)
			}
			return nil
		}),
	}
	af.Register(cmd)
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print as JSON")
	cmd.Flags().IntVar(&limit, "limit", 20, "how many reports (0: all of them, page by page)")
	return cmd
}

// printNodes writes the fleet as a table for people. Every string in it
// came from a node or the site and is cleaned.
func printNodes(w io.Writer, nodes []*herdv1.NodeInfo) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tCHECK-IN\tAPPROVED\tRUNNING\tROLLOUT\tLAST RUN\tDRIFT\tCOMPILE ERROR")
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
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", nodecmd.Clean(n.Name), ago(n.LastCheckinUnixMs), approved, running, rollout,
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

// printReports writes reports for people. Every string in them came from
// a node and is cleaned.
func printReports(out io.Writer, reports []*herdv1.StoredReport) {
	for _, sr := range reports {
		r, s := sr.Report, sr.Report.GetSummary()
		mode := ""
		switch {
		case r.GetAudit():
			// An audit run checked the host between applies: what would
			// change is drift.
			mode = " (audit)"
		case r.GetNoop():
			mode = " (noop)"
		}
		drift := ""
		if s.GetDrift() > 0 {
			drift = fmt.Sprintf(", %d drift", s.GetDrift())
		}
		fmt.Fprintf(out, "%s  %s%s  run %s  site %s: %d resources, %d changed, %d failed, %d skipped%s in %s\n",
			time.UnixMilli(sr.ReceivedUnixMs).Local().Format(time.DateTime), nodecmd.Clean(sr.Node), mode, nodecmd.Clean(r.GetRunId()), nodecmd.Clean(nodecmd.ShortVersion(r.GetVersion())),
			s.GetResources(), s.GetChanged(), s.GetFailed(), s.GetSkipped(), drift, time.Duration(r.GetDurationNs()).Round(time.Millisecond/10))
		for _, e := range r.GetEvents() {
			detail := e.Error + e.Cause
			fmt.Fprintf(out, "    %-8s %s %s\n", nodecmd.Clean(e.Status), nodecmd.Clean(e.Id), nodecmd.Clean(firstLine(detail)))
		}
	}
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
