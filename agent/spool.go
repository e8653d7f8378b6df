package agent

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/herdcm/herd/api/herdv1"
)

// Limits of what the agent keeps about past runs.
const (
	// DefaultKeepRuns is how many runs the history keeps.
	DefaultKeepRuns = 1000
	// maxSpooled bounds the reports waiting for the server: after an
	// outage long enough to fill it, the oldest are dropped (and logged),
	// so that a node cut off for months does not fill its disk.
	maxSpooled = 1000
)

// Proto returns the report as it travels to the server. The node is not in
// it: the server knows the node from its certificate.
func (r *Report) Proto() *herdv1.Report {
	p := &herdv1.Report{
		RunId:         r.RunID,
		Version:       r.Version,
		CatalogDigest: r.CatalogDigest,
		Noop:          r.Noop,
		StartedUnixNs: r.Started.UnixNano(),
		DurationNs:    int64(r.Duration),
		Summary: &herdv1.Summary{
			Resources: int32(r.Summary.Resources), InSync: int32(r.Summary.InSync), Changed: int32(r.Summary.Changed),
			Failed: int32(r.Summary.Failed), Skipped: int32(r.Summary.Skipped), Unknown: int32(r.Summary.Unknown),
			Refreshed: int32(r.Summary.Refreshed),
		},
		Events: make([]*herdv1.Event, len(r.Events)),
	}
	for i, e := range r.Events {
		pe := &herdv1.Event{
			Id: e.ID, Type: e.Type, Status: string(e.Status), Noop: e.Noop, Refresh: e.Refresh,
			Error: e.Error, Cause: e.Cause, Output: e.Output, DurationNs: int64(e.Duration),
		}
		if len(e.Changes) > 0 {
			pe.Changes = make([]*herdv1.Change, len(e.Changes))
			for j, c := range e.Changes {
				// Values of a sensitive change were cleared by the
				// engine; clear them again here, at the door.
				pc := &herdv1.Change{Attr: c.Attr, Action: c.Action.String(), Sensitive: c.Sensitive}
				if !c.Sensitive {
					pc.From, pc.To, pc.Diff = c.From, c.To, c.Diff
				}
				pe.Changes[j] = pc
			}
		}
		p.Events[i] = pe
	}
	return p
}

// SpooledReport is a report waiting for the server's acknowledgement.
type SpooledReport struct {
	RunID   string    `json:"run_id"`
	Created time.Time `json:"created"`
	Size    int       `json:"size"` // bytes on the wire
}

