package agent

import (
	"context"
	"errors"
	"log/slog"
	"strings"

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
			Refreshed: int32(r.Summary.Refreshed), Drift: int32(r.Summary.Drift),
		},
		Audit:   r.Audit,
		Partial: r.Partial,
		Events:  make([]*herdv1.Event, len(r.Events)),
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
	if len(r.Services) > 0 {
		p.Services = make([]*herdv1.ServiceHealth, len(r.Services))
		for i, sh := range r.Services {
			p.Services[i] = &herdv1.ServiceHealth{Name: sh.Name, Health: string(sh.Health), Detail: sh.Detail}
		}
	}
	return p
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
