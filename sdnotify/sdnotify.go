package sdnotify

import (
	"context"
	"fmt"
	"math"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// The environment systemd sets for a Type=notify service.
const (
	EnvSocket      = "NOTIFY_SOCKET"
	EnvWatchdogUS  = "WATCHDOG_USEC"
	EnvWatchdogPID = "WATCHDOG_PID"
)

// Notifier sends state changes to the service manager's socket. A nil
// *Notifier is valid and sends nothing: code calls it the same way under
// systemd, in a terminal and in tests.
type Notifier struct {
	addr     *net.UnixAddr
	watchdog time.Duration
	// env is what FromEnv took out of the environment, for Env.
	env []string
}

// New returns a notifier for the socket at path ("@name" for an abstract
// socket) that expects a watchdog ping at least every watchdog (0: none).
func New(path string, watchdog time.Duration) (*Notifier, error) {
	if path == "" {
		return nil, nil
	}
	if path[0] != '/' && path[0] != '@' {
		// vsock: addresses and relative paths are not ours to guess.
		return nil, fmt.Errorf("%s=%q: want an absolute path or an abstract @name", EnvSocket, path)
	}
	name := path
	if name[0] == '@' {
		name = "\x00" + name[1:]
	}
	return &Notifier{addr: &net.UnixAddr{Name: name, Net: "unixgram"}, watchdog: watchdog}, nil
}

// FromEnv returns the notifier the service manager set up for this
// process, or nil when there is none. It removes the variables from the
// environment, so that the services and commands the daemon starts do not
// take its socket for theirs (sd_notify's unset_environment); Env gives
// them back for a re-exec of the daemon itself.
func FromEnv() (*Notifier, error) {
	path := os.Getenv(EnvSocket)
	usec, pid := os.Getenv(EnvWatchdogUS), os.Getenv(EnvWatchdogPID)
	var env []string
	for _, k := range []string{EnvSocket, EnvWatchdogUS, EnvWatchdogPID} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
			os.Unsetenv(k)
		}
	}
	if path == "" {
		return nil, nil
	}
	wd, err := watchdogFromEnv(usec, pid, os.Getpid())
	if err != nil {
		return nil, err
	}
	n, err := New(path, wd)
	if err != nil {
		return nil, err
	}
	n.env = env
	return n, nil
}

// watchdogFromEnv is the watchdog interval WATCHDOG_USEC asks of process
// pid; 0 when none is asked, or when WATCHDOG_PID names another process.
func watchdogFromEnv(usec, pid string, self int) (time.Duration, error) {
	if usec == "" {
		return 0, nil
	}
	if pid != "" {
		p, err := strconv.Atoi(pid)
		if err != nil {
			return 0, fmt.Errorf("%s=%q: %w", EnvWatchdogPID, pid, err)
		}
		if p != self {
			return 0, nil
		}
	}
	us, err := strconv.ParseUint(usec, 10, 63)
	if err != nil || us == 0 || us > uint64(math.MaxInt64/time.Microsecond) {
		return 0, fmt.Errorf("%s=%q: want a positive number of microseconds", EnvWatchdogUS, usec)
	}
	return time.Duration(us) * time.Microsecond, nil
}

// Env returns the variables FromEnv took, as KEY=VALUE, with
// WATCHDOG_PID left out: a re-exec keeps the pid, and a forked child is
// told its own.
func (n *Notifier) Env() []string {
	if n == nil {
		return nil
	}
	var out []string
	for _, kv := range n.env {
		if !strings.HasPrefix(kv, EnvWatchdogPID+"=") {
			out = append(out, kv)
		}
	}
	return out
}

// WatchdogInterval is how often the manager wants a sign of life; 0 when
// it wants none.
func (n *Notifier) WatchdogInterval() time.Duration {
	if n == nil {
		return 0
	}
	return n.watchdog
}

// Send sends one message of KEY=VALUE lines.
func (n *Notifier) Send(lines ...string) error {
	if n == nil {
		return nil
	}
	c, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("notifying the service manager: %w", err)
	}
	defer c.Close()
	c.SetWriteDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte(strings.Join(lines, "\n") + "\n")); err != nil {
		return fmt.Errorf("notifying the service manager: %w", err)
	}
	return nil
}

// Ready says start-up is complete (READY=1), with a status line.
func (n *Notifier) Ready(status string) error {
	return n.Send("READY=1", "STATUS="+oneLine(status))
}

// Reloading says the daemon reloads its configuration; Ready follows when
// it is done. MONOTONIC_USEC lets the manager order the two (systemd's
// Type=notify-reload requires it).
func (n *Notifier) Reloading(status string) error {
	return n.Send("RELOADING=1", "MONOTONIC_USEC="+strconv.FormatInt(monotonicUsec(), 10), "STATUS="+oneLine(status))
}

// Stopping says the daemon is shutting down.
func (n *Notifier) Stopping(status string) error {
	return n.Send("STOPPING=1", "STATUS="+oneLine(status))
}

// Status updates the status line `systemctl status` shows.
func (n *Notifier) Status(status string) error { return n.Send("STATUS=" + oneLine(status)) }

// ping is one watchdog keep-alive.
func (n *Notifier) ping() error { return n.Send("WATCHDOG=1") }

func oneLine(s string) string { return strings.ReplaceAll(s, "\n", " ") }

func monotonicUsec() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return ts.Nano() / 1000
}

// Watchdog pings the manager at half its interval, but only while the
// daemon's main loop keeps its promise: the loop calls Alive with how long
// it may go before it calls again (a tick when idle, a run's timeout before
// a run), and past that the pings stop, so that a loop that hangs is
// killed and restarted by the manager rather than kept alive by this
// goroutine.
type Watchdog struct {
	n     *Notifier
	every time.Duration

	mu    sync.Mutex
	until time.Time
}

// Watchdog returns the daemon's watchdog, or nil when the manager asked
// for none (a nil *Watchdog's methods do nothing).
func (n *Notifier) Watchdog() *Watchdog {
	if n.WatchdogInterval() <= 0 {
		return nil
	}
	return &Watchdog{n: n, every: n.watchdog / 2}
}

// Every is how often the main loop should say it is alive when idle (half
// the manager's interval); 0 for a nil watchdog.
func (w *Watchdog) Every() time.Duration {
	if w == nil {
		return 0
	}
	return w.every
}

// Alive is the main loop's promise that it will call again within d.
func (w *Watchdog) Alive(d time.Duration) {
	if w == nil {
		return
	}
	w.mu.Lock()
	w.until = time.Now().Add(d)
	w.mu.Unlock()
}

// kept says whether the main loop's last promise still holds.
func (w *Watchdog) kept(now time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return now.Before(w.until)
}

// Run pings every half interval while the promise holds, until ctx ends.
// A failed ping is not fatal: the manager decides what a missing one
// means.
func (w *Watchdog) Run(ctx context.Context) {
	if w == nil {
		return
	}
	t := time.NewTicker(w.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if w.kept(now) {
				w.n.ping()
			}
		}
	}
}
