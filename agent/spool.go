package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
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
			Error: e.Error, Cause: e.Cause, Output: e.Output, DurationNs: int64(e.Duration), Source: e.Source,
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

// Bounds of one SendReports call the agent makes: at most maxBatch
// reports (the server takes up to 100) and about maxBatchBytes of them
// (the server's largest message is 16 MiB by default; a report larger
// than this goes alone). A batch of a backlog is one call and one durable
// commit on the server instead of one each.
const (
	maxBatch      = 64
	maxBatchBytes = 1 << 20
)

// sendSpooled sends the waiting reports, oldest first, in batches, and
// removes each once the server acknowledged it (the server stores a report
// once by its run id, so a report sent twice after a lost answer is
// harmless: delivery is at least once here, exactly once there). A server
// without SendReports (UNIMPLEMENTED: older than the agent) gets them one
// at a time, as before. It stops at the first failure that may pass,
// keeping that report and every later one that was not acknowledged. A
// report the server refuses as invalid would block the spool for ever: it
// is dropped, and logged.
func sendSpooled(ctx context.Context, st *State, node herdv1.NodeClient, log *slog.Logger) (sent int, err error) {
	batched := true
	for ctx.Err() == nil {
		if !batched {
			n, more, err := sendOldest(ctx, st, node, log)
			sent += n
			if err != nil || !more {
				return sent, err
			}
			continue
		}
		entries, err := st.spooledBatch(ctx, maxBatch, maxBatchBytes)
		if err != nil || len(entries) == 0 {
			return sent, err
		}
		req := &herdv1.SendReportsRequest{Reports: make([]*herdv1.Report, 0, len(entries))}
		var unreadable []string
		for _, e := range entries {
			var r herdv1.Report
			if err := proto.Unmarshal(e.report, &r); err != nil {
				log.Error("dropping an unreadable spooled report", "run", e.runID, "err", err)
				unreadable = append(unreadable, e.runID)
				continue
			}
			req.Reports = append(req.Reports, &r)
		}
		if len(unreadable) > 0 {
			if err := st.unspoolAll(context.WithoutCancel(ctx), unreadable); err != nil {
				return sent, err
			}
			continue
		}
		resp, err := sendBatch(ctx, node, req)
		switch {
		case status.Code(errors.Unwrap(err)) == codes.Unimplemented:
			log.Debug("the server has no SendReports; sending reports one at a time")
			batched = false
			continue
		case err != nil && (tooLarge(errors.Unwrap(err)) || len(req.Reports) == 1 && status.Code(errors.Unwrap(err)) == codes.InvalidArgument):
			// Larger than the server takes in one message, or a
			// report refused alone: the oldest goes by itself, where
			// SendReport's handling applies (cut down when too large,
			// dropped when invalid); then batches again.
			n, more, err := sendOldest(ctx, st, node, log)
			sent += n
			if err != nil || !more {
				return sent, err
			}
			continue
		case err != nil && status.Code(errors.Unwrap(err)) == codes.InvalidArgument:
			// The batch as a whole was refused (a server that takes
			// fewer at once): one at a time, as before.
			log.Warn("the server refused a batch of reports; sending them one at a time", "err", err)
			batched = false
			continue
		case err != nil:
			return sent, err
		}
		done := resp.AckedRunIds
		sent += len(done)
		var retry error
		for _, rr := range resp.Refused {
			serr := status.Error(codes.Code(rr.Code), rr.Reason)
			if codes.Code(rr.Code) == codes.InvalidArgument {
				log.Error("the server refused a report as invalid; dropping it", "run", rr.RunId, "err", serr)
				done = append(done, rr.RunId)
				continue
			}
			if retry == nil {
				var trailer metadata.MD
				if rr.RetryAfterMs > 0 {
					trailer = metadata.Pairs(RetryAfterKey, strconv.FormatInt(rr.RetryAfterMs, 10))
				}
				retry = rpcError("sending report "+rr.RunId, serr, trailer)
			}
		}
		if err := st.unspoolAll(context.WithoutCancel(ctx), done); err != nil {
			return sent, err
		}
		if retry != nil {
			return sent, retry
		}
		if len(done) == 0 {
			// Nothing acknowledged nor refused: a server that answers
			// so would be asked the same for ever.
			return sent, fmt.Errorf("sending %d reports: the server acknowledged none of them", len(req.Reports))
		}
	}
	return sent, ctx.Err()
}

// sendBatch sends one batch of reports.
func sendBatch(ctx context.Context, node herdv1.NodeClient, req *herdv1.SendReportsRequest) (*herdv1.SendReportsResponse, error) {
	var trailer metadata.MD
	ctx, cancel := context.WithTimeout(ctx, rpcTimeout)
	defer cancel()
	resp, err := node.SendReports(ctx, req, grpc.Trailer(&trailer))
	if err != nil {
		return nil, rpcError(fmt.Sprintf("sending %d reports", len(req.Reports)), err, trailer)
	}
	return resp, nil
}

// sendOldest sends the oldest waiting report alone with SendReport; more
// is false when the spool is empty.
func sendOldest(ctx context.Context, st *State, node herdv1.NodeClient, log *slog.Logger) (sent int, more bool, err error) {
	runID, b, ok, err := st.oldestSpooled(ctx)
	if err != nil || !ok {
		return 0, false, err
	}
	var r herdv1.Report
	if err := proto.Unmarshal(b, &r); err != nil {
		log.Error("dropping an unreadable spooled report", "run", runID, "err", err)
		return 0, true, st.unspool(ctx, runID)
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
				return 0, true, st.respool(context.WithoutCancel(ctx), runID, cut)
			}
			log.Error("the server refused a report as too large even without diffs and output; dropping it", "run", runID, "err", err)
		} else if re := rerr.(*RPCError); re.Code() != codes.InvalidArgument {
			return 0, true, rerr
		} else {
			log.Error("the server refused a report as invalid; dropping it", "run", runID, "err", err)
		}
	} else {
		sent++
	}
	return sent, true, st.unspool(context.WithoutCancel(ctx), runID)
}
