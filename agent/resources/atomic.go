package resources

import (
	"fmt"
	"io"
	"os"
)

// fileWrite is the one way a type replaces a file under the host root:
// a temporary file beside it (tempName, so that a leftover is found and
// swept), filled, synced, given its owner and mode, then renamed over the
// name and the directory synced. A crash leaves the old file or the new
// one, never a mix; the directory is one found by the one resolution
// policy (openParentRoot), so nothing is written outside the root.
type fileWrite struct {
	mode     uint32 // permission bits as a catalog writes them ("4755")
	uid, gid int    // -1 keeps the agent's
	// fill writes the content.
	fill func(w io.Writer) error
	// saveOld, when set, runs just before the rename, so that whatever
	// regular file is there then is kept first (the content store).
	saveOld func(dir *os.Root, base string) error
}

// into writes base in dir.
func (w fileWrite) into(dir *os.Root, base string) (err error) {
	tmp, name, err := createTemp(dir, base)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			dir.Remove(name)
		}
	}()
	if w.fill != nil {
		if err := w.fill(tmp); err != nil {
			return err
		}
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("syncing a temporary file: %w", err)
	}
	if err := setOwner(tmp, w.uid, w.gid); err != nil {
		return err
	}
	// After chown, which clears setuid and setgid bits.
	if err := tmp.Chmod(unixMode(w.mode)); err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("closing a temporary file: %w", err)
	}
	if w.saveOld != nil {
		if err := w.saveOld(dir, base); err != nil {
			return err
		}
	}
	if err := dir.Rename(name, base); err != nil {
		return fmt.Errorf("rename: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("syncing the directory: %w", err)
	}
	return nil
}
