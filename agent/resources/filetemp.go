package resources

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"syscall"
)

// leftoverCache remembers, per directory, the names in it that look like
// Herd's temporary files, so that Check finds what a killed Apply left
// beside a managed file without listing the directory every time: the
// directory is listed again only when its mtime or ctime moved (an entry
// came or went). In a run where nothing changes, that is one fstat per
// file. The zero value is ready and safe for concurrent use.
type leftoverCache struct {
	mu   sync.Mutex
	dirs map[dirKey]*dirTemps
}

type dirKey struct{ dev, ino uint64 }

type dirTemps struct {
	mtime, ctime syscall.Timespec
	names        []string // entries starting with ".herd-", sorted
}

// temps returns the names in dir that start with ".herd-".
func (c *leftoverCache) temps(dir dirView) ([]string, error) {
	st, err := dir.stat()
	if err != nil {
		return nil, err
	}
	key := dirKey{st.Dev, st.Ino}
	c.mu.Lock()
	e := c.dirs[key]
	c.mu.Unlock()
	if e != nil && e.mtime == st.Mtim && e.ctime == st.Ctim {
		return e.names, nil
	}
	all, err := dir.names(".", -1)
	if err != nil {
		return nil, fmt.Errorf("listing for leftover temporary files: %w", err)
	}
	var names []string
	for _, n := range all {
		if strings.HasPrefix(n, ".herd-") {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	c.mu.Lock()
	if c.dirs == nil {
		c.dirs = map[dirKey]*dirTemps{}
	}
	c.dirs[key] = &dirTemps{mtime: st.Mtim, ctime: st.Ctim, names: names}
	c.mu.Unlock()
	return names, nil
}

// isLeftoverOf reports whether name is a temporary file Herd made for
// base: the fixed name (tempName), the random-prefixed name createTemp
// falls back to, or the ".herd-<base>-<random>" of agents before the fixed
// name. Nothing else matches: a user's .herd-notes, or another managed
// file's temporary, is never taken for base's.
func isLeftoverOf(name, base string) bool {
	if name == tempName(base) {
		return true
	}
	if rest, ok := strings.CutPrefix(name, fallbackPrefix); ok {
		r, key, ok := strings.Cut(rest, ".")
		return ok && key == tempKey(base) && isRandSuffix(r, 1)
	}
	if strings.HasPrefix(name, tempPrefix) {
		return false // a fixed name: another managed file's
	}
	legacy := base
	if len(legacy) > 200 {
		legacy = legacy[:200]
	}
	// The old suffix was a base-36 uint64: 8 or more digits but for one
	// draw in 10^8, so a shorter suffix is taken for a user's name.
	rest, ok := strings.CutPrefix(name, ".herd-"+legacy+"-")
	return ok && isRandSuffix(rest, 8)
}

// isRandSuffix reports whether s is a base-36 uint64 of at least min
// digits, as strconv.FormatUint(x, 36) writes it.
func isRandSuffix(s string, min int) bool {
	if len(s) < min || len(s) > 13 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'z') {
			return false
		}
	}
	return true
}

// checkLeftovers plans the removal of the temporary files a killed Apply
// left beside the path: a run sweeps its own leftovers, which may hold an
// old copy of secret content.
func (f *File) checkLeftovers(dir dirView, st *fileState, p *Plan) error {
	names, err := f.temps.temps(dir)
	if err != nil {
		return err
	}
	base := path.Base(st.rel)
	for _, n := range names {
		if !isLeftoverOf(n, base) {
			continue
		}
		p.Changes = append(p.Changes, Change{Attr: "leftover", From: path.Join(path.Dir("/"+st.rel), n), To: "absent", Action: Delete})
		st.sweep = append(st.sweep, n)
	}
	return nil
}

// sweepLeftovers removes the leftovers Check listed, never following a
// link, and syncs the directory.
func sweepLeftovers(dir *os.Root, names []string) error {
	for _, n := range names {
		if err := dir.Remove(n); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("removing the leftover temporary file %s: %w", n, err)
		}
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("syncing the directory: %w", err)
	}
	return nil
}
