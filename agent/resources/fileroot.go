package resources

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"strconv"
	"syscall"
)

// maxLinks bounds how many symbolic links one path may pass through, as
// the kernel's own limit does (ELOOP).
const maxLinks = 40

// errNoParent marks an Apply that found its parent directory missing.
var errNoParent = errors.New("parent directory does not exist")

// tempPrefix starts every temporary name Apply makes beside a managed
// file. Nothing else of Herd's, and nothing a user is likely to name a
// file, starts with it.
const tempPrefix = ".herd-tmp-"

// tempName returns the temporary name beside base: hidden, recognisably
// Herd's, and the same on every run, so that Check finds what a killed
// Apply left behind without guessing.
func tempName(base string) string { return tempPrefix + tempKey(base) }

// fallbackTempName is the temporary name used when the fixed one is kept
// taken: the random part comes first, so that it can never be read as
// another managed name's fixed temporary (".herd-tmp-motd.conf" is
// motd.conf's, never motd's).
func fallbackTempName(base string) string {
	return fallbackPrefix + strconv.FormatUint(rand.Uint64(), 36) + "." + tempKey(base)
}

// fallbackPrefix starts a fallbackTempName.
const fallbackPrefix = ".herd-tmp."

// tempKey is base as it appears in a temporary name: a long base is cut
// and given a digest of the whole, so that two managed names never share
// a temporary name within the 255-byte limit of a name.
func tempKey(base string) string {
	if len(base) <= 200 {
		return base
	}
	sum := sha256.Sum256([]byte(base))
	return base[:180] + "-" + hex.EncodeToString(sum[:8])
}

// sweepTemp removes what a killed Apply left at base's temporary name (a
// file, or a link, which is removed, never followed). Leftovers may hold
// an old copy of secret content, and nothing else would ever remove them.
func sweepTemp(dir *os.Root, base string) error {
	err := dir.Remove(tempName(base))
	if err == nil || errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return fmt.Errorf("removing the leftover temporary file %s: %w", tempName(base), err)
}

// createTemp creates a new, empty temporary file beside base in dir,
// readable only by its owner until Apply sets its mode. The fixed name
// is used when it is free or a leftover could be swept; in a directory
// where someone else keeps it taken (a world-writable one), a name with
// a random suffix is used instead.
func createTemp(dir *os.Root, base string) (*os.File, string, error) {
	name := tempName(base)
	if err := sweepTemp(dir, base); err == nil {
		f, err := dir.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if !errors.Is(err, fs.ErrExist) {
			return f, name, err
		}
	}
	for range 10 {
		n := fallbackTempName(base)
		f, err := dir.OpenFile(n, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		return f, n, err
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
