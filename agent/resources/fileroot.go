package resources

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path"
	"strconv"
	"strings"
	"syscall"
)

// maxLinks bounds how many symbolic links one path may pass through, as
// the kernel's own limit does (ELOOP).
const maxLinks = 40

// errNoParent marks an Apply that found its parent directory missing.
var errNoParent = errors.New("parent directory does not exist")

// openParent opens the directory that holds rel (a clean path relative to
// the host root) and returns it with the resolved directory path and the
// base name.
//
// Symbolic links on the way are followed as the host itself would follow
// them from inside its root: an absolute target is relative to the root
// and ".." stops at it, so a link planted in a sandbox cannot lead out of
// it, and /var/run → /run works on a real host (os.Root refuses both).
func openParent(r *os.Root, rel string) (dirRoot *os.Root, dir, base string, err error) {
	dir, base = path.Split(rel)
	dir = strings.TrimSuffix(dir, "/")
	if dir == "" {
		dir = "."
	}
	pr, err := r.OpenRoot(dir)
	if err == nil {
		return pr, dir, base, nil
	}
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return nil, dir, base, err
	}
	// os.Root refuses links that are absolute or climb above it; resolve
	// them the way the host would and try again.
	resolved, rerr := resolveInRoot(r, dir)
	if rerr != nil {
		return nil, dir, base, rerr
	}
	if pr, err = r.OpenRoot(resolved); err != nil {
		return nil, resolved, base, err
	}
	return pr, resolved, base, nil
}

// resolveInRoot resolves every symbolic link in rel, the last component
// included, as seen from inside the host root: absolute targets start at
// the root, ".." at the root stays there. Components that do not exist
// are kept as they are.
func resolveInRoot(r *os.Root, rel string) (string, error) {
	var done []string
	todo := strings.Split(rel, "/")
	links := 0
	for len(todo) > 0 {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(done) > 0 {
				done = done[:len(done)-1]
			}
			continue
		}
		p := strings.Join(append(done, c), "/")
		fi, err := r.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			done = append(done, c)
			done = append(done, todo...)
			break
		}
		if err != nil {
			return "", err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			done = append(done, c)
			continue
		}
		if links++; links > maxLinks {
			return "", fmt.Errorf("resolving /%s: %w", rel, syscall.ELOOP)
		}
		target, err := r.Readlink(p)
		if err != nil {
			return "", err
		}
		if path.IsAbs(target) {
			done = done[:0]
		}
		todo = append(strings.Split(target, "/"), todo...)
	}
	if len(done) == 0 {
		return ".", nil
	}
	return path.Clean(strings.Join(done, "/")), nil
}

// tempName returns a name for a temporary file beside base: hidden,
// recognisable as Herd's, and within the 255-byte limit of a name.
func tempName(base string) string {
	if len(base) > 200 {
		base = base[:200]
	}
	return ".herd-" + base + "-" + strconv.FormatUint(rand.Uint64(), 36)
}

// createTemp creates a new, empty temporary file beside base in dir,
// readable only by its owner until Apply sets its mode.
func createTemp(dir *os.Root, base string) (*os.File, string, error) {
	for range 10 {
		name := tempName(base)
		f, err := dir.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		return f, name, err
	}
	return nil, "", errors.New("creating a temporary file: too many name collisions")
}

// syncDir flushes a directory so that a rename or removal in it survives a
// crash.
func syncDir(dir *os.Root) error {
	d, err := dir.Open(".")
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// openSame opens name in dir for reading and checks that it is still the
// object a Check saw (same device and inode), so that a link or file
// swapped in meanwhile is never read, chmodded or chowned in its place.
func openSame(dir *os.Root, name string, want *syscall.Stat_t) (*os.File, error) {
	// O_NONBLOCK: should a FIFO have been swapped in, open must not hang.
	f, err := dir.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || st.Dev != want.Dev || st.Ino != want.Ino {
		f.Close()
		return nil, fmt.Errorf("%s changed while being checked", name)
	}
	return f, nil
}

// sameContent reports whether the file f, whose size was found equal to
// len(want), begins with want, reading it in pieces into buf so that
// nothing is held twice. It does not read on to confirm the end of file:
// the size said so, and a write racing the check is caught by the next.
func sameContent(f io.Reader, want string, buf []byte) (bool, error) {
	for off := 0; off < len(want); {
		n, err := f.Read(buf[:min(len(buf), len(want)-off)])
		if n > 0 {
			if string(buf[:n]) != want[off:off+n] {
				return false, nil
			}
			off += n
		}
		if err == io.EOF {
			return false, nil
		}
		if err != nil {
			return false, err
		}
	}
	return true, nil
}

// unixMode converts permission bits as written in a catalog ("4755") to an
// fs.FileMode for Chmod.
func unixMode(m uint32) fs.FileMode {
	mode := fs.FileMode(m & 0o777)
	if m&syscall.S_ISUID != 0 {
		mode |= fs.ModeSetuid
	}
	if m&syscall.S_ISGID != 0 {
		mode |= fs.ModeSetgid
	}
	if m&syscall.S_ISVTX != 0 {
		mode |= fs.ModeSticky
	}
	return mode
}

// formatMode writes permission bits as a catalog does: four octal digits.
func formatMode(m uint32) string {
	return fmt.Sprintf("%04o", m&0o7777)
}
