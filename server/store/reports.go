package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// StatusInSync is the status of an event whose resource needed nothing.
const StatusInSync = "in-sync"

// MaxEventText is the most bytes of an event's Output, and of its Error,
// that the store keeps: the tail, where a failing command says why.
const MaxEventText = 16 << 10

// eventBits is how many bits of an events row id number the event within
// its report (see the events table): a report keeps at most 1<<eventBits
// events.
const eventBits = 20

// Summary counts a run's events by outcome.
type Summary struct {
	Resources int
	InSync    int
	Changed   int
	Failed    int
	Skipped   int
	Unknown   int
	Refreshed int
	// Drift counts the resources left differing from the catalog: status
	// drift, and in a noop run those that would change.
	Drift int
}

// Report is one run's outcome, as stored.
type Report struct {
	Node          string
	RunID         string
	Version       string // the site version of the catalog the run used
	CatalogDigest string
	Noop          bool
	// Audit marks an audit run: the agent's noop check of its cached
	// catalog between applies. It is never the node's last run (Node's
	// Last fields follow real and noop runs only); its drift is the
	// node's drift.
	Audit bool
	// Partial marks a partial run (--tags, --only): some resources only.
	// Like an audit run it is never the node's last run; it gives no
	// drift either, and compliance does not read it.
	Partial  bool
	Started  time.Time
	Duration time.Duration
	Received time.Time // when the server received it
	Summary  Summary
	// Events are the run's events that were not plainly in sync (see
	// Event.InSync), in the order sent: a run that changed nothing keeps
	// its summary only.
	Events []Event
}

// ExitCode is the run's exit status in Puppet's --detailed-exitcodes
// convention, as the agent computes it: 0 in sync, 2 changed (or
// drift), 4 failures, 6 both.
func (r Report) ExitCode() int {
	code := 0
	if r.Summary.Changed > 0 || r.Summary.Refreshed > 0 || r.Summary.Drift > 0 {
		code |= 2
	}
	if r.Summary.Failed > 0 || r.Summary.Skipped > 0 {
		code |= 4
	}
	return code
}

// Event is what a run says about one resource.
type Event struct {
	ID     string // the resource, "type:name"
	Type   string
	Status string // in-sync, changed, failed, skipped, unknown, drift
	Noop   bool
	// ChangesJSON is the event's changes as JSON the server made; the
	// store keeps it as it is.
	ChangesJSON []byte
	Refresh     string // "refreshed", "would refresh" or ""
	Error       string // the tail, at most MaxEventText bytes
	Cause       string
	Output      string // the tail, at most MaxEventText bytes
	Duration    time.Duration
	// Source is where the site declares the resource (file:line), at
	// most MaxEventText bytes (the tail, where the declaration is); ""
	// in reports of agents that did not say.
	Source string
}

// InSync reports whether e says nothing a reader needs beyond the
// summary's count: in sync and not refreshed. The store does not keep
// such events.
func (e Event) InSync() bool { return e.Status == StatusInSync && e.Refresh == "" }

// tail returns s cut to its last MaxEventText bytes, at a character
// boundary, saying how much was cut.
func tail(s string) string {
	if len(s) <= MaxEventText {
		return s
	}
	i := len(s) - MaxEventText
	for i < len(s) && !utf8.RuneStart(s[i]) {
		i++
	}
	return "[" + strconv.Itoa(i) + " bytes cut]\n" + s[i:]
}

// SaveReport stores r, a report of node's run, exactly once per (node,
// r.RunID): a report already stored (an agent's retry) stores nothing and
// returns duplicate true. It returns once the report is durable, duplicate
// or not. node is the certificate's name and wins over r.Node; a zero
// r.Received is the time of the call. Only the events that are not in
// sync are kept, their Output and Error cut to MaxEventText.
//
// The node's last run, applied etag and summary follow the report unless
// the node has a run that started later (a spooled report arriving late).
func (s *Store) SaveReport(ctx context.Context, node string, r Report) (duplicate bool, err error) {
	p, err := prepareReport(node, r)
	if err != nil {
		return false, err
	}
	// dup is set on the writer goroutine; read it only after a nil error
	// (when ctx ends first, the write may still be running).
	var dup bool
	err = s.write(ctx, func(w *wtx) error {
		var err error
		if dup, err = p.insert(w); err != nil || dup {
			return err
		}
		if p.r.Partial {
			// Some resources only: the rest of the catalog was not
			// looked at, so the node's drift, last run and applied
			// catalog stay what its last whole run said.
			return nil
		}
		if p.r.Audit || !p.r.Noop {
			// A run that checked the node's own state says how far it
			// drifted; a plain noop run (a rehearsal, an operator's
			// --noop) is a question, not an answer.
			if err := p.setDrift(w); err != nil {
				return err
			}
		}
		if p.r.Audit {
			// An audit run is not the node's last run: herd nodes goes
			// on showing how its last apply went.
			return nil
		}
		return p.setLastRun(w)
	})
	if err != nil {
		return false, fmt.Errorf("saving report %s of %s: %w", r.RunID, node, err)
	}
	return dup, nil
}

