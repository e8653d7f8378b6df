package agent

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestLockExcludesAndReleases(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx := context.Background()
	l1, err := AcquireLock(ctx, dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = AcquireLock(ctx, dir, 0)
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "pid ") {
		t.Fatalf("second AcquireLock = %v, want ErrLocked naming the holder's pid", err)
	}
	// A waiting run gets the lock once the first releases it.
	got := make(chan error, 1)
	go func() {
		l2, err := AcquireLock(ctx, dir, 10*time.Second)
		if err == nil {
			l2.Release()
		}
		got <- err
	}()
	time.Sleep(50 * time.Millisecond)
	l1.Release()
	if err := <-got; err != nil {
		t.Fatalf("waiting AcquireLock = %v", err)
	}
}

// TestLockFreedWhenHolderDies holds the lock in another process, kills it,
// and takes the lock at once: no stale lock survives its holder.
func TestLockFreedWhenHolderDies(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if _, err := exec.LookPath("flock"); err != nil {
		t.Skip("flock(1) from util-linux is not installed")
	}
	// -o: the lock stays with flock itself, not with the sleep it runs, so
	// that killing flock is the holder dying.
	cmd := exec.Command("flock", "-o", dir+"/run.lock", "sleep", "60")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		l, err := AcquireLock(context.Background(), dir, 0)
		if err != nil {
			break // held by the child now
		}
		l.Release()
		if time.Now().After(deadline) {
			t.Fatal("the child never took the lock")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cmd.Process.Signal(os.Kill)
	cmd.Wait()
	defer syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // the orphaned sleep
	// flock(1) forks its command before the child closes its copy of the
	// descriptor, so the lock can outlive the parent for an instant; it
	// must not outlive it for long.
	l, err := AcquireLock(context.Background(), dir, 5*time.Second)
	if err != nil {
		t.Fatalf("after the holder died: %v", err)
	}
	l.Release()
}
