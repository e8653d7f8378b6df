package store

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

// TestEventSource: an event's source is stored with its report and read
// back, cut to MaxEventText like the event's other text; an event with no
// source (as every event stored before sources) keeps its changes column
// exactly as it came, and changes that are an object survive too.
func TestEventSource(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openTest(t)
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
		t.Errorf("a long source was kept as %d bytes ending %q", len(got[0].Events[4].Source), got[0].Events[4].Source[max(0, len(got[0].Events[4].Source)-30):])
	}
	// What an older herd wrote (and reads) is unchanged for an event with
	// no source.
	var raw []byte
	if err := s.rdb.QueryRow(`SELECT changes FROM events WHERE resource = 'file:/old'`).Scan(&raw); err != nil || !bytes.Equal(raw, events[2].ChangesJSON) {
		t.Errorf("changes column of an event with no source = %q, %v; want %q as it came", raw, err, events[2].ChangesJSON)
	}
}

// TestPackChangesRefused: changes that are not JSON cannot be packed
// with a source, and a packed column that does not decode is an error,
// not a silent loss.
func TestPackChangesRefused(t *testing.T) {
	t.Parallel()
	if _, err := packChanges([]byte("[not json"), "roles/a.toml:1"); err == nil {
		t.Error("packChanges of broken JSON with a source succeeded")
	}
	if _, _, err := unpackChanges([]byte(`{"source": 3}`)); err == nil {
		t.Error("unpackChanges of a packed column with a numeric source succeeded")
	}
}

// FuzzPackChanges: whatever changes and source go in, what is read back
// is what went in (or packing refuses it).
func FuzzPackChanges(f *testing.F) {
	f.Add([]byte(`[{"attr":"content","from":"a","to":"b"}]`), "roles/web.toml:12")
	f.Add([]byte(`[]`), "")
	f.Add([]byte(nil), "roles/web.toml:3 via roles/base.toml:40")
	f.Add([]byte(` {"attr":"x"}`), "")
	f.Add([]byte(`{"source":"forged","changes":[]}`), "")
	f.Add([]byte(`"text"`), "\x00\"}")
	f.Fuzz(func(t *testing.T, changes []byte, source string) {
		if !utf8.ValidString(source) {
			return // protobuf refuses invalid UTF-8 in strings on the wire
		}
		packed, err := packChanges(changes, source)
		if err != nil {
			return
		}
		gotChanges, gotSource, err := unpackChanges(packed)
		if err != nil {
			t.Fatalf("unpackChanges(packChanges(%q, %q) = %q): %v", changes, source, packed, err)
		}
		if gotSource != source {
			t.Fatalf("source %q read back as %q", source, gotSource)
		}
		if len(bytes.TrimSpace(changes)) == 0 && len(gotChanges) == 0 {
			return
		}
		if source == "" && !isObject(changes) {
			if !bytes.Equal(changes, gotChanges) {
				t.Fatalf("changes %q with no source stored as %q", changes, gotChanges)
			}
			return
		}
		// Packing compacts the changes as encoding/json does.
		var compact, want bytes.Buffer
		if err := json.Compact(&compact, changes); err != nil {
			t.Fatalf("packChanges took changes that are not JSON: %q", changes)
		}
		json.HTMLEscape(&want, compact.Bytes())
		if !bytes.Equal(want.Bytes(), gotChanges) {
			t.Fatalf("changes %q read back as %q", changes, gotChanges)
		}
	})
}
