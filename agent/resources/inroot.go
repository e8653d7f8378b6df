package resources

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"sync/atomic"

	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	"golang.org/x/sys/unix"
)

// This file is the one resolution policy for every path a type reads or
// writes under the host root (files, account files, the dpkg database):
// a path is resolved as the host itself resolves it from inside its root
// (links followed, an absolute target starting at the root, ".." stopping
// there), so that /var/run -> /run works on a real host and a link planted
// in a sandbox can never lead out of it. The kernel does the resolution
// (openat2 with RESOLVE_IN_ROOT) wherever it can; on kernels without
// openat2, runc's resolver does (filepath-securejoin's pathrs-lite: a walk
// of O_PATH descriptors, checked against procfs). Nothing here follows a
// path string a second time after it was checked.

// openat2Missing is set once openat2 has failed as unsupported (an old
// kernel, a seccomp filter), so that every later lookup goes straight to
// the fallback.
var openat2Missing atomic.Bool

// openInRoot opens rel (relative to root, "." for the root itself) with
// flags, resolved inside root. With O_PATH the result is a handle for
// further *at calls; otherwise it is opened for I/O. portable skips
// openat2, so that tests cover the fallback too. A missing path is
// fs.ErrNotExist.
func openInRoot(root, rel string, flags int, portable bool) (int, error) {
	if rel == "" {
		rel = "."
	}
	if !portable && !openat2Missing.Load() {
		rfd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return -1, &fs.PathError{Op: "open", Path: root, Err: err}
		}
		fd, err := openat2InRoot(rfd, rel, flags)
		unix.Close(rfd)
		if err == nil || !unsupported(err) {
			return fd, err
		}
		openat2Missing.Store(true)
	}
	rootFile, err := os.OpenFile(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	defer rootFile.Close()
	h, err := pathrs.OpenatInRoot(rootFile, rel)
	if err != nil {
		return -1, err
	}
	defer h.Close()
	switch {
	case flags&unix.O_PATH == 0:
		f, err := pathrs.Reopen(h, flags)
		if err != nil {
			return -1, err
		}
		defer f.Close()
		h = f
	case flags&unix.O_DIRECTORY != 0:
		// A directory handle was asked for: refuse anything else, as
		// openat2's O_DIRECTORY does.
		var st unix.Stat_t
		if err := unix.Fstat(int(h.Fd()), &st); err != nil {
			return -1, &fs.PathError{Op: "fstat", Path: rel, Err: err}
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return -1, &fs.PathError{Op: "open", Path: rel, Err: unix.ENOTDIR}
		}
	}
	// A descriptor of our own, so that the *os.File can be closed.
	fd, err := unix.FcntlInt(h.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return -1, &fs.PathError{Op: "dup", Path: rel, Err: err}
	}
	return fd, nil
}

// openat2InRoot resolves rel below the root descriptor rfd with openat2.
func openat2InRoot(rfd int, rel string, flags int) (int, error) {
	how := unix.OpenHow{
		Flags:   uint64(flags | unix.O_CLOEXEC),
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	}
	for {
		fd, err := unix.Openat2(rfd, rel, &how)
		switch {
		case err == nil:
			return fd, nil
		case err == unix.EINTR || err == unix.EAGAIN:
			// EAGAIN: a rename raced the lookup; the kernel asks for a retry.
			continue
		}
		return -1, &fs.PathError{Op: "openat2", Path: rel, Err: err}
	}
}

// unsupported reports an error that means openat2 cannot be used here.
func unsupported(err error) bool {
	return errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM) || errors.Is(err, unix.E2BIG)
}

// openDirInRoot returns a handle (O_PATH) on the directory rel under root.
// A path through something that is not a directory is ENOTDIR.
func openDirInRoot(root, rel string, portable bool) (int, error) {
	return openInRoot(root, rel, unix.O_PATH|unix.O_DIRECTORY, portable)
}

// rootAt returns an os.Root on the directory handle fd (which it does not
// close), for the writes of an Apply: os.Root confines every later
// operation to that directory, refusing links that would leave it.
func rootAt(fd int) (*os.Root, error) {
	// The magic link reopens exactly the directory fd names, whatever
	// happened to its path since.
	r, err := os.OpenRoot("/proc/self/fd/" + strconv.Itoa(fd))
	if err != nil {
		return nil, fmt.Errorf("reopening a directory: %w", err)
	}
	return r, nil
}

// openParentRoot opens the directory holding rel (clean, relative to the
// host root) for an Apply and returns it with the base name.
func openParentRoot(root, rel string, portable bool) (*os.Root, string, error) {
	dir, base := splitRel(rel)
	fd, err := openDirInRoot(root, dir, portable)
	if err != nil {
		return nil, base, err
	}
	defer unix.Close(fd)
	r, err := rootAt(fd)
	return r, base, err
}

// splitRel splits a clean relative path into its directory ("." at the
// top) and base name.
func splitRel(rel string) (dir, base string) {
	for i := len(rel) - 1; i >= 0; i-- {
		if rel[i] == '/' {
			return rel[:i], rel[i+1:]
		}
	}
	return ".", rel
}

// readInRoot reads the regular file rel under root, resolved by the one
// policy, and returns its content with its stat (for cache keys). A
// missing file is fs.ErrNotExist; anything but a regular file (a FIFO
// that would hang, a device) is refused. max bounds what is read.
func readInRoot(root, rel string, max int64) ([]byte, unix.Stat_t, error) {
	var st unix.Stat_t
	fd, err := openInRoot(root, rel, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY, false)
	if err != nil {
		return nil, st, err
	}
	f := os.NewFile(uintptr(fd), rel)
	defer f.Close()
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, st, &fs.PathError{Op: "fstat", Path: rel, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, st, &fs.PathError{Op: "read", Path: rel, Err: errors.New("not a regular file")}
	}
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, st, &fs.PathError{Op: "read", Path: rel, Err: err}
	}
	if int64(len(b)) > max {
		return nil, st, &fs.PathError{Op: "read", Path: rel, Err: fmt.Errorf("larger than %d bytes", max)}
	}
	return b, st, nil
}

// statInRoot stats rel under root (following links inside the root).
func statInRoot(root, rel string) (unix.Stat_t, error) {
	var st unix.Stat_t
	fd, err := openInRoot(root, rel, unix.O_PATH, false)
	if err != nil {
		return st, err
	}
	defer unix.Close(fd)
	if err := unix.Fstat(fd, &st); err != nil {
		return st, &fs.PathError{Op: "fstat", Path: rel, Err: err}
	}
	return st, nil
}

// readDirInRoot lists the directory rel under root.
func readDirInRoot(root, rel string) ([]string, error) {
	fd, err := openInRoot(root, rel, unix.O_RDONLY|unix.O_DIRECTORY, false)
	if err != nil {
		return nil, err
	}
	d := os.NewFile(uintptr(fd), rel)
	defer d.Close()
	return readNames(d, -1)
}
