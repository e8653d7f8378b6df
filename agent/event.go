package agent

import (
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/herdcm/herd/agent/resources"
)

// Status is the outcome of one resource in one run.
type Status string

// The statuses.
const (
	InSync  Status = "in-sync" // nothing to do
	Changed Status = "changed" // changed (or, in noop, would change)
	Failed  Status = "failed"  // check, apply, re-check or refresh failed
	Skipped Status = "skipped" // a dependency failed, or the run was stopped
	Unknown Status = "unknown" // noop: depends on a change noop did not make
	// Drift: an audit = true resource differs from the catalog; it is
	// only checked, never changed, so the changes say what differs.
	Drift Status = "drift"
)

// Event is everything a run says about one resource. The report, the
// terminal view and the spool all read the same events.
type Event struct {
	ID      string             `json:"id"`
	Type    string             `json:"type"`
	Status  Status             `json:"status"`
	Noop    bool               `json:"noop,omitempty"` // the changes were not made
	Changes []resources.Change `json:"changes,omitempty"`
	// Refresh is "refreshed", "would refresh" (noop), or "" when the
	// resource was not notified (or needed no refresh).
	Refresh string `json:"refresh,omitempty"`
	Error   string `json:"error,omitempty"`
	// Cause says why a resource was skipped or unknown, naming the
	// resource responsible.
	Cause    string        `json:"cause,omitempty"`
	Output   string        `json:"output,omitempty"`
	Source   string        `json:"source,omitempty"`
	Duration time.Duration `json:"duration_ns"`
}

// Summary counts a run's events.
type Summary struct {
	Resources int `json:"resources"`
	InSync    int `json:"in_sync"`
	Changed   int `json:"changed"`
	Failed    int `json:"failed"`
	Skipped   int `json:"skipped"`
	Unknown   int `json:"unknown"`
	Refreshed int `json:"refreshed"`
	// Drift counts the resources that differ from the catalog and were
	// left so: status drift, and in a noop run those that would change.
	Drift int `json:"drift"`
}

// Report is the outcome of one run.
type Report struct {
	RunID         string                   `json:"run_id"`
	Node          string                   `json:"node"`
	Version       string                   `json:"version"`
	CatalogDigest string                   `json:"catalog_digest"`
	Noop          bool                     `json:"noop"`
	Started       time.Time                `json:"started"`
	Duration      time.Duration            `json:"duration_ns"`
	Phases        map[string]time.Duration `json:"phases_ns"`
	Summary       Summary                  `json:"summary"`
	Events        []Event                  `json:"events"` // sorted by resource id
	// Services is the health of the catalog's supervised services that
	// have a health check, as the run ended (see servicesHealth).
	Services []ServiceHealth `json:"services,omitempty"`
	// Audit marks an audit run: the daemon's noop check of its cached
	// catalog between applies (DaemonOptions.AuditInterval).
	Audit bool `json:"audit,omitempty"`
	// Partial marks a run of some resources only (--tags, --only): it
	// says nothing of the rest of the catalog.
	Partial bool `json:"partial,omitempty"`
}

// ExitCode is the run's exit status in Puppet's --detailed-exitcodes
// convention: 0 in sync, 2 changed, 4 failures, 6 changes and failures.
// Noop changes count as changes, so that `herd apply --noop` tells a
// pipeline whether a run would do something; drift (an audit = true
// resource that differs) counts the same way, as a difference and never
// as a failure.
func (r *Report) ExitCode() int {
	code := 0
	if r.Summary.Changed > 0 || r.Summary.Refreshed > 0 || r.Summary.Drift > 0 {
		code |= 2
	}
	if r.Summary.Failed > 0 || r.Summary.Skipped > 0 {
		code |= 4
	}
	return code
}

func (s *Summary) add(e Event) {
	s.Resources++
	switch e.Status {
	case InSync:
		s.InSync++
	case Changed:
		s.Changed++
	case Failed:
		s.Failed++
	case Skipped:
		s.Skipped++
	case Unknown:
		s.Unknown++
	}
	if e.Status == Drift || (e.Status == Changed && e.Noop) {
		s.Drift++
	}
	if e.Refresh == "refreshed" || e.Refresh == "would refresh" {
		s.Refreshed++
	}
}

// redact clears the values of sensitive changes, so that a secret never
// reaches an event, whatever a type put in its plan.
func redact(cs []resources.Change) []resources.Change {
	for i := range cs {
		if cs[i].Sensitive {
			cs[i].From, cs[i].To, cs[i].Diff = "", "", ""
		}
	}
	return cs
}

// Bounds of what one report says in free text (diffs, command output,
// attribute values), so that a report stays far below any server's
// message limit by construction: twenty changed 900 KB files once made a
// 20 MB report the server refused, and it blocked the spool for ever.
const (
	// maxEventText bounds the text of one event.
	maxEventText = 64 << 10
	// maxReportText bounds the text of a whole report.
	maxReportText = 1 << 20
)

// bound cuts the report's diffs, outputs and values to maxEventText per
// event and maxReportText in all, each cut ending with "… N bytes more".
// Events themselves are never dropped: the summary and the statuses stay
// whole.
func (r *Report) bound() {
	left := maxReportText
	for i := range r.Events {
		e := &r.Events[i]
		budget := min(maxEventText, left)
		for j := range e.Changes {
			c := &e.Changes[j]
			c.From = clip(c.From, &budget)
			c.To = clip(c.To, &budget)
			c.Diff = clip(c.Diff, &budget)
		}
		e.Output = clip(e.Output, &budget)
		e.Error = clip(e.Error, &budget)
		left -= min(maxEventText, left) - budget
	}
}

// clip returns s whole when it fits in *budget, else its head (cut at a
// rune boundary: a report's strings must stay valid UTF-8) and a note of
// how much was left out; it takes what it returns from *budget.
func clip(s string, budget *int) string {
	if len(s) <= *budget {
		*budget -= len(s)
		return s
	}
	n := max(*budget, 0)
	for n > 0 && n < len(s) && !utf8.RuneStart(s[n]) {
		n--
	}
	*budget -= n
	return s[:n] + fmt.Sprintf("\n… %d bytes more\n", len(s)-n)
}

// stateFailed adds (once) the failed herd:state event that says the run
// could not be kept in the agent's state: the report then shows the node
// failing, never as its last green run.
func (r *Report) stateFailed(err error) (e Event, added bool) {
	for _, e := range r.Events {
		if e.ID == "herd:state" {
			return e, false
		}
	}
	e = Event{ID: "herd:state", Type: "herd", Status: Failed, Error: err.Error()}
	r.Events = append(r.Events, e)
	r.Summary.add(e)
	return e, true
}
