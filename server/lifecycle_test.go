package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herdcm/herd/testkit"
)

func testOptions(t *testing.T, site, dir string) Options {
	t.Helper()
	return Options{
		Site: site, Dir: dir, Listen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0", Debounce: 50 * time.Millisecond,
		Log: slog.New(slog.NewTextHandler(testLog{t}, nil)),
	}
}

// TestRefusesAnEmptiedStore: a truncated herd.db beside an existing CA
// is refused, unless AcceptEmptyStore says to begin again.
func TestRefusesAnEmptiedStore(t *testing.T) {
	t.Parallel()
	site, dir := t.TempDir(), t.TempDir()
	writeFiles(t, site, testSite)
	ctx := context.Background()
	s, err := New(ctx, testOptions(t, site, dir))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// A restart on the same store is fine.
	s, err = New(ctx, testOptions(t, site, dir))
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	s.Close()
	if err := os.Truncate(filepath.Join(dir, "herd.db"), 0); err != nil {
		t.Fatal(err)
	}
	if s, err := New(ctx, testOptions(t, site, dir)); err == nil {
		s.Close()
		t.Fatal("New on an emptied store with an existing CA = nil error, want a refusal")
	} else if !strings.Contains(err.Error(), "empty") {
		t.Errorf("New on an emptied store = %v, want it to say the store is empty", err)
	}
	opts := testOptions(t, site, dir)
	opts.AcceptEmptyStore = true
	s, err = New(ctx, opts)
	if err != nil {
		t.Fatalf("New with AcceptEmptyStore = %v", err)
	}
	s.Close()
}

// TestErrReportsAFailedListener: when the gRPC listener dies the server
// says so on Err, and Close returns the error.
func TestErrReportsAFailedListener(t *testing.T) {
	t.Parallel()
	site := t.TempDir()
	writeFiles(t, site, testSite)
	s, err := New(context.Background(), testOptions(t, site, t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	s.lis.Close()
	select {
	case err, ok := <-s.Err():
		if !ok || err == nil {
			t.Fatalf("Err() = %v, %v; want the listener's error", err, ok)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Err() said nothing after the listener failed")
	}
	if err := s.Close(); err == nil {
		t.Error("Close() after a failed listener = nil, want its error")
	}
}

// TestErrClosesOnCleanStop: a stop asked for is no error.
func TestErrClosesOnCleanStop(t *testing.T) {
	t.Parallel()
	s, _ := startServer(t)
	if err := s.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	if err, ok := <-s.Err(); ok {
		t.Errorf("Err() after Close = %v, want closed", err)
	}
}

// TestHealthzFailsWhileTheStoreCannotWrite fills the disk under the
// server's store: /healthz fails, and recovers when there is room.
func TestHealthzFailsWhileTheStoreCannotWrite(t *testing.T) {
	testkit.NeedRoot(t, "mounts a small tmpfs to fill it")
	testkit.NeedTools(t, "mount", "umount")
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	site := t.TempDir()
	writeFiles(t, site, testSite)
	s, err := New(context.Background(), testOptions(t, site, dir))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	awaitHealth := func(want int) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			resp, err := http.Get("http://" + s.HTTPAddr + "/healthz")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("/healthz = %d %s, want %d", resp.StatusCode, body, want)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	awaitHealth(http.StatusOK)
	filler := filepath.Join(dir, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	for _, n := range []int{64 << 10, 4096, 512, 1} {
		for {
			if _, err := f.Write(buf[:n]); err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatal(fmt.Errorf("filling the disk: %w", err))
				}
				break
			}
		}
	}
	f.Close()
	awaitHealth(http.StatusServiceUnavailable)
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	awaitHealth(http.StatusOK)
}
