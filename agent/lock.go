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
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("taking the run lock: %w", err)
	}
	if err := flockWait(ctx, f, path, wait); err != nil {
		return nil, err
	}
	// The pid is only for the message another run prints; the lock itself
	// is the flock.
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(fmt.Sprintf("%d %s\n", os.Getpid(), time.Now().UTC().Format(time.RFC3339))), 0)
	return &Lock{f: f}, nil
}

// acquireNoopLock takes the run lock for a noop run, which writes nothing:
// the lock file is opened read-only and only if a run made it before (a
// host no run has touched has no run to wait for), and no pid is written.
// It returns a nil *Lock, which Release accepts, when there is no file.
func acquireNoopLock(ctx context.Context, dir string, wait time.Duration) (*Lock, error) {
	path := filepath.Join(dir, "run.lock")
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("taking the run lock: %w", err)
	}
	if err := flockWait(ctx, f, path, wait); err != nil {
		return nil, err
	}
	return &Lock{f: f}, nil
}

// flockWait takes an exclusive flock on f, retrying until wait has passed
// or ctx ends; on failure it closes f.
func flockWait(ctx context.Context, f *os.File, path string, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return fmt.Errorf("taking the run lock %s: %w", path, err)
		}
		if time.Now().After(deadline) {
			holder := readHolder(path)
			f.Close()
			return fmt.Errorf("%w (%s): %s", ErrLocked, path, holder)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return fmt.Errorf("waiting for the run lock: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
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
