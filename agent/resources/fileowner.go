package resources

import (
	"errors"
	"fmt"
	"io/fs"
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
	st, err := statInRoot(root, accountFileRel(passwd))
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