// SaveReports stores a batch of node's reports, each as SaveReport would,
// in one write: the rows, then the node's drift and last run once each,
// from the newest report that sets them (the store keeps a node's last
// run by start time, so the batch's order does not matter). A batch costs
// a third of the statements of its reports saved one by one. When the
// write fails, each report is saved alone, so that one that cannot be
// stored fails by itself. dups and errs are by index of rs.
func (s *Store) SaveReports(ctx context.Context, node string, rs []Report) (dups []bool, errs []error) {
	dups, errs = make([]bool, len(rs)), make([]error, len(rs))
	var ps []*preparedReport
	var at []int
	for i, r := range rs {
		p, err := prepareReport(node, r)
		if err != nil {
			errs[i] = err
			continue
		}
		ps, at = append(ps, p), append(at, i)
	}
	if len(ps) == 0 {
		return dups, errs
	}
	got := make([]bool, len(ps))
	err := s.write(ctx, func(w *wtx) error {
		// The newest (by start) report that sets the drift, the newest
		// that is the node's last run, and the newest of those that
		// applied its catalog: a newer noop run keeps the applied
		// catalog of the apply before it.
		var drift, last, applied, first *preparedReport
		newer := func(a, b *preparedReport) bool { return b == nil || !a.r.Started.Before(b.r.Started) }
		for j, p := range ps {
			dup, err := p.insert(w)
			if err != nil {
				return err
			}
			if got[j] = dup; dup || p.r.Partial {
				continue
			}
			if first == nil {
				first = p
			}
			if (p.r.Audit || !p.r.Noop) && newer(p, drift) {
				drift = p
			}
			if p.r.Audit {
				continue
			}
			if newer(p, last) {
				last = p
			}
			if !p.r.Noop && newer(p, applied) {
				applied = p
			}
		}
		// The node is first seen by the first report that writes it, as
		// one by one.
		for _, p := range []*preparedReport{drift, applied, last} {
			if p != nil {
				p.firstSeen = first.r.Received
			}
		}
		if drift != nil {
			if err := drift.setDrift(w); err != nil {
				return err
			}
		}
		if applied != nil && applied != last {
			if err := applied.setLastRun(w); err != nil {
				return err
			}
		}
		if last != nil {
			return last.setLastRun(w)
		}
		return nil
	})
	if err == nil {
		for j, i := range at {
			dups[i] = got[j]
		}
		return dups, errs
	}
	if ctx.Err() != nil {
		for _, i := range at {
			errs[i] = fmt.Errorf("saving report %s of %s: %w", rs[i].RunID, node, err)
		}
		return dups, errs
	}
	// One at a time, together: they still share the writer's commits.
	var wg sync.WaitGroup
	for _, i := range at {
		wg.Go(func() { dups[i], errs[i] = s.SaveReport(ctx, node, rs[i]) })
	}
	wg.Wait()
	return dups, errs
}

// preparedReport is a report checked and cut to what is stored, ready
// for the writer.
type preparedReport struct {
	node           string
	r              Report
	keep           []Event
	eventData      []byte // keep, encoded (eventdata.go)
	exit           int
	applied        string
	appliedVersion string
	// firstSeen is the node's first_seen should this write create it.
	firstSeen time.Time
}

// prepareReport checks r and picks its events, in the caller's goroutine,
// to keep the writer's work to the SQL.
func prepareReport(node string, r Report) (*preparedReport, error) {
	if node == "" || r.RunID == "" {
		return nil, fmt.Errorf("saving report %q of %q: empty node name or run id", r.RunID, node)
	}
	if r.Received.IsZero() {
		r.Received = time.Now()
	}
	var keep []Event
	for i, e := range r.Events {
		if !e.InSync() {
			if keep == nil {
				keep = make([]Event, 0, len(r.Events)-i)
			}
			e.Output, e.Error, e.Source = tail(e.Output), tail(e.Error), tail(e.Source)
			keep = append(keep, e)
		}
	}
	if len(keep) > 1<<eventBits {
		return nil, fmt.Errorf("saving report %s of %s: %d events not in sync, more than the %d a report keeps", r.RunID, node, len(keep), 1<<eventBits)
	}
	p := &preparedReport{node: node, r: r, keep: keep, eventData: encodeEvents(keep), exit: r.ExitCode(), firstSeen: r.Received}
	if !r.Noop {
		p.applied, p.appliedVersion = r.CatalogDigest, r.Version
	}
	return p, nil
}

