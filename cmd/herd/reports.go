package main

import (
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/herdcm/herd/agent"
	"github.com/herdcm/herd/api/herdv1"
	"github.com/herdcm/herd/cmd/nodecmd"
)

func newReportsCmd() *cobra.Command {
	var (
		af      nodecmd.AdminFlags
		jsonOut bool
		limit   int
	)
	cmd := &cobra.Command{
		Use:   "reports [NODE [RUN]]",
		Short: "Show recent run reports, for a node or the fleet, or one run in full",
		Long: `Show the newest run reports, newest first: each run's summary, then every
resource that was not in sync (changed, failed, skipped) with its changes:
attributes from → to, and the diff of a file's content.

With NODE and RUN (a run id, as the list shows it), that one run in full:
its site version, catalog, timings, summary and service health, then
every event with its status, changes, diffs, error, cause and output.

Everything in a report came from a node: characters that could drive the
terminal (ESC, other control characters) are shown escaped.`,
		Example: `  herd reports web-01
  herd reports web-01 01J9Z6Q3M2N8
  herd reports --limit 200 --json`,
		Args: cobra.MaximumNArgs(2),
		RunE: nodecmd.WithAdmin(&af, func(cmd *cobra.Command, args []string, c herdv1.AdminClient) error {
			node := ""
			if len(args) >= 1 {
				node = args[0]
			}
			if len(args) == 2 {
				return showRun(cmd, c, node, args[1], jsonOut)
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
					printReports(out, resp.Reports, time.Local)
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

// showRun finds one run of node in its history, newest first, and prints
// it in full.
func showRun(cmd *cobra.Command, c herdv1.AdminClient, node, run string, jsonOut bool) error {
	for token := ""; ; {
		resp, err := c.ListReports(cmd.Context(), &herdv1.ListReportsRequest{Node: node, PageToken: token})
		if err != nil {
			return err
		}
		for _, sr := range resp.Reports {
			if sr.Report.GetRunId() != run {
				continue
			}
			if jsonOut {
				return printProto(cmd, sr)
			}
			printRun(cmd.OutOrStdout(), sr, time.Local)
			return nil
		}
		if token = resp.NextPageToken; token == "" {
			return &nodecmd.CodedError{Code: nodecmd.ExitError, Err: fmt.Errorf("node %s has no run %s in the server's history", nodecmd.Clean(node), nodecmd.Clean(run))}
		}
	}
}

// printReports writes reports for people: each run's line, then each
// event that was not in sync with its changes and diffs. Every string in
// them came from a node and is cleaned.
func printReports(out io.Writer, reports []*herdv1.StoredReport, loc *time.Location) {
	for _, sr := range reports {
		r := sr.Report
		fmt.Fprintf(out, "%s  %s\n", time.UnixMilli(sr.ReceivedUnixMs).In(loc).Format(time.DateTime), nodecmd.SummaryLine(storedSummary(sr)))
		for _, e := range r.GetEvents() {
			printEvent(out, e, r.GetNoop(), "    ", false)
		}
	}
}

// storedSummary is a stored report's run summary, for the one summary
// renderer every command shares. An event of an agent older than the
// event's source field names no source.
func storedSummary(sr *herdv1.StoredReport) nodecmd.RunSummary {
	r, s := sr.GetReport(), sr.GetReport().GetSummary()
	rs := nodecmd.RunSummary{
		Node: sr.GetNode(), RunID: r.GetRunId(), Version: r.GetVersion(),
		Noop: r.GetNoop(), Audit: r.GetAudit(), Partial: r.GetPartial(), Duration: time.Duration(r.GetDurationNs()),
		Counts: agent.Summary{Resources: int(s.GetResources()), InSync: int(s.GetInSync()), Changed: int(s.GetChanged()),
			Failed: int(s.GetFailed()), Skipped: int(s.GetSkipped()), Unknown: int(s.GetUnknown()),
			Refreshed: int(s.GetRefreshed()), Drift: int(s.GetDrift())},
	}
	for _, e := range r.GetEvents() {
		if e.GetStatus() == string(agent.Failed) {
			rs.Failed = append(rs.Failed, nodecmd.FailedResource{ID: e.GetId(), Source: e.GetSource(), Error: e.GetError()})
		}
	}
	return rs
}

// printRun writes one run in full.
func printRun(out io.Writer, sr *herdv1.StoredReport, loc *time.Location) {
	r := sr.Report
	mode := "apply"
	switch {
	case r.GetAudit():
		mode = "audit (a check between applies; nothing changed; what would change is drift)"
	case r.GetNoop():
		mode = "noop (nothing changed; changes are what would change)"
	}
	if r.GetPartial() {
		mode += ", partial (--tags/--only: the selected resources only)"
	}
	started := "-"
	if r.GetStartedUnixNs() > 0 {
		started = time.Unix(0, r.GetStartedUnixNs()).In(loc).Format(time.DateTime)
	}
	fmt.Fprintf(out, "run       %s\n", nodecmd.Clean(r.GetRunId()))
	fmt.Fprintf(out, "node      %s\n", nodecmd.Clean(sr.Node))
	fmt.Fprintf(out, "mode      %s\n", mode)
	fmt.Fprintf(out, "site      %s\n", nodecmd.Clean(r.GetVersion()))
	fmt.Fprintf(out, "catalog   %s\n", nodecmd.Clean(r.GetCatalogDigest()))
	fmt.Fprintf(out, "started   %s, took %s\n", started, nodecmd.HumanDuration(time.Duration(r.GetDurationNs())))
	fmt.Fprintf(out, "received  %s\n", time.UnixMilli(sr.ReceivedUnixMs).In(loc).Format(time.DateTime))
	fmt.Fprintf(out, "summary   %s\n", nodecmd.SummaryLine(storedSummary(sr)))
	for _, h := range r.GetServices() {
		line := nodecmd.Clean(h.GetName()) + ": " + nodecmd.Clean(h.GetHealth())
		if h.GetDetail() != "" {
			line += " (" + nodecmd.Clean(firstLine(h.GetDetail())) + ")"
		}
		fmt.Fprintf(out, "service   %s\n", line)
	}
	if len(r.GetEvents()) == 0 {
		fmt.Fprintln(out, "events    none: every resource was in sync")
		return
	}
	fmt.Fprintf(out, "events    %d not in sync:\n", len(r.GetEvents()))
	for _, e := range r.GetEvents() {
		printEvent(out, e, r.GetNoop(), "  ", true)
	}
}

// printEvent writes one event: its status, id, where the site declares
// it (as the run summary names it: "(roles/web.toml:12)") and changes on
// a line, then its diffs, and (full) its error, cause and output,
// indented under it.
// An event of a noop run changed nothing: it says "would change".
func printEvent(out io.Writer, e *herdv1.Event, noop bool, indent string, full bool) {
	status := e.GetStatus()
	if (noop || e.GetNoop()) && status == "changed" {
		status = "would change"
	}
	var detail []string
	for _, c := range e.GetChanges() {
		attr := nodecmd.Clean(c.GetAttr())
		switch {
		case c.GetSensitive():
			detail = append(detail, attr+" (sensitive) changed")
		case c.GetDiff() != "":
			detail = append(detail, attr+" changed")
		case c.GetFrom() != "" || c.GetTo() != "":
			detail = append(detail, fmt.Sprintf("%s %s → %s", attr, orNone(c.GetFrom()), orNone(c.GetTo())))
		default:
			detail = append(detail, attr)
		}
	}
	if e.GetRefresh() != "" {
		detail = append(detail, nodecmd.Clean(e.GetRefresh()))
	}
	if !full {
		// The list keeps one line per event for what went wrong.
		if why := e.GetError() + e.GetCause(); why != "" {
			detail = append(detail, nodecmd.Clean(firstLine(why)))
		}
	}
	line := fmt.Sprintf("%s%-12s %s", indent, nodecmd.Clean(status), nodecmd.Clean(e.GetId()))
	var about []string
	if e.GetSource() != "" {
		about = append(about, nodecmd.Clean(e.GetSource()))
	}
	if full && e.GetDurationNs() > 0 {
		about = append(about, nodecmd.HumanDuration(time.Duration(e.GetDurationNs())).String())
	}
	if len(about) > 0 {
		line += " (" + strings.Join(about, ", ") + ")"
	}
	if len(detail) > 0 {
		line += "  " + strings.Join(detail, "; ")
	}
	fmt.Fprintln(out, line)
	sub := indent + "    "
	for _, c := range e.GetChanges() {
		if c.GetDiff() != "" && !c.GetSensitive() {
			writeLines(out, sub, c.GetDiff())
		}
	}
	if !full {
		return
	}
	if e.GetError() != "" {
		writeLines(out, sub+"error: ", e.GetError())
	}
	if e.GetCause() != "" {
		writeLines(out, sub+"cause: ", e.GetCause())
	}
	if e.GetOutput() != "" {
		writeLines(out, sub+"| ", e.GetOutput())
	}
}

// writeLines writes s line by line after prefix, each line cleaned on
// its own, so that a diff stays readable while no line can carry a
// control sequence or pose as another line. A prefix that names the
// text (error: ) is written once, and the lines after it aligned under
// the text. Tabs become spaces: a tab is a control character too, and
// diffs are full of them.
func writeLines(out io.Writer, prefix, s string) {
	next := prefix
	if strings.HasSuffix(prefix, ": ") {
		next = strings.Repeat(" ", len(prefix))
	}
	for i, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		l = strings.ReplaceAll(strings.TrimSuffix(l, "\r"), "\t", "    ")
		p := prefix
		if i > 0 {
			p = next
		}
		fmt.Fprintf(out, "%s%s\n", p, nodecmd.Clean(l))
	}
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return nodecmd.Clean(s)
}
