package resources

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// dirView is what Check reads of the directory that holds a path: a
// directory handle found by the one resolution policy (inroot.go), read
// with raw system calls so that the in-sync path allocates nothing. Apply
// writes through an os.Root on a handle found the same way.
type dirView interface {
	// lstat stats name without following a link.
	lstat(name string) (syscall.Stat_t, error)
	readlink(name string) (string, error)
	// open opens name for reading, failing unless it is still the object
	// want describes (so a link or FIFO swapped in is never read).
	open(name string, want *syscall.Stat_t) (io.ReadCloser, error)
	// stat stats the directory itself.
	stat() (syscall.Stat_t, error)
	// names lists up to n entries (n <= 0: all) of the directory name
	// ("." for the directory itself).
	names(name string, n int) ([]string, error)
	close()
}

// openView opens the directory holding rel (relative to root) for Check.
// A missing directory is fs.ErrNotExist. portable skips openat2.
func openView(root, rel string, portable bool) (dirView, error) {
	dir, _ := splitRel(rel)
	fd, err := openDirInRoot(root, dir, portable)
	if err != nil {
		return nil, err
	}
	return fdView(fd), nil
}

// fdView reads through a directory descriptor opened by openat2, with raw
// system calls: no os.File, no poller registration, nothing to allocate
// on the in-sync path.
type fdView int

func (v fdView) lstat(name string) (syscall.Stat_t, error) {
	var st unix.Stat_t
	for {
		err := unix.Fstatat(int(v), name, &st, unix.AT_SYMLINK_NOFOLLOW)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return syscall.Stat_t{}, &fs.PathError{Op: "lstat", Path: name, Err: err}
		}
		// unix.Stat_t and syscall.Stat_t are the same kernel struct.
		return syscall.Stat_t{
			Dev: st.Dev, Ino: st.Ino, Nlink: st.Nlink, Mode: st.Mode, Uid: st.Uid, Gid: st.Gid,
			Rdev: st.Rdev, Size: st.Size, Blksize: st.Blksize, Blocks: st.Blocks,
			Atim: syscall.Timespec(st.Atim), Mtim: syscall.Timespec(st.Mtim), Ctim: syscall.Timespec(st.Ctim),
		}, nil
	}
}

func (v fdView) stat() (syscall.Stat_t, error) {
	var st syscall.Stat_t
	for {
		err := syscall.Fstat(int(v), &st)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return st, &fs.PathError{Op: "fstat", Path: ".", Err: err}
		}
		return st, nil
	}
}

func (v fdView) readlink(name string) (string, error) {
	for n := 256; ; n *= 2 {
		buf := make([]byte, n)
		m, err := unix.Readlinkat(int(v), name, buf)
		if err != nil {
			return "", &fs.PathError{Op: "readlink", Path: name, Err: err}
		}
		if m < n {
			return string(buf[:m]), nil
		}
	}
}

func (v fdView) open(name string, want *syscall.Stat_t) (io.ReadCloser, error) {
	// O_NOFOLLOW: a link swapped in fails rather than being followed;
	// O_NONBLOCK: a FIFO swapped in does not hang the open.
	fd, err := unix.Openat(int(v), name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Dev != want.Dev || st.Ino != want.Ino {
		unix.Close(fd)
		if err == nil {
			err = errors.New("changed while being checked")
		}
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	return fdReader(fd), nil
}

func (v fdView) names(name string, n int) ([]string, error) {
	fd, err := unix.Openat(int(v), name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	d := os.NewFile(uintptr(fd), name)
	defer d.Close()
	return readNames(d, n)
}

func (v fdView) close() { unix.Close(int(v)) }

// fdReader reads a regular file's descriptor.
type fdReader int

func (r fdReader) Read(p []byte) (int, error) {
	for {
		n, err := unix.Read(int(r), p)
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return 0, err
		case n == 0 && len(p) > 0:
			return 0, io.EOF
		}
		return n, nil
	}
}

func (r fdReader) Close() error { return unix.Close(int(r)) }

// readNames lists up to n entries of an open directory (n <= 0: all).
func readNames(d *os.File, n int) ([]string, error) {
	names, err := d.Readdirnames(n)
	if err == io.EOF {
		err = nil
	}
	return names, err
}