// insert stores the report's row and events; dup says the run was
// stored already, and nothing was written.
func (p *preparedReport) insert(w *wtx) (dup bool, err error) {
	r, sum := &p.r, &p.r.Summary
	// RETURNING rather than LastInsertId, which PostgreSQL has not: no
	// row back is a run stored already.
	var id int64
	err = w.queryRow(`INSERT INTO reports (node, run_id, received, version, catalog_digest, noop, audit, partial, started, duration, exit_code,
			resources, in_sync, changed, failed, skipped, unknown, refreshed, drift, events, event_data)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (node, run_id) DO NOTHING RETURNING id`,
		p.node, r.RunID, ns(r.Received), r.Version, r.CatalogDigest, r.Noop, r.Audit, r.Partial, ns(r.Started), int64(r.Duration), p.exit,
		sum.Resources, sum.InSync, sum.Changed, sum.Failed, sum.Skipped, sum.Unknown, sum.Refreshed, sum.Drift, len(p.keep), p.eventData).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return true, nil
	}
	return false, err
}

// setDrift makes the report's drift the node's, unless a run that started
// later set it.
func (p *preparedReport) setDrift(w *wtx) error {
	_, err := w.exec(`INSERT INTO nodes (name, first_seen, drift, drift_started) VALUES (?, ?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET drift = excluded.drift, drift_started = excluded.drift_started
		WHERE excluded.drift_started >= nodes.drift_started`,
		p.node, ns(p.firstSeen), p.r.Summary.Drift, ns(p.r.Started))
	return err
}

// setLastRun makes the report the node's last run (and, unless it is a
// noop run, its applied catalog), unless a run that started later is.
func (p *preparedReport) setLastRun(w *wtx) error {
	r, sum := &p.r, &p.r.Summary
	_, err := w.exec(`INSERT INTO nodes (name, first_seen, applied_etag, applied_version, last_run_id, last_received, last_started, last_noop, last_exit_code,
			last_resources, last_in_sync, last_changed, last_failed, last_skipped, last_unknown, last_refreshed)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET
			applied_etag = CASE WHEN excluded.last_noop != 0 THEN nodes.applied_etag ELSE excluded.applied_etag END,
			applied_version = CASE WHEN excluded.last_noop != 0 THEN nodes.applied_version ELSE excluded.applied_version END,
			last_run_id = excluded.last_run_id, last_received = excluded.last_received, last_started = excluded.last_started,
			last_noop = excluded.last_noop, last_exit_code = excluded.last_exit_code,
			last_resources = excluded.last_resources, last_in_sync = excluded.last_in_sync, last_changed = excluded.last_changed,
			last_failed = excluded.last_failed, last_skipped = excluded.last_skipped, last_unknown = excluded.last_unknown,
			last_refreshed = excluded.last_refreshed
		WHERE excluded.last_started >= nodes.last_started`,
		p.node, ns(p.firstSeen), p.applied, p.appliedVersion, r.RunID, ns(r.Received), ns(r.Started), r.Noop, p.exit,
		sum.Resources, sum.InSync, sum.Changed, sum.Failed, sum.Skipped, sum.Unknown, sum.Refreshed)
	return err
}

// Reports returns the newest reports, newest first (in the order they
// were stored), with their events: node's, or every node's when node is
// "". At most limit (DefaultHistoryLimit when limit <= 0).
func (s *Store) Reports(ctx context.Context, node string, limit int) ([]Report, error) {
	rs, _, err := s.ReportsPage(ctx, ReportQuery{Node: node, Limit: limitOr(limit, DefaultHistoryLimit)})
	return rs, err
}

// ReportQuery selects a page of reports for ReportsPage.
type ReportQuery struct {
	Node string // "" for every node
	// Before is the cursor: only reports stored before the one it names
	// (the Next of the previous page); 0 starts from the newest.
	Before int64
	// Limit is the most reports (DefaultHistoryLimit when <= 0).
	Limit int
	// MaxBytes, when positive, ends the page once its events' text
	// passes it (a page holds at least one report), so that a page of
	// large reports stays small.
	MaxBytes int
}

