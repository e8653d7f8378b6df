package supervise

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// ErrForked is the exit error of a main process that exited 0 at once and
// left other processes behind: a daemon that forked into the background.
// The supervisor would lose sight of it, so it is treated as a failure and
// its leftovers are killed.
var ErrForked = errors.New(`the program exited at once and left processes behind: it forks into the background; ` +
	`run it in the foreground (its --foreground, --nodaemon or "daemon off" option): ` +
	`the herd supervisor does not follow forking daemons (type = "forking"), use provider = "systemd" for those`)

// LogTailLines is how many lines of each log an ExitError quotes.
const LogTailLines = 10

// ExitError is returned by Ensure and Restart when the process they
// started exited before its start was confirmed (Options.Settle): the exit
// and the last lines of its logs say why.
type ExitError struct {
	Name    string
	Exit    ExitInfo
	LogTail string
}

func (e *ExitError) Error() string {
	msg := fmt.Sprintf("service %s %s right after it started", e.Name, e.Exit.String())
	if e.LogTail != "" {
		msg += "; its last output:\n" + e.LogTail
	}
	return msg
}

// Problem describes what is wrong with a service in st, for a run's
// report: a service that should run but is in backoff, in a crash loop or
// failed, with its last exit and the tail of its logs. It is "" for a
// running or stopped service.
func Problem(st Status) string {
	var what string
	switch st.State {
	case StateBackoff:
		what = fmt.Sprintf("is in backoff (restart %d, next try at %s)", st.Restarts, st.RetryAt.Format("15:04:05"))
	case StateCrashLoop:
		what = fmt.Sprintf("is in a crash loop (given up after %d restarts)", st.Restarts)
	case StateFailed:
		what = "failed"
	default:
		return ""
	}
	msg := "service " + st.Name + " " + what
	if st.LastExit != nil {
		msg += "; last exit: " + st.LastExit.String()
	}
	if tail := readLogTail(st.Stdout, st.Stderr); tail != "" {
		msg += "; its last output:\n" + tail
	}
	return msg
}

// logTail is the end of the service's logs.
func (l *loop) logTail() string {
	out, errp := logPaths(l.s.opts.LogDir, l.rec.Name)
	return readLogTail(out, errp)
}

// readLogTail returns the last LogTailLines lines of the stderr log and,
// when that is empty, of the stdout log.
func readLogTail(stdout, stderr string) string {
	for _, p := range []string{stderr, stdout} {
		if t := tailFile(p, LogTailLines); t != "" {
			return t
		}
	}
	return ""
}

// tailFile returns the last n lines of the file at path, reading at most
// its last 16 KiB; "" when it is missing or empty.
func tailFile(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	const most = 16 << 10
	fi, err := f.Stat()
	if err != nil {
		return ""
	}
	off := max(0, fi.Size()-most)
	b, err := io.ReadAll(io.NewSectionReader(f, off, fi.Size()-off))
	if err != nil {
		return ""
	}
	b = bytes.TrimRight(b, "\n")
	lines := strings.Split(string(b), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.TrimSpace(strings.Join(lines, "\n"))
}
