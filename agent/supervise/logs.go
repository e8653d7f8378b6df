package supervise

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
)

// Logs. A service writes its stdout and stderr straight into its own files,
// LogDir/NAME.stdout.log and LogDir/NAME.stderr.log, opened with O_APPEND
// and handed to the process as fds 1 and 2. Nothing passes through the
// agent, so a service outlives an agent restart without losing its output
// or blocking on a full pipe.
//
// The cost is rotation: the supervisor cannot swap the file under a process
// that holds it, so it copies then truncates (logrotate's copytruncate). When
// a file passes LogMaxBytes it shifts NAME.stdout.log.1… up by one, dropping
// what passes LogKeep, copies the live file to .1 and truncates the live file
// to zero; thanks to O_APPEND the service's next write lands at the new end
// instead of leaving a hole. Output written between the last copy and the
// truncation is lost (the copy is repeated until it catches up, so the
// window is a few microseconds), and a rotated file may end in the middle of
// a line. While no agent runs nothing rotates and the live file grows.

// logPaths returns where service name writes its stdout and stderr.
func logPaths(dir, name string) (stdout, stderr string) {
	return filepath.Join(dir, name+".stdout.log"), filepath.Join(dir, name+".stderr.log")
}

// openLog opens a log file for a process to append to.
func openLog(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("opening log: %w", err)
	}
	return f, nil
}

// rotate rotates the log file at path when it holds maxBytes or more,
// keeping keep old files (none when keep < 1). It reports whether it did.
func rotate(path string, maxBytes int64, keep int) (bool, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("rotating log: %w", err)
	}
	if fi.Size() < maxBytes {
		return false, nil
	}
	live, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return false, fmt.Errorf("rotating log: %w", err)
	}
	defer live.Close()
	if keep < 1 {
		return true, truncate(live)
	}
	old := func(i int) string { return path + "." + strconv.Itoa(i) }
	if err := os.Remove(old(keep)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("rotating log: %w", err)
	}
	for i := keep - 1; i >= 1; i-- {
		if err := os.Rename(old(i), old(i+1)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return false, fmt.Errorf("rotating log: %w", err)
		}
	}
	tmp, err := os.OpenFile(old(1)+".tmp", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, fi.Mode().Perm())
	if err != nil {
		return false, fmt.Errorf("rotating log: %w", err)
	}
	defer tmp.Close()
	// Copy until the copy has caught up with the writer (a few rounds at
	// most), so that truncating loses as little as possible.
	for range 4 {
		if _, err := io.Copy(tmp, live); err != nil {
			return false, fmt.Errorf("rotating log: copying: %w", err)
		}
		off, _ := live.Seek(0, io.SeekCurrent)
		if st, err := live.Stat(); err == nil && st.Size() <= off {
			break
		}
	}
	if err := truncate(live); err != nil {
		return false, err
	}
	if err := tmp.Close(); err != nil {
		return false, fmt.Errorf("rotating log: %w", err)
	}
	if err := os.Rename(old(1)+".tmp", old(1)); err != nil {
		return false, fmt.Errorf("rotating log: %w", err)
	}
	return true, nil
}

func truncate(f *os.File) error {
	if err := f.Truncate(0); err != nil {
		return fmt.Errorf("rotating log: truncating: %w", err)
	}
	return nil
}
