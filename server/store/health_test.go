package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/herdcm/herd/testkit"
)

// TestFilesAre0600 checks the database and its WAL files are 0600 when
// their directory already exists, and that an existing file is tightened.
func TestFilesAre0600(t *testing.T) {
	t.Parallel()
	for _, existing := range []bool{false, true} {
		t.Run(fmt.Sprintf("existing=%v", existing), func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "herd.db")
			if existing {
				if err := os.WriteFile(path, nil, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			s := openAt(t, path, Options{})
			if err := s.SaveFacts(context.Background(), "n", "sha256:x", []byte(`{}`), at(0)); err != nil {
				t.Fatal(err)
			}
			for _, p := range []string{path, path + "-wal", path + "-shm"} {
				fi, err := os.Stat(p)
				if err != nil {
					t.Fatal(err)
				}
				if got := fi.Mode().Perm(); got != 0o600 {
					t.Errorf("mode of %s = %o, want 600", filepath.Base(p), got)
				}
			}
		})
	}
}

func TestOpenRefusesASymlink(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	target := filepath.Join(dir, "elsewhere")
	if err := os.WriteFile(target, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "herd.db")
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
	if s, err := Open(path, Options{Logger: testLogger(t)}); err == nil {
		s.Close()
		t.Fatal("Open(a symlink) = nil error, want a refusal")
	}
}

// TestCreated checks Created tells a new or emptied file from a store
// that held a schema.
func TestCreated(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "herd.db")
	reopen := func() bool {
		t.Helper()
		s, err := Open(path, Options{Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		return s.Created()
	}
	if !reopen() {
		t.Error("Created() of a new file = false, want true")
	}
	if reopen() {
		t.Error("Created() of an existing store = true, want false")
	}
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	if !reopen() {
		t.Error("Created() of a truncated store = false, want true")
	}
}

// TestOpenRefusesADamagedFile garbles a page behind the header: without
// the quick_check at Open the store would open and fail on writes later.
func TestOpenRefusesADamagedFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "herd.db")
	s, err := Open(path, Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := range 200 {
		big := strings.Repeat(fmt.Sprint(i), 500)
		if err := s.SaveFacts(ctx, fmt.Sprintf("node-%d", i), fmt.Sprintf("sha256:%d", i), []byte(`{"x":"`+big+`"}`), at(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 16*4096 {
		t.Fatalf("the store is only %d bytes", len(b))
	}
	for i := 4096 * 2; i < len(b)-4096; i += 4096 {
		copy(b[i:i+64], strings.Repeat("garbage!", 8))
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err = Open(path, Options{Logger: testLogger(t)})
	if err == nil {
		s.Close()
		t.Fatal("Open(a damaged file) = nil error, want a refusal")
	}
	if !strings.Contains(err.Error(), "damaged") && !strings.Contains(err.Error(), "malformed") {
		t.Errorf("Open(a damaged file) = %v, want it to say the file is damaged", err)
	}
}

// smallDisk mounts a tmpfs of size bytes for the test.
func smallDisk(t *testing.T, size int) string {
	t.Helper()
	testkit.NeedRoot(t, "mounts a small tmpfs to fill it")
	testkit.NeedTools(t, "mount", "umount")
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d,mode=0700", size), "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	return dir
}

// fill writes to dir until the disk is full and returns the file that
// did it, so that removing it frees the space.
func fill(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "filler")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 64<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	// Smaller writes fill the last partial pages too.
	for _, n := range []int{4096, 512, 1} {
		for {
			if _, err := f.Write(chunk[:n]); err != nil {
				break
			}
		}
	}
	return p
}

// TestCheckWriteOnAFullDisk: CheckWrite fails while the disk is full and
// works again once there is room.
func TestCheckWriteOnAFullDisk(t *testing.T) {
	dir := smallDisk(t, 4<<20)
	s := openAt(t, filepath.Join(dir, "herd.db"), Options{})
	ctx := context.Background()
	if err := s.CheckWrite(ctx); err != nil {
		t.Fatalf("CheckWrite() with room = %v", err)
	}
	// A few writes may still fit in blocks the WAL already has; the
	// loop ends at the first that needs a new one.
	filler := fill(t, dir)
	var failed error
	for range 64 {
		if failed = s.CheckWrite(ctx); failed != nil {
			break
		}
	}
	if failed == nil {
		t.Fatal("CheckWrite() on a full disk kept succeeding")
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if err := s.CheckWrite(ctx); err != nil {
		t.Errorf("CheckWrite() after freeing the disk = %v", err)
	}
}