// ReportsPage returns a page of reports, newest first, and the cursor of
// the next page (0 when this one is the last).
func (s *Store) ReportsPage(ctx context.Context, q ReportQuery) ([]Report, int64, error) {
	limit := limitOr(q.Limit, DefaultHistoryLimit)
	query := `SELECT id, node, run_id, received, version, catalog_digest, noop, audit, partial, started, duration,
		resources, in_sync, changed, failed, skipped, unknown, refreshed, drift, events, event_data FROM reports`
	before := q.Before
	if before <= 0 {
		before = math.MaxInt64
	}
	args := []any{}
	if q.Node != "" {
		// Pick the ids from the (node, run_id) index, which holds them,
		// before reading any row.
		query += ` WHERE id IN (SELECT id FROM reports WHERE node = ? AND id < ? ORDER BY id DESC LIMIT ?)`
		args = append(args, q.Node, before, limit+1)
	} else {
		query += ` WHERE id < ?`
		args = append(args, before)
	}
	// One more than asked: whether it exists says whether there is a
	// next page.
	args = append(args, limit+1)
	// One read transaction: the events read below belong to the same
	// snapshot as the reports.
	tx, err := s.rdb.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, 0, fmt.Errorf("listing reports: %w", err)
	}
	defer tx.Rollback() // read-only: nothing to keep
	rows, err := tx.QueryContext(ctx, query+` ORDER BY id DESC LIMIT ?`, args...)
	if err != nil {
		return nil, 0, fmt.Errorf("listing reports: %w", err)
	}
	var out []Report
	var ids []int64
	var counts []int
	var data [][]byte
	for rows.Next() {
		var r Report
		var id, received, started, duration int64
		var events int
		var eventData []byte
		sm := &r.Summary
		if err := rows.Scan(&id, &r.Node, &r.RunID, &received, &r.Version, &r.CatalogDigest, &r.Noop, &r.Audit, &r.Partial, &started, &duration,
			&sm.Resources, &sm.InSync, &sm.Changed, &sm.Failed, &sm.Skipped, &sm.Unknown, &sm.Refreshed, &sm.Drift, &events, &eventData); err != nil {
			rows.Close()
			return nil, 0, fmt.Errorf("listing reports: %w", err)
		}
		r.Received, r.Started, r.Duration = fromNS(received), fromNS(started), time.Duration(duration)
		out = append(out, r)
		ids = append(ids, id)
		counts = append(counts, events)
		data = append(data, eventData)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("listing reports: %w", err)
	}
	more := len(out) > limit
	if more {
		out, ids = out[:limit], ids[:limit]
	}
	size := 0
	for i := range out {
		if q.MaxBytes > 0 && i > 0 && size > q.MaxBytes {
			out, ids, more = out[:i], ids[:i], true
			break
		}
		if out[i].Events, err = reportEvents(ctx, tx, ids[i], counts[i], data[i]); err != nil {
			return nil, 0, fmt.Errorf("listing reports: run %s of %s: %w", out[i].RunID, out[i].Node, err)
		}
		for _, e := range out[i].Events {
			size += len(e.ID) + len(e.ChangesJSON) + len(e.Error) + len(e.Cause) + len(e.Output) + len(e.Source)
		}
	}
	if !more || len(ids) == 0 {
		return out, 0, nil
	}
	return out, ids[len(ids)-1], nil
}

// reportEvents returns a report's events: decoded from its event_data, or,
// for a report stored before migration 14, read from the events table.
func reportEvents(ctx context.Context, tx *readTx, report int64, count int, data []byte) ([]Event, error) {
	switch {
	case len(data) > 0:
		return decodeEvents(data)
	case count > 0:
		return readEvents(ctx, tx, report, count)
	}
	return nil, nil
}

// readEvents reads a report's rows in the events table.
func readEvents(ctx context.Context, tx *readTx, report int64, count int) ([]Event, error) {
	first := report << eventBits
	rows, err := tx.QueryContext(ctx, `SELECT resource, type, status, noop, changes, refresh, error, cause, output, duration, source
		FROM events WHERE id >= ? AND id < ? ORDER BY id`, first, first+1<<eventBits)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make([]Event, 0, count)
	for rows.Next() {
		var e Event
		var d int64
		if err := rows.Scan(&e.ID, &e.Type, &e.Status, &e.Noop, &e.ChangesJSON, &e.Refresh, &e.Error, &e.Cause, &e.Output, &d, &e.Source); err != nil {
			return nil, err
		}
		e.Duration = time.Duration(d)
		out = append(out, e)
	}
	return out, rows.Err()
}
