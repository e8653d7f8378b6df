package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Lock is the run lock: a kernel lock (flock) on a file in the state
// directory. The kernel drops it the moment its holder dies, so a crashed
// run never leaves a stale lock behind, unlike a pid file.
type Lock struct {
	f *os.File
}

// ErrLocked is returned by TryLock when another run holds the lock.
var ErrLocked = errors.New("another herd run holds the lock")

// AcquireLock takes the run lock in dir. With wait 0 it declines at once
// when another run holds it, with an error naming that run's pid; otherwise
// it retries until wait has passed or ctx ends.
func AcquireLock(ctx context.Context, dir string, wait time.Duration) (*Lock, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("taking the run lock: %w", err)
	}
	path := filepath.Join(dir, "run.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("taking the run lock: %w", err)
	}
	deadline := time.Now().Add(wait)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("taking the run lock %s: %w", path, err)
		}
		if time.Now().After(deadline) {
			holder := readHolder(path)
			f.Close()
			return nil, fmt.Errorf("%w (%s): %s", ErrLocked, path, holder)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waiting for the run lock: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
	// The pid is only for the message another run prints; the lock itself
	// is the flock.
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(fmt.Sprintf("%d %s\n", os.Getpid(), time.Now().UTC().Format(time.RFC3339))), 0)
	return &Lock{f: f}, nil
}

func readHolder(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "holder unknown"
	}
	fields := strings.Fields(string(b))
	if len(fields) < 2 {
		return "holder unknown"
	}
	if _, err := strconv.Atoi(fields[0]); err != nil {
		return "holder unknown"
	}
	return fmt.Sprintf("pid %s, since %s", fields[0], fields[1])
}

// Release drops the lock.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close() // closing the descriptor releases the flock
	l.f = nil
	return err
}
