package nodecmd

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/herdcm/herd/agent"
)

// RunSummary is what a run's summary says, wherever it is printed: herd
// apply, herd agent (each run), herd up (each run) and herd reports all
// render it with WriteRunSummary, so that one run reads the same in all
// four. Every string may have come from a node and is cleaned when
// written.
type RunSummary struct {
	Node, RunID string
	// Version is the site version: a git commit (also in masterless
	// runs of a git checkout), or "sha256:…" for a plain directory.
	Version              string
	Noop, Audit, Partial bool
	Duration             time.Duration
	Counts               agent.Summary
	// Failed lists the failed resources, in the report's order.
	Failed []FailedResource
}

// FailedResource is one failed resource in a summary.
type FailedResource struct {
	ID string
	// Source is where the site declares it (file:line); "" when the
	// report does not say (a stored report of an agent older than the
	// event's source field).
	Source string
	Error  string
}

// Bounds of a summary's failure list: a run where everything failed
// names the first few and counts the rest, and an error's first lines
// say what went wrong (the whole of it is in the report).
const (
	summaryMaxFailed     = 10
	summaryMaxErrorLines = 3
)

// SummaryOf is the summary of a report the agent made.
func SummaryOf(r *agent.Report) RunSummary {
	s := RunSummary{Node: r.Node, RunID: r.RunID, Version: r.Version, Noop: r.Noop, Audit: r.Audit,
		Partial: r.Partial, Duration: r.Duration, Counts: r.Summary}
	for _, e := range r.Events {
		if e.Status == agent.Failed {
			s.Failed = append(s.Failed, FailedResource{ID: e.ID, Source: e.Source, Error: e.Error})
		}
	}
	return s
}

// WriteSummary prints a report's summary (see WriteRunSummary).
func WriteSummary(w io.Writer, r *agent.Report) { WriteRunSummary(w, SummaryOf(r)) }

// WriteRunSummary prints a run's summary: one line with what the run did
// to which node, how long it took, its counts and its site version; then
// each failed resource with where the site declares it and the first
// lines of its error. A run says "converged" only when nothing failed
// and nothing was skipped.
func WriteRunSummary(w io.Writer, s RunSummary) {
	fmt.Fprintln(w, SummaryLine(s))
	for i, f := range s.Failed {
		if i == summaryMaxFailed {
			fmt.Fprintf(w, "  and %d more failed\n", len(s.Failed)-i)
			break
		}
		where := ""
		if f.Source != "" {
			where = " (" + Clean(f.Source) + ")"
		}
		fmt.Fprintf(w, "  failed %s%s\n", Clean(f.ID), where)
		lines := strings.Split(strings.TrimRight(f.Error, "\n"), "\n")
		for j, l := range lines {
			if j == summaryMaxErrorLines {
				fmt.Fprintf(w, "      … %d more lines\n", len(lines)-j)
				break
			}
			if l = strings.TrimRight(l, " \t\r"); l != "" {
				fmt.Fprintf(w, "      %s\n", Clean(strings.ReplaceAll(l, "\t", "    ")))
			}
		}
	}
}

// SummaryLine is the first line of a run's summary (see
// WriteRunSummary), for views that list the failures their own way.
func SummaryLine(s RunSummary) string {
	c := s.Counts
	verb := "converged"
	switch {
	case s.Audit:
		verb = "audited"
	case s.Noop:
		verb = "checked (noop)"
	case c.Failed > 0 || c.Skipped > 0:
		verb = "did not converge"
	}
	if s.Partial {
		verb += " partially"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s in %s: %d resources, %d in sync, %d changed, %d failed, %d skipped",
		verb, Clean(s.Node), HumanDuration(s.Duration), c.Resources, c.InSync, c.Changed, c.Failed, c.Skipped)
	if c.Unknown > 0 {
		fmt.Fprintf(&b, ", %d unknown", c.Unknown)
	}
	if c.Refreshed > 0 {
		fmt.Fprintf(&b, ", %d refreshed", c.Refreshed)
	}
	if c.Drift > 0 {
		fmt.Fprintf(&b, ", %d drift", c.Drift)
	}
	fmt.Fprintf(&b, " (site %s, run %s)", Clean(siteLabel(s.Version)), Clean(s.RunID))
	return b.String()
}

// siteLabel abbreviates a site version for a summary line: a content
// digest as ShortVersion does, a git commit to its first 12 hex digits
// (as git's short form; "+dirty.…" kept).
func siteLabel(v string) string {
	if len(v) >= 40 && isHexString(v[:40]) && (len(v) == 40 || v[40] == '+') {
		return v[:12] + v[40:]
	}
	return ShortVersion(v)
}

func isHexString(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// HumanDuration rounds d for a person: 3.42ms, 115ms, 2.35s, 1m12s, to
// three significant figures or so, never the nanosecond count.
func HumanDuration(d time.Duration) time.Duration {
	switch {
	case d < time.Millisecond:
		return d.Round(time.Microsecond)
	case d < 10*time.Millisecond:
		return d.Round(10 * time.Microsecond)
	case d < time.Second:
		return d.Round(time.Millisecond)
	case d < time.Minute:
		return d.Round(10 * time.Millisecond)
	default:
		return d.Round(time.Second)
	}
}