// SpooledReports lists the reports waiting to be sent, oldest first.
func (s *State) SpooledReports(ctx context.Context) ([]SpooledReport, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT run_id, created, length(report) FROM report_spool ORDER BY seq`)
	if err != nil {
		return nil, fmt.Errorf("listing spooled reports: %w", err)
	}
	defer rows.Close()
	var out []SpooledReport
	for rows.Next() {
		var r SpooledReport
		var created int64
		if err := rows.Scan(&r.RunID, &created, &r.Size); err != nil {
			return nil, fmt.Errorf("listing spooled reports: %w", err)
		}
		r.Created = time.Unix(0, created)
		out = append(out, r)
	}
	return out, rows.Err()
}

// spoolReport keeps a report until the server acknowledges it, dropping
// the oldest beyond maxSpooled; it returns how many it dropped.
func (s *State) spoolReport(ctx context.Context, r *herdv1.Report) (dropped int64, err error) {
	b, err := proto.Marshal(r)
	if err != nil {
		return 0, fmt.Errorf("spooling report %s: %w", r.RunId, err)
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("spooling report %s: %w", r.RunId, err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `INSERT INTO report_spool (run_id, report, created) VALUES (?, ?, ?)`, r.RunId, b, time.Now().UnixNano()); err != nil {
		return 0, fmt.Errorf("spooling report %s: %w", r.RunId, err)
	}
	res, err := tx.ExecContext(ctx, `DELETE FROM report_spool WHERE seq <= (SELECT seq FROM report_spool ORDER BY seq DESC LIMIT 1 OFFSET ?)`, maxSpooled)
	if err != nil {
		return 0, fmt.Errorf("spooling report %s: %w", r.RunId, err)
	}
	dropped, _ = res.RowsAffected()
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("spooling report %s: %w", r.RunId, err)
	}
	return dropped, nil
}

// oldestSpooled returns the oldest waiting report; ok is false when none.
func (s *State) oldestSpooled(ctx context.Context) (runID string, b []byte, ok bool, err error) {
	err = s.db.QueryRowContext(ctx, `SELECT run_id, report FROM report_spool ORDER BY seq LIMIT 1`).Scan(&runID, &b)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil, false, nil
	}
	if err != nil {
		return "", nil, false, fmt.Errorf("reading the report spool: %w", err)
	}
	return runID, b, true, nil
}

// sendReport sends one report.
func sendReport(ctx context.Context, node herdv1.NodeClient, r *herdv1.Report) error {
	var trailer metadata.MD
	ctx, cancel := context.WithTimeout(ctx, rpcTimeout)
	defer cancel()
	if _, err := node.SendReport(ctx, &herdv1.SendReportRequest{Report: r}, grpc.Trailer(&trailer)); err != nil {
		return rpcError("sending report "+r.RunId, err, trailer)
	}
	return nil
}

// respool replaces a spooled report, keeping its place in the order.
func (s *State) respool(ctx context.Context, runID string, r *herdv1.Report) error {
	b, err := proto.Marshal(r)
	if err != nil {
		return fmt.Errorf("respooling report %s: %w", runID, err)
	}
	if _, err := s.db.ExecContext(ctx, `UPDATE report_spool SET report = ? WHERE run_id = ?`, b, runID); err != nil {
		return fmt.Errorf("respooling report %s: %w", runID, err)
	}
	return nil
}

// tooLarge says whether the server refused a message for its size (gRPC
// answers RESOURCE_EXHAUSTED for that, as for an overload: the message
// tells them apart).
func tooLarge(err error) bool {
	st, ok := status.FromError(err)
	return ok && st.Code() == codes.ResourceExhausted && strings.Contains(st.Message(), "larger than max")
}

// droppedText replaces the text a cut-down report leaves out.
const droppedText = "(left out: the report was too large for the server)"

// cutDown returns r without its diffs, outputs and values (statuses,
// errors, the summary and the timings stay), or nil when r has nothing
// more to cut.
func cutDown(r *herdv1.Report) *herdv1.Report {
	c := proto.Clone(r).(*herdv1.Report)
	cut := false
	drop := func(s *string) {
		if *s != "" && *s != droppedText {
			*s, cut = droppedText, true
		}
	}
	for _, e := range c.Events {
		drop(&e.Output)
		if len(e.Error) > 2048 {
			budget := 1024
			e.Error, cut = clip(e.Error, &budget), true
		}
		for _, ch := range e.Changes {
			drop(&ch.Diff)
			drop(&ch.From)
			drop(&ch.To)
		}
	}
	if !cut {
		return nil
	}
	return c
}

func (s *State) unspool(ctx context.Context, runID string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM report_spool WHERE run_id = ?`, runID); err != nil {
		return fmt.Errorf("unspooling report %s: %w", runID, err)
	}
	return nil
}

// TrimRuns keeps only the newest keep runs of the history.
func (s *State) TrimRuns(ctx context.Context, keep int) error {
	if keep <= 0 {
		return nil
	}
	_, err := s.db.ExecContext(ctx, `DELETE FROM runs WHERE id IN (SELECT id FROM runs ORDER BY started DESC LIMIT -1 OFFSET ?)`, keep)
	if err != nil {
		return fmt.Errorf("trimming the run history: %w", err)
	}
	return nil
}

// sendSpooled sends the waiting reports, oldest first, one at a time, and
// removes each once the server acknowledged it (the server stores a report
// once by its run id, so a report sent twice after a lost answer is
// harmless: delivery is at least once here, exactly once there). It stops
// at the first failure, keeping that report and every later one, so that
// the order holds. A report the server refuses as invalid would block the
// spool for ever: it is dropped, and logged.
func sendSpooled(ctx context.Context, st *State, node herdv1.NodeClient, log *slog.Logger) (sent int, err error) {
	for ctx.Err() == nil {
		runID, b, ok, err := st.oldestSpooled(ctx)
		if err != nil || !ok {
			return sent, err
		}
		var r herdv1.Report
		if err := proto.Unmarshal(b, &r); err != nil {
			log.Error("dropping an unreadable spooled report", "run", runID, "err", err)
			if err := st.unspool(ctx, runID); err != nil {
				return sent, err
			}
			continue
		}
		err = sendReport(ctx, node, &r)
		if err != nil {
			rerr := err
			err = errors.Unwrap(err)
			if tooLarge(err) {
				if cut := cutDown(&r); cut != nil {
					// Never retried as it is: the cut report replaces it
					// in the spool, in its place in the order.
					log.Warn("the server refused a report as too large; sending it without diffs and output", "run", runID, "bytes", len(b))
					if err := st.respool(context.WithoutCancel(ctx), runID, cut); err != nil {
						return sent, err
					}
					continue
				}
				log.Error("the server refused a report as too large even without diffs and output; dropping it", "run", runID, "err", err)
			} else if re := rerr.(*RPCError); re.Code() != codes.InvalidArgument {
				return sent, rerr
			} else {
				log.Error("the server refused a report as invalid; dropping it", "run", runID, "err", err)
			}
		} else {
			sent++
		}
		if err := st.unspool(context.WithoutCancel(ctx), runID); err != nil {
			return sent, err
		}
	}
	return sent, ctx.Err()
}
