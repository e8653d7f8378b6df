package store

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestEventDataRoundTrip: every field of an event comes back as it went,
// nil changes apart from empty ones, and no events are no bytes.
func TestEventDataRoundTrip(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		events []Event
	}{
		{name: "none"},
		{name: "one of everything", events: []Event{{
			ID: "file:/etc/motd", Type: "file", Status: "changed", Noop: true, ChangesJSON: []byte(`[{"attr":"content"}]`),
			Refresh: "refreshed", Error: "e", Cause: "c", Output: "o\x00\xff", Duration: 3 * time.Second, Source: "roles/web.toml:3",
		}}},
		{name: "empty and nil changes", events: []Event{
			{ID: "a", ChangesJSON: []byte{}},
			{ID: "b"},
			{ID: "c", Duration: -1},
		}},
		{name: "long text", events: []Event{{ID: "exec:x", Output: strings.Repeat("é", MaxEventText), Error: strings.Repeat("x", 300)}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := encodeEvents(tt.events)
			if len(tt.events) == 0 && b != nil {
				t.Fatalf("encodeEvents(none) = %q, want nil (a NULL column)", b)
			}
			got, err := decodeEvents(b)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tt.events, got); d != "" {
				t.Errorf("round trip (-want +got):\n%s", d)
			}
			if len(tt.events) > 0 && (got[0].ChangesJSON == nil) != (tt.events[0].ChangesJSON == nil) {
				t.Errorf("changes %#v came back as %#v", tt.events[0].ChangesJSON, got[0].ChangesJSON)
			}
		})
	}
}

// TestEventDataDamaged: bytes that are not this encoding are an error
// that says so, never a panic nor a count's worth of allocation.
func TestEventDataDamaged(t *testing.T) {
	t.Parallel()
	good := encodeEvents([]Event{{ID: "file:/a", Status: "changed", Output: "out"}, {ID: "file:/b"}})
	tests := map[string][]byte{
		"another version": append([]byte{2}, good[1:]...),
		"cut short":       good[:len(good)-3],
		"bytes after":     append(append([]byte(nil), good...), 0),
		"a huge count":    {eventDataVersion, 0xff, 0xff, 0xff, 0xff, 0x0f},
		"a bad count":     {eventDataVersion, 0xff},
		"a long string":   {eventDataVersion, 1, 0xff, 0xff, 0x03, 'a', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
	}
	for name, b := range tests {
		t.Run(name, func(t *testing.T) {
			if got, err := decodeEvents(b); !errors.Is(err, errEventData) {
				t.Errorf("decodeEvents(%q) = %v, %v; want an error", b, got, err)
			}
		})
	}
}

// FuzzDecodeEvents: what is encoded decodes to the same events; any bytes
// decode or fail without a panic, and what decodes encodes to bytes that
// decode to the same again.
func FuzzDecodeEvents(f *testing.F) {
	f.Add("file:/a", "changed", []byte(`[{"attr":"mode"}]`), "out", int64(5), true, encodeEvents([]Event{{ID: "x"}}))
	f.Add("", "", []byte(nil), "\x00\xff", int64(-1), false, []byte{eventDataVersion, 1})
	f.Fuzz(func(t *testing.T, id, status string, changes []byte, output string, d int64, noop bool, raw []byte) {
		events := []Event{{ID: id, Status: status, ChangesJSON: changes, Output: output, Duration: time.Duration(d), Noop: noop}, {Source: id}}
		got, err := decodeEvents(encodeEvents(events))
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(events, got); d != "" {
			t.Fatalf("round trip (-want +got):\n%s", d)
		}
		once, err := decodeEvents(raw)
		if err != nil {
			return
		}
		again, err := decodeEvents(encodeEvents(once))
		if err != nil || !cmp.Equal(once, again) {
			t.Fatalf("%q decoded to %v, which encoded decodes to %v, %v", raw, once, again, err)
		}
	})
}

// saveLegacyReport stores r as a store before migration 14 did: its
// events as rows of the events table and no event_data, so that tests
// hold the reading, purging and pruning of such reports.
func saveLegacyReport(t *testing.T, s *Store, node string, r Report) {
	t.Helper()
	ctx := context.Background()
	if _, err := s.SaveReport(ctx, node, r); err != nil {
		t.Fatal(err)
	}
	err := s.write(ctx, func(w *wtx) error {
		var id int64
		var data []byte
		if err := w.queryRow(`SELECT id, event_data FROM reports WHERE node = ? AND run_id = ?`, node, r.RunID).Scan(&id, &data); err != nil {
			return err
		}
		events, err := decodeEvents(data)
		if err != nil {
			return err
		}
		for i, e := range events {
			if _, err := w.exec(`INSERT INTO events (id, resource, type, status, noop, changes, refresh, error, cause, output, duration, source)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, id<<eventBits+int64(i), e.ID, e.Type, e.Status, e.Noop, e.ChangesJSON,
				e.Refresh, e.Error, e.Cause, e.Output, int64(e.Duration), e.Source); err != nil {
				return err
			}
		}
		_, err = w.exec(`UPDATE reports SET event_data = NULL WHERE id = ?`, id)
		return err
	})
	if err != nil {
		t.Fatalf("storing report %s as before migration 14: %v", r.RunID, err)
	}
}

// TestLegacyEventsRead: a report stored before migration 14 (its events
// in the events table) reads as one stored after it, in the history and
// in what the audits read.
func TestLegacyEventsRead(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		s := openTest(t)
		events := []Event{
			{ID: "file:/a", Type: "file", Status: "changed", ChangesJSON: []byte(`[{"attr":"mode"}]`), Source: "roles/r.toml:2"},
			{ID: "exec:b", Type: "exec", Status: "failed", Error: "exit 1", Duration: time.Second},
		}
		saveLegacyReport(t, s, "old", Report{RunID: "r1", Started: at(1), Received: at(1), Summary: Summary{Resources: 2, Changed: 1, Failed: 1}, Events: events})
		if _, err := s.SaveReport(ctx, "new", Report{RunID: "r1", Started: at(1), Received: at(1), Summary: Summary{Resources: 2, Changed: 1, Failed: 1}, Events: events}); err != nil {
			t.Fatal(err)
		}
		var rows int
		if err := s.rdb.QueryRow(`SELECT COUNT(*) FROM events`).Scan(&rows); err != nil || rows != 2 {
			t.Fatalf("events rows = %d, %v; want the legacy report's 2", rows, err)
		}
		for _, node := range []string{"old", "new"} {
			rs, err := s.Reports(ctx, node, 1)
			if err != nil || len(rs) != 1 {
				t.Fatalf("Reports(%s) = %d, %v", node, len(rs), err)
			}
			if d := cmp.Diff(events, rs[0].Events); d != "" {
				t.Errorf("Reports(%s) events (-want +got):\n%s", node, d)
			}
			last, _, err := s.AuditReports(ctx, node)
			if err != nil || last == nil {
				t.Fatalf("AuditReports(%s) = %v, %v", node, last, err)
			}
			if d := cmp.Diff(events, last.Events); d != "" {
				t.Errorf("AuditReports(%s) events (-want +got):\n%s", node, d)
			}
		}
	})
}
