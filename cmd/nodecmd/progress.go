package nodecmd

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// Progress shows how far long work has come on a terminal: one status
// line at the bottom of stderr, rewritten in place. Work done within a
// second shows nothing, and off a terminal (a pipe, a log file, --json
// into jq) Progress writes nothing of its own at all. It is also the
// io.Writer the command's log goes through: a log line clears the status
// line, is written whole, and the status line comes back under it, so
// that the two never mix on one line.
type Progress struct {
	mu    sync.Mutex
	w     io.Writer
	on    bool
	now   func() time.Time
	label string    // the work Count shows
	began time.Time // when that work began
	drawn time.Time // when the line was last drawn
	line  string    // the status line on the screen; "" when none
}

// progressEvery is how often a count is redrawn at most, and
// progressAfter how long work runs before it shows.
const (
	progressEvery = 100 * time.Millisecond
	progressAfter = time.Second
)

// NewProgress returns a Progress on w, shown only when w is a terminal.
func NewProgress(w io.Writer) *Progress {
	return newProgress(w, isTerminalFile(w), time.Now)
}

func newProgress(w io.Writer, on bool, now func() time.Time) *Progress {
	return &Progress{w: w, on: on, now: now}
}

// On reports whether the progress is shown (w is a terminal).
func (p *Progress) On() bool { return p != nil && p.on }

// Count shows that done of total parts of the work called label are
// done ("compiling the fleet: 1200/5000 nodes" is Count("compiling the
// fleet", "nodes", 1200, 5000)). Work that ends within a second shows
// nothing; the line goes when done reaches total.
func (p *Progress) Count(label, unit string, done, total int) {
	if !p.On() {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	if label != p.label {
		p.label, p.began = label, now
	}
	if done >= total {
		p.clear()
		p.label = ""
		return
	}
	if now.Sub(p.began) < progressAfter || (p.line != "" && now.Sub(p.drawn) < progressEvery) {
		return
	}
	p.draw(fmt.Sprintf("%s: %d/%d %s", label, done, total, unit), now)
}

// Status shows line as the status line until Clear.
func (p *Progress) Status(line string) {
	if !p.On() {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.draw(line, p.now())
}

// Clear takes the status line away.
func (p *Progress) Clear() {
	if !p.On() {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clear()
	p.label = ""
}

// Write writes b (log lines) above the status line.
func (p *Progress) Write(b []byte) (int, error) {
	if !p.On() {
		return p.w.Write(b)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	line := p.line
	p.clear()
	n, err := p.w.Write(b)
	if line != "" {
		p.draw(line, p.drawn)
	}
	return n, err
}

// draw puts line on the screen: back to the line's start, the line, the
// rest of the old one erased.
func (p *Progress) draw(line string, at time.Time) {
	fmt.Fprintf(p.w, "\r%s\x1b[K", Clean(line))
	p.line, p.drawn = line, at
}

func (p *Progress) clear() {
	if p.line != "" {
		io.WriteString(p.w, "\r\x1b[K")
		p.line = ""
	}
}
