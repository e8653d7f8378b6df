package store

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzTail: the store parses nothing it is sent (JSON is kept as it
// came), but it does cut event text: the cut keeps the end, stays near
// the cap, and never splits a character.
func FuzzTail(f *testing.F) {
	f.Add("short", 0)
	f.Add("é", MaxEventText)
	f.Add("日本", MaxEventText/3+1)
	f.Fuzz(func(t *testing.T, s string, repeat int) {
		if repeat < 0 || repeat > 3*MaxEventText {
			return
		}
		in := strings.Repeat("x", repeat) + s
		got := tail(in)
		if len(in) <= MaxEventText {
			if got != in {
				t.Fatalf("tail changed a short text")
			}
			return
		}
		_, kept, ok := strings.Cut(got, " bytes cut]\n")
		if !ok || !strings.HasSuffix(in, kept) || len(kept) > MaxEventText || len(kept) < MaxEventText-utf8.UTFMax {
			t.Fatalf("tail of %d bytes kept %d bytes: %q…", len(in), len(kept), got[:min(len(got), 40)])
		}
		if utf8.ValidString(in) && !utf8.ValidString(kept) {
			t.Fatalf("tail split a character")
		}
	})
}
