package sdnotify

import (
	"strconv"
	"testing"
	"time"
)

// FuzzFromEnv: whatever the environment holds, the notifier's parsing of
// it never panics, and a watchdog it accepts is positive and is the
// microseconds given.
func FuzzFromEnv(f *testing.F) {
	for _, s := range []struct{ sock, usec, pid string }{
		{"/run/systemd/notify", "30000000", ""},
		{"@/org/freedesktop/systemd1/notify/123", "1", "42"},
		{"relative", "-5", "x"},
		{"", "0", "1"},
		{"vsock:2:1", "18446744073709551615", ""},
		{"/n", "9223372036854775807", "42"},
	} {
		f.Add(s.sock, s.usec, s.pid)
	}
	f.Fuzz(func(t *testing.T, sock, usec, pid string) {
		if n, err := New(sock, 0); err == nil && n != nil && n.addr == nil {
			t.Fatalf("New(%q) gave a notifier without an address", sock)
		}
		wd, err := watchdogFromEnv(usec, pid, 42)
		if err != nil {
			return
		}
		if wd < 0 {
			t.Fatalf("watchdogFromEnv(%q, %q) = %s, negative", usec, pid, wd)
		}
		if wd > 0 {
			us, perr := strconv.ParseUint(usec, 10, 63)
			if perr != nil || time.Duration(us)*time.Microsecond != wd {
				t.Fatalf("watchdogFromEnv(%q) = %s, not the microseconds given", usec, wd)
			}
		}
	})
}
