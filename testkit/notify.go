package testkit

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// NotifySocket is a stand-in for systemd's notify socket: a unixgram
// socket in a temporary directory that records every message a daemon
// sends it (sd_notify), with the time it arrived.
type NotifySocket struct {
	// Path is the socket's path, for NOTIFY_SOCKET.
	Path string
	msgs chan NotifyMessage
}

// NotifyMessage is one datagram: its KEY=VALUE lines and when it came.
type NotifyMessage struct {
	Lines []string
	At    time.Time
}

// Has says whether the message carries the line kv (e.g. "READY=1").
func (m NotifyMessage) Has(kv string) bool {
	for _, l := range m.Lines {
		if l == kv {
			return true
		}
	}
	return false
}

// Value returns the value of key in the message, and whether it is there.
func (m NotifyMessage) Value(key string) (string, bool) {
	for _, l := range m.Lines {
		if v, ok := strings.CutPrefix(l, key+"="); ok {
			return v, true
		}
	}
	return "", false
}

// NewNotifySocket listens on a fresh socket until the test ends.
func NewNotifySocket(tb testing.TB) *NotifySocket {
	tb.Helper()
	// A short directory: a unix socket's path is limited to 108 bytes.
	dir, err := makeShortTemp(tb)
	if err != nil {
		tb.Fatal(err)
	}
	path := filepath.Join(dir, "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		tb.Fatal(err)
	}
	ns := &NotifySocket{Path: path, msgs: make(chan NotifyMessage, 4096)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 64<<10)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			lines := strings.Split(strings.TrimRight(string(buf[:n]), "\n"), "\n")
			select {
			case ns.msgs <- NotifyMessage{Lines: lines, At: time.Now()}:
			default: // a test that stopped reading; drop
			}
		}
	}()
	tb.Cleanup(func() { c.Close(); <-done })
	return ns
}

// Next returns the next message, failing the test after timeout.
func (ns *NotifySocket) Next(tb testing.TB, timeout time.Duration) NotifyMessage {
	tb.Helper()
	select {
	case m := <-ns.msgs:
		return m
	case <-time.After(timeout):
		tb.Fatalf("no message on the notify socket within %s", timeout)
		return NotifyMessage{}
	}
}

// Await returns the first message carrying kv, skipping others (watchdog
// pings, status lines) but failing when one of them carries a line in
// notBefore: that state came out of order.
func (ns *NotifySocket) Await(tb testing.TB, timeout time.Duration, kv string, notBefore ...string) NotifyMessage {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			tb.Fatalf("no %s on the notify socket within %s", kv, timeout)
		}
		m := ns.Next(tb, left)
		if m.Has(kv) {
			return m
		}
		for _, bad := range notBefore {
			if m.Has(bad) {
				tb.Fatalf("the notify socket got %s before %s: %q", bad, kv, m.Lines)
			}
		}
	}
}

// makeShortTemp returns a temporary directory whose path leaves room for
// a socket's name (t.TempDir's carry the test's name and may not),
// removed when the test ends.
func makeShortTemp(tb testing.TB) (string, error) {
	tb.Helper()
	if dir := tb.TempDir(); len(dir) < 80 {
		return dir, nil
	}
	dir, err := os.MkdirTemp("", "herd-ns")
	if err != nil {
		return "", err
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	return dir, nil
}

// Messages is the channel of messages as they come, for a test that
// waits on it beside other things.
func (ns *NotifySocket) Messages() <-chan NotifyMessage { return ns.msgs }
