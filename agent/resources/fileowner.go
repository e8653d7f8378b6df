package resources

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// accountCache keeps the host root's parsed etc/passwd and etc/group
// between checks: a run checks hundreds of files with owner = "root", and
// parsing the files for each would dominate the in-sync path. An entry is
// reused only while the file's size, times and inode are unchanged, so an
// account that a user resource just added is seen at once.
type accountCache struct {
	mu    sync.Mutex
	files map[accountKey]*accountFile
	etcs  map[string]*etcHandle // by root
}

// etcHandle keeps a root's etc directory open, so that asking whether an
// account file changed costs two fstatat calls instead of a resolution
// from the root each time: one to see that ROOT/etc is still the directory
// held, one for the file.
type etcHandle struct {
	root, etc *os.File // O_PATH
	dev, ino  uint64   // of etc
}

type accountKey struct {
	root   string
	passwd bool // etc/passwd, else etc/group
}

type accountFile struct {
	size         int64
	mtime, ctime unix.Timespec
	ino          uint64
	accts        []Account
}

// lookup finds a user (passwd) or group by name or number in the host
// root's own account files, never through this machine's NSS. A name wins
// over a number, as in chown(1).
func (c *accountCache) lookup(root string, passwd bool, nameOrID string) (Account, bool, error) {
	accts, err := c.read(root, passwd)
	if err != nil {
		return Account{}, false, err
	}
	for _, a := range accts {
		if a.Name == nameOrID {
			return a, true, nil
		}
	}
	if id, ok := number(nameOrID); ok {
		for _, a := range accts {
			if a.ID == id {
				return a, true, nil
			}
		}
	}
	return Account{}, false, nil
}

// number parses a non-negative decimal id; unlike strconv.Atoi it costs
// nothing for a name, which is the common case.
func number(s string) (int, bool) {
	if s == "" || len(s) > 10 {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + int(s[i]-'0')
	}
	return n, true
}

// read returns the parsed file, from the cache while it is current. The
// file is opened by the one resolution policy each time (one openat2 and
// one fstat); it is parsed again only when it changed.
func (c *accountCache) read(root string, passwd bool) ([]Account, error) {
	key := accountKey{root, passwd}
	st, err := c.stat(root, passwd)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil // a fresh sandbox root has no accounts yet
	}
	if err != nil {
		return nil, fmt.Errorf("reading accounts: %w", err)
	}
	c.mu.Lock()
	e := c.files[key]
	c.mu.Unlock()
	if e != nil && e.same(&st) {
		return e.accts, nil
	}
	accts, st, err := readAccountFile(root, passwd)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.files == nil {
		c.files = map[accountKey]*accountFile{}
	}
	c.files[key] = &accountFile{size: st.Size, mtime: st.Mtim, ctime: st.Ctim, ino: st.Ino, accts: accts}
	c.mu.Unlock()
	return accts, nil
}

// stat stats root's account file as the one resolution policy finds it,
// through the held etc directory while that is still ROOT/etc and the
// file is not a link; anything unusual takes the full resolution.
func (c *accountCache) stat(root string, passwd bool) (unix.Stat_t, error) {
	var st unix.Stat_t
	h := c.etc(root)
	if h != nil {
		var est unix.Stat_t
		err := unix.Fstatat(int(h.root.Fd()), "etc", &est, unix.AT_SYMLINK_NOFOLLOW)
		if err == nil && est.Dev == h.dev && est.Ino == h.ino {
			base := "group"
			if passwd {
				base = "passwd"
			}
			err = unix.Fstatat(int(h.etc.Fd()), base, &st, unix.AT_SYMLINK_NOFOLLOW)
			switch {
			case err == nil && st.Mode&unix.S_IFMT != unix.S_IFLNK:
				return st, nil
			case errors.Is(err, unix.ENOENT):
				return st, &fs.PathError{Op: "stat", Path: accountFileRel(passwd), Err: err}
			}
		} else {
			c.mu.Lock()
			delete(c.etcs, root)
			c.mu.Unlock()
		}
	}
	return statInRoot(root, accountFileRel(passwd))
}

// etc returns the held etc directory of root, opening it the first time;
// nil when the root has none or it is a link.
func (c *accountCache) etc(root string) *etcHandle {
	c.mu.Lock()
	h, ok := c.etcs[root]
	c.mu.Unlock()
	if ok {
		return h
	}
	r, err := os.OpenFile(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	var est unix.Stat_t
	if err := unix.Fstatat(int(r.Fd()), "etc", &est, unix.AT_SYMLINK_NOFOLLOW); err != nil || est.Mode&unix.S_IFMT != unix.S_IFDIR {
		r.Close()
		return nil // a root without etc, or with a link there: resolve each time
	}
	fd, err := unix.Openat(int(r.Fd()), "etc", unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		r.Close()
		return nil
	}
	h = &etcHandle{root: r, etc: os.NewFile(uintptr(fd), "etc"), dev: est.Dev, ino: est.Ino}
	c.mu.Lock()
	if c.etcs == nil {
		c.etcs = map[string]*etcHandle{}
	}
	if old, ok := c.etcs[root]; ok {
		h.root.Close()
		h.etc.Close()
		h = old
	} else {
		c.etcs[root] = h
	}
	c.mu.Unlock()
	return h
}

// same reports whether st describes the file the entry was parsed from,
// unchanged.
func (e *accountFile) same(st *unix.Stat_t) bool {
	return e.size == st.Size && e.mtime == st.Mtim && e.ctime == st.Ctim && e.ino == st.Ino
}

// accountID resolves a wanted owner or group to its number. A number that
// the root's files do not list is taken as it is (chown(1) does the same;
// images often run with bare uids); a name they do not list is an error.
func (c *accountCache) accountID(root string, passwd bool, nameOrID string) (int, error) {
	a, ok, err := c.lookup(root, passwd, nameOrID)
	if err != nil {
		return 0, err
	}
	if ok {
		return a.ID, nil
	}
	if id, ok := number(nameOrID); ok {
		return id, nil
	}
	what, file := "group", "etc/group"
	if passwd {
		what, file = "user", "etc/passwd"
	}
	return 0, fmt.Errorf("no %s %q in the host root's %s", what, nameOrID, file)
}

// accountName names a numeric id for a change ("root"), or gives the
// number when the root's files do not list it. Errors give the number: a
// name is only decoration here.
func (c *accountCache) accountName(root string, passwd bool, id uint32) string {
	accts, _ := c.read(root, passwd)
	for _, a := range accts {
		if uint32(a.ID) == id {
			return a.Name
		}
	}
	return strconv.FormatUint(uint64(id), 10)
}
