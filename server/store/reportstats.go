package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// ReportBucket counts the runs received in [Start, Start+step).
type ReportBucket struct {
	Start  time.Time
	Runs   int
	Failed int // runs with a failed resource
}

// ReportCounts counts the runs (not audit runs) of node, or of every
// node when node is "", received from since on, in buckets of step,
// oldest first; buckets without runs are left out. It reads the
// received index (or the node's), so that its work follows the runs in
// the range, not the history kept.
func (s *Store) ReportCounts(ctx context.Context, node string, since time.Time, step time.Duration) ([]ReportBucket, error) {
	if step <= 0 {
		return nil, fmt.Errorf("counting reports: step %s is not positive", step)
	}
	q := `SELECT (received - ?) / ?, COUNT(*), SUM(CASE WHEN failed > 0 THEN 1 ELSE 0 END) FROM reports WHERE received >= ? AND audit = 0`
	args := []any{ns(since), int64(step), ns(since)}
	if node != "" {
		q += ` AND node = ?`
		args = append(args, node)
	}
	rows, err := s.rdb.QueryContext(ctx, q+` GROUP BY 1 ORDER BY 1`, args...)
	if err != nil {
		return nil, fmt.Errorf("counting reports: %w", err)
	}
	defer rows.Close()
	var out []ReportBucket
	for rows.Next() {
		var i int64
		var b ReportBucket
		if err := rows.Scan(&i, &b.Runs, &b.Failed); err != nil {
			return nil, fmt.Errorf("counting reports: %w", err)
		}
		b.Start = since.Add(time.Duration(i) * step)
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("counting reports: %w", err)
	}
	return out, nil
}

// ReportByRun is the stored report of node's run runID, with its events;
// false when there is none.
func (s *Store) ReportByRun(ctx context.Context, node, runID string) (Report, bool, error) {
	var id int64
	err := s.rdb.QueryRowContext(ctx, `SELECT id FROM reports WHERE node = ? AND run_id = ?`, node, runID).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return Report{}, false, nil
	}
	if err != nil {
		return Report{}, false, fmt.Errorf("reading run %s of %s: %w", runID, node, err)
	}
	// The page of one report just before id+1 is the report itself.
	rs, _, err := s.ReportsPage(ctx, ReportQuery{Node: node, Before: id + 1, Limit: 1})
	if err != nil {
		return Report{}, false, fmt.Errorf("reading run %s of %s: %w", runID, node, err)
	}
	if len(rs) == 0 || rs[0].RunID != runID {
		// Pruned between the two reads.
		return Report{}, false, nil
	}
	return rs[0], true, nil
}
