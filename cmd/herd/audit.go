package main

import (
	"cmp"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/herdcm/herd/api/herdv1"
	"github.com/herdcm/herd/cmd/nodecmd"
	"github.com/herdcm/herd/server/auditreport"
)

func newAuditCmd() *cobra.Command {
	var (
		af      nodecmd.AdminFlags
		control string
		node    string
		at      string
		format  string
		outFile string
	)
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Show the fleet's compliance with the site's audit controls, now or at a past time",
		Long: `Show how the fleet complies with the site's audit controls
(policies/audit/*.rego, see docs/site.md): per control its severity, the
percent of judged nodes that pass, and the failing nodes with the
evidence; then per node its counts.

A control's state on a node is pass, fail (with evidence), error (the
control could not be evaluated, with its file:line) or no-data (the node
has not reported within the server's audit_stale). Percent compliant is
pass / (pass + fail + error): no-data nodes are not judged. Deactivated
nodes are left out.

--at shows the results as they stood at a past time (RFC 3339, a date,
"2006-01-02 15:04", or a duration meaning that long ago: 24h), as far back
as the server's retain.

--format picks table (default), json, csv (one row per node and control,
with a header row) or html: one self-contained file (inline CSS, no
script, nothing fetched) an auditor can keep. -o writes to a file.

Exit codes: 0 every judged control passes, 2 some control fails or is in
error on some node, 1 the site's audit controls do not compile (the
results shown are the last judged) or the server cannot be reached.`,
		Example: `  herd audit
  herd audit --control ssh-root-login
  herd audit --node web-01 --at 2026-11-01
  herd audit --format html -o compliance.html
  herd audit --format csv --at 720h > last-month.csv`,
		Args: cobra.NoArgs,
		RunE: nodecmd.WithAdmin(&af, func(cmd *cobra.Command, _ []string, c herdv1.AdminClient) error {
			req := &herdv1.AuditRequest{Control: control, Node: node}
			var when time.Time
			if at != "" {
				t, err := parseAt(at, time.Now())
				if err != nil {
					return &nodecmd.CodedError{Code: nodecmd.ExitUsage, Err: err}
				}
				when, req.AtUnixMs = t, t.UnixMilli()
			}
			if !slices.Contains([]string{"table", "json", "csv", "html"}, format) {
				return &nodecmd.CodedError{Code: nodecmd.ExitUsage, Err: fmt.Errorf("--format %q: want table, json, csv or html", format)}
			}
			all := &herdv1.AuditResponse{}
			for token := ""; ; {
				resp, err := c.Audit(cmd.Context(), &herdv1.AuditRequest{Control: req.Control, Node: req.Node, AtUnixMs: req.AtUnixMs, PageToken: token})
				if err != nil {
					return err
				}
				if token == "" {
					all.Controls, all.Version, all.AuditError = resp.Controls, resp.Version, resp.AuditError
				}
				all.Results = append(all.Results, resp.Results...)
				if token = resp.NextPageToken; token == "" {
					break
				}
			}
			w := cmd.OutOrStdout()
			if outFile != "" {
				f, err := os.Create(outFile)
				if err != nil {
					return err
				}
				defer f.Close()
				w = f
			}
			view := auditreport.View{Resp: all, At: when, Now: time.Now()}
			var err error
			switch format {
			case "json":
				err = printAuditJSON(w, all)
			case "csv":
				err = printAuditCSV(w, all)
			case "html":
				err = auditreport.WriteHTML(w, view)
			default:
				err = printAudit(w, view)
			}
			if err != nil {
				return err
			}
			if outFile != "" {
				if err := w.(*os.File).Close(); err != nil {
					return fmt.Errorf("writing %s: %w", outFile, err)
				}
			}
			switch {
			case all.AuditError != "":
				return &nodecmd.CodedError{Code: nodecmd.ExitError, Err: fmt.Errorf("the site's audit controls do not compile: results are the last judged")}
			case slices.ContainsFunc(all.Controls, func(c *herdv1.AuditControl) bool { return c.Fail+c.Error > 0 }):
				return &nodecmd.CodedError{Code: 2}
			}
			return nil
		}),
	}
	af.Register(cmd)
	f := cmd.Flags()
	f.StringVar(&control, "control", "", "only the control with this `ID`")
	f.StringVar(&node, "node", "", "only this node")
	f.StringVar(&at, "at", "", "the results as they stood at `TIME` (RFC 3339, a date, or a duration ago such as 24h)")
	f.StringVar(&format, "format", "table", "table, json, csv or html")
	f.StringVarP(&outFile, "output", "o", "", "write to `FILE` instead of stdout")
	return cmd
}

