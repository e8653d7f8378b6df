package store

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestEventSource: an event's source is stored with its report and read
// back, cut to MaxEventText like the event's other text; an event with no
// source (as every event stored before migration 13) reads back with none,
// and its changes column is as it came, an object included.
func TestEventSource(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		s := openAt(t, testLoc(t), Options{})
		long := strings.Repeat("roles/x.toml:1 via ", MaxEventText/10) + "roles/web.toml:12"
		events := []Event{
			{ID: "file:/a", Type: "file", Status: "changed", Source: "roles/web.toml:3", ChangesJSON: []byte(`[{"attr":"content"}]`)},
			{ID: "exec:boom", Type: "exec", Status: "failed", Source: "roles/web.toml:9", Error: "exited 3"},
			{ID: "file:/old", Type: "file", Status: "changed", ChangesJSON: []byte(`[{"attr":"mode"}]`)},
			{ID: "file:/obj", Type: "file", Status: "changed", ChangesJSON: []byte(`{"attr":"odd"}`)},
			{ID: "file:/long", Type: "file", Status: "failed", Source: long},
		}
		if _, err := s.SaveReport(ctx, "web-01", Report{RunID: "run-1", Started: at(1), Events: events}); err != nil {
			t.Fatal(err)
		}
		got, err := s.Reports(ctx, "web-01", 1)
		if err != nil || len(got) != 1 {
			t.Fatalf("Reports = %d reports, %v", len(got), err)
		}
		want := append([]Event(nil), events...)
		want[4].Source = tail(long)
		if d := cmp.Diff(want, got[0].Events); d != "" {
			t.Errorf("events read back (-want +got):\n%s", d)
		}
		if !strings.HasSuffix(got[0].Events[4].Source, "roles/web.toml:12") || len(got[0].Events[4].Source) > MaxEventText+40 {
			t.Errorf("a long source was kept as %d bytes", len(got[0].Events[4].Source))
		}
		var raw []byte
		if err := s.rdb.QueryRow(`SELECT event_data FROM reports WHERE run_id = 'run-1'`).Scan(&raw); err != nil {
			t.Fatal(err)
		}
		if stored, err := decodeEvents(raw); err != nil || len(stored) != len(events) || !bytes.Equal(stored[3].ChangesJSON, events[3].ChangesJSON) {
			t.Errorf("stored events = %v, %v; want file:/obj's changes %q as they came", stored, err, events[3].ChangesJSON)
		}
	})
}
