package server

import (
	"testing"
	"unicode/utf8"

	"github.com/herdcm/herd/api/herdv1"
)

// FuzzCheckFacts feeds the facts of a check-in, a network entry point, as
// a node could send them: whatever the bytes, checkFacts answers with
// facts or an error, never a panic, and accepted facts respect the limits.
func FuzzCheckFacts(f *testing.F) {
	f.Add([]byte(`{"os":{"family":"debian"},"processors":{"count":4}}`), "")
	f.Add([]byte(`[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]`), "")
	f.Add([]byte(`{"a":1e400,"b":"\u0000"}`), "sha256:00")
	s := &Server{opts: Options{}}
	s.opts.defaults()
	s.opts.MaxFactsBytes = 1 << 16
	f.Fuzz(func(t *testing.T, b []byte, digest string) {
		fs, d, err := s.checkFacts(&herdv1.CheckinRequest{FactsJson: b, FactsDigest: digest})
		if err != nil {
			return
		}
		if len(b) > s.opts.MaxFactsBytes || jsonDepth(b) > s.opts.MaxFactsDepth {
			t.Fatalf("accepted %d bytes nesting %d past the limits", len(b), jsonDepth(b))
		}
		if fs == nil || len(d) != len("sha256:")+64 {
			t.Fatalf("accepted facts %v with digest %q", fs, d)
		}
	})
}

// FuzzStoreReport converts arbitrary wire reports into the store's shape.
func FuzzStoreReport(f *testing.F) {
	f.Add("run-1", "file:/etc/motd", "changed", "content", "a", "b", int64(5), "roles/web.toml:12")
	f.Add("run-2", "exec:boom", "failed", "", "", "", int64(0), "")
	f.Add("run-3", "file:/x", "changed", "mode", "", "0644", int64(1), "roles/a.toml:1 via roles/b.toml:40\x1b[2J")
	f.Fuzz(func(t *testing.T, runID, id, st, attr, from, to string, dur int64, source string) {
		for _, s := range []string{runID, id, st, attr, from, to, source} {
			if !utf8.ValidString(s) {
				return // protobuf refuses invalid UTF-8 in strings on the wire
			}
		}
		r := &herdv1.Report{RunId: runID, DurationNs: dur, Summary: &herdv1.Summary{Resources: 1},
			Events: []*herdv1.Event{{Id: id, Status: st, Source: source, Changes: []*herdv1.Change{{Attr: attr, From: from, To: to}}}}}
		rec, err := storeReport("n", r)
		if err != nil {
			return
		}
		if rec.RunID != runID || len(rec.Events) != 1 || len(rec.Events[0].ChangesJSON) == 0 {
			t.Fatalf("storeReport lost data: %+v", rec)
		}
		back := wireReport(rec)
		if back.Events[0].Source != source {
			t.Fatalf("source did not survive the store's shape: %q != %q", back.Events[0].Source, source)
		}
		if back.Events[0].Changes[0].To != to {
			t.Fatalf("change did not survive the store's shape: %q != %q", back.Events[0].Changes[0].To, to)
		}
	})
}