// parseAt reads --at: an RFC 3339 time, a date or a date and time (local),
// or a duration before now.
func parseAt(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("--at %s: a duration says how long ago, so it cannot be negative", s)
		}
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	for _, layout := range []string{time.DateOnly, "2006-01-02 15:04", time.DateTime} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("--at %q: want an RFC 3339 time (2026-11-01T12:00:00Z), a date (2026-11-01), \"2026-11-01 12:00\", or a duration ago (24h)", s)
}

// printAudit writes the table for people. Every string in it came from a
// node or the site and is cleaned.
func printAudit(w io.Writer, v auditreport.View) error {
	r := v.Resp
	fmt.Fprintf(w, "site %s, compliance at %s\n", nodecmd.Clean(nodecmd.ShortVersion(r.Version)), v.When())
	if r.AuditError != "" {
		fmt.Fprintln(w, "the site's audit controls do not compile; the results below are the last judged:")
		for _, l := range strings.Split(strings.TrimRight(r.AuditError, "\n"), "\n") {
			fmt.Fprintf(w, "  %s\n", nodecmd.Clean(l))
		}
	}
	if len(r.Controls) == 0 {
		fmt.Fprintln(w, "no audit controls (add them under policies/audit/)")
		return nil
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CONTROL\tSEVERITY\tCOMPLIANT\tPASS\tFAIL\tNO-DATA\tERROR\tTITLE")
	for _, c := range r.Controls {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\n", nodecmd.Clean(c.Id), nodecmd.Clean(c.Severity), auditreport.Percent(c),
			c.Pass, c.Fail, c.NoData, c.Error, nodecmd.Clean(c.Title))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, c := range r.Controls {
		bad := v.Failing(c.Id)
		if len(bad) == 0 {
			continue
		}
		fmt.Fprintf(w, "\n%s (%s): %d failing\n", nodecmd.Clean(c.Id), nodecmd.Clean(c.Severity), len(bad))
		if c.Reference != "" {
			fmt.Fprintf(w, "  reference:   %s\n", nodecmd.Clean(c.Reference))
		}
		if c.Remediation != "" {
			fmt.Fprintf(w, "  remediation: %s\n", nodecmd.Clean(c.Remediation))
		}
		for _, res := range bad {
			fmt.Fprintf(w, "  %s: %s since %s\n", nodecmd.Clean(res.Node), res.State, time.UnixMilli(res.SinceUnixMs).UTC().Format(time.RFC3339))
			if res.Error != "" {
				fmt.Fprintf(w, "    %s\n", nodecmd.Clean(firstLine(res.Error)))
			}
			for _, e := range res.Evidence {
				fmt.Fprintf(w, "    %s\n", nodecmd.Clean(auditreport.EvidenceLine(e)))
			}
		}
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tPASS\tFAIL\tNO-DATA\tERROR\tFAILING")
	for _, n := range v.Nodes() {
		failing := "-"
		if len(n.Failing) > 0 {
			failing = nodecmd.Clean(strings.Join(n.Failing, ", "))
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%s\n", nodecmd.Clean(n.Node), n.Pass, n.Fail, n.NoData, n.Errors, failing)
	}
	return tw.Flush()
}

// printAuditJSON writes r as printProto does, to w.
func printAuditJSON(w io.Writer, r *herdv1.AuditResponse) error {
	b, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(r)
	if err != nil {
		return err
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	return nodecmd.WriteJSON(w, v)
}

// printAuditCSV writes one row per (node, control) after a header row.
func printAuditCSV(w io.Writer, r *herdv1.AuditResponse) error {
	sev := map[string]*herdv1.AuditControl{}
	for _, c := range r.Controls {
		sev[c.Id] = c
	}
	cw := csv.NewWriter(w)
	if err := cw.Write([]string{"node", "control", "severity", "state", "since", "version", "evidence", "error"}); err != nil {
		return err
	}
	for _, res := range r.Results {
		var ev []string
		for _, e := range res.Evidence {
			ev = append(ev, auditreport.EvidenceLine(e))
		}
		c := cmp.Or(sev[res.Control], &herdv1.AuditControl{})
		row := []string{res.Node, res.Control, c.Severity, res.State, time.UnixMilli(res.SinceUnixMs).UTC().Format(time.RFC3339),
			res.Version, strings.Join(ev, "; "), res.Error}
		for i := range row {
			// Cleaned as for the terminal: a CSV is often read there.
			row[i] = csvCell(nodecmd.Clean(row[i]))
		}
		if err := cw.Write(row); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// csvCell defuses a cell a spreadsheet would run as a formula (evidence
// is a node's text): a leading =, +, -, @, tab or CR gets a quote first.
func csvCell(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}
