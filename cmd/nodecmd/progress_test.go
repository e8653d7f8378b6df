package nodecmd

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// TestProgress: a count shows only after a second of work, at most every
// 100ms, is erased when the work is done, keeps out of log lines written
// through it, and is never written off a terminal.
func TestProgress(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	now := start
	clock := func() time.Time { return now }
	var b bytes.Buffer
	p := newProgress(&b, true, clock)

	type step struct {
		at         time.Duration
		done       int
		log        string
		wantOutput string // what this step adds
	}
	steps := []step{
		{at: 0, done: 0},
		{at: 500 * time.Millisecond, done: 10}, // under a second: nothing
		{at: 1100 * time.Millisecond, done: 20, wantOutput: "\rcompiling: 20/100 nodes\x1b[K"}, // shown
		{at: 1150 * time.Millisecond, done: 21},                                                // too soon to redraw
		{at: 1250 * time.Millisecond, done: 30, wantOutput: "\rcompiling: 30/100 nodes\x1b[K"}, // redrawn
		{at: 1260 * time.Millisecond, log: "level=INFO msg=x\n", wantOutput: "\r\x1b[Klevel=INFO msg=x\n\rcompiling: 30/100 nodes\x1b[K"},
		{at: 1400 * time.Millisecond, done: 100, wantOutput: "\r\x1b[K"}, // done: erased
		{at: 1500 * time.Millisecond, log: "after\n", wantOutput: "after\n"},
	}
	for i, s := range steps {
		now = start.Add(s.at)
		before := b.Len()
		if s.log != "" {
			p.Write([]byte(s.log))
		} else {
			p.Count("compiling", "nodes", s.done, 100)
		}
		if got := b.String()[before:]; got != s.wantOutput {
			t.Errorf("step %d (%v): wrote %q, want %q", i, s.at, got, s.wantOutput)
		}
	}

	p.Status("waiting for \x1b[2Jherd ca sign")
	if got := b.String(); !strings.HasSuffix(got, "\r\"waiting for \\x1b[2Jherd ca sign\"\x1b[K") {
		t.Errorf("Status wrote %q: want the line cleaned of control characters", got)
	}

	var off bytes.Buffer
	q := newProgress(&off, false, clock)
	now = start
	q.Count("compiling", "nodes", 0, 100)
	now = start.Add(5 * time.Second)
	q.Count("compiling", "nodes", 50, 100)
	q.Status("waiting")
	q.Write([]byte("log line\n"))
	q.Clear()
	if off.String() != "log line\n" {
		t.Errorf("off a terminal Progress wrote %q, want only the log line", off.String())
	}
}
