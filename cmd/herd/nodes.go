package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/herdcm/herd/api/herdv1"
)

func newNodesCmd() *cobra.Command {
	var (
		af      adminFlags
		jsonOut bool
	)
	cmd := &cobra.Command{
		Use:   "nodes",
		Short: "List the fleet: last check-in, catalog, last run, compile errors",
		Example: `  herd nodes
  herd nodes --json | jq '.nodes[] | select(.compileError != "")'`,
		Args: cobra.NoArgs,
		RunE: withAdmin(&af, func(cmd *cobra.Command, _ []string, c herdv1.AdminClient) error {
			resp, err := c.ListNodes(cmd.Context(), &herdv1.ListNodesRequest{})
			if err != nil {
				return err
			}
			if jsonOut {
				return printProto(cmd, resp)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "NODE\tLAST CHECK-IN\tCATALOG\tLAST RUN\tCOMPILE ERROR")
			for _, n := range resp.Nodes {
				run := "-"
				if s := n.LastSummary; n.LastReportUnixMs > 0 && s != nil {
					run = fmt.Sprintf("%s ago: %d changed, %d failed", ago(n.LastReportUnixMs), s.Changed, s.Failed)
				}
				cat := "-"
				if n.CatalogEtag != "" {
					cat = n.CatalogEtag[:19]
					if n.AppliedEtag != "" && n.AppliedEtag != n.CatalogEtag {
						cat += " (not applied yet)"
					}
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", n.Name, ago(n.LastCheckinUnixMs), cat, run, firstLine(n.CompileError))
			}
			return tw.Flush()
		}),
	}
	af.register(cmd)
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print as JSON")
	return cmd
}

func newReportsCmd() *cobra.Command {
	var (
		af      adminFlags
		jsonOut bool
		limit   int
	)
	cmd := &cobra.Command{
		Use:     "reports [NODE]",
		Short:   "Show recent run reports, for a node or the fleet",
		Example: "  herd reports web-01\n  herd reports --limit 200 --json",
		Args:    cobra.MaximumNArgs(1),
		RunE: withAdmin(&af, func(cmd *cobra.Command, args []string, c herdv1.AdminClient) error {
			node := ""
			if len(args) == 1 {
				node = args[0]
			}
			resp, err := c.ListReports(cmd.Context(), &herdv1.ListReportsRequest{Node: node, Limit: int32(limit)})
			if err != nil {
				return err
			}
			if jsonOut {
				return printProto(cmd, resp)
			}
			out := cmd.OutOrStdout()
			for _, sr := range resp.Reports {
				r, s := sr.Report, sr.Report.GetSummary()
				mode := ""
				if r.Noop {
					mode = " (noop)"
				}
				fmt.Fprintf(out, "%s  %s%s  run %s  site %s: %d resources, %d changed, %d failed, %d skipped in %s\n",
					time.UnixMilli(sr.ReceivedUnixMs).Local().Format(time.DateTime), sr.Node, mode, r.RunId, shortVersion(r.Version),
					s.GetResources(), s.GetChanged(), s.GetFailed(), s.GetSkipped(), time.Duration(r.DurationNs).Round(time.Millisecond/10))
				for _, e := range r.Events {
					detail := e.Error + e.Cause
					fmt.Fprintf(out, "    %-8s %s %s\n", e.Status, e.Id, firstLine(detail))
				}
			}
			return nil
		}),
	}
	af.register(cmd)
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print as JSON")
	cmd.Flags().IntVar(&limit, "limit", 20, "how many reports")
	return cmd
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
	enc := json.NewEncoder(cmd.OutOrStdout())
	enc.SetIndent("", "  ")
	return enc.Encode(v)
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
