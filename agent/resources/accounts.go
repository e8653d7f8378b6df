package resources

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Account is one line of the host root's etc/passwd or etc/group.
type Account struct {
	Name    string
	ID      int    // uid or gid
	GID     int    // primary gid (passwd only)
	Home    string // passwd only
	Shell   string // passwd only
	Comment string // passwd only
	Members []string
}

// maxAccountFile bounds what is read of an account file: a real one is
// kilobytes; a runaway one must not balloon the agent.
const maxAccountFile = 64 << 20

// LookupUser finds a user by name or numeric id in root/etc/passwd. Names
// are resolved in the host root's own files, never through this machine's
// NSS, so that a sandbox root answers for itself. The file is opened by
// the one resolution policy (inroot.go): a link cannot lead out of root.
func LookupUser(root, nameOrID string) (Account, bool, error) {
	return lookupAccount(root, nameOrID, true)
}

// LookupGroup finds a group by name or numeric id in root/etc/group.
func LookupGroup(root, nameOrID string) (Account, bool, error) {
	return lookupAccount(root, nameOrID, false)
}

func lookupAccount(root, nameOrID string, passwd bool) (Account, bool, error) {
	accts, err := readAccountsIn(root, passwd)
	if err != nil {
		return Account{}, false, err
	}
	id, idErr := strconv.Atoi(nameOrID)
	for _, a := range accts {
		if a.Name == nameOrID || (idErr == nil && a.ID == id) {
			return a, true, nil
		}
	}
	return Account{}, false, nil
}

// accountFileRel is the account file a passwd (true) or group lookup
// reads, relative to the host root.
func accountFileRel(passwd bool) string {
	if passwd {
		return "etc/passwd"
	}
	return "etc/group"
}

// readAccountsIn reads root's etc/passwd (passwd = true) or etc/group. A
// missing file is an empty list: a fresh sandbox root has no accounts yet.
func readAccountsIn(root string, passwd bool) ([]Account, error) {
	accts, _, err := readAccountFile(root, passwd)
	return accts, err
}

// readAccountFile reads and parses one account file, returning its stat
// too, for the cache.
func readAccountFile(root string, passwd bool) ([]Account, unix.Stat_t, error) {
	rel := accountFileRel(passwd)
	b, st, err := readInRoot(root, rel, maxAccountFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, st, nil
	}
	if err != nil {
		return nil, st, fmt.Errorf("reading accounts: %w", err)
	}
	accts, err := parseAccounts(b, filepath.Join(root, rel), passwd)
	return accts, st, err
}

// ReadAccounts parses a passwd (passwd = true) or group file. A missing
// file is an empty list. It opens file as it is named, following links:
// for a file under a host root, LookupUser and LookupGroup resolve it
// inside the root instead.
func ReadAccounts(file string, passwd bool) ([]Account, error) {
	b, err := os.ReadFile(file)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading accounts: %w", err)
	}
	return parseAccounts(b, file, passwd)
}

// parseAccounts parses the content of a passwd (passwd = true) or group
// file; name is the file's name for errors ("etc/passwd:3: …").
func parseAccounts(b []byte, name string, passwd bool) ([]Account, error) {
	var out []Account
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		a, err := parseAccount(line, passwd)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, n, err)
		}
		out = append(out, a)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	return out, nil
}

// parseAccount parses one passwd line (name:x:uid:gid:gecos:home:shell) or
// group line (name:x:gid:member,member).
func parseAccount(line string, passwd bool) (Account, error) {
	f := strings.Split(line, ":")
	want := 4
	if passwd {
		want = 7
	}
	if len(f) != want {
		return Account{}, fmt.Errorf("want %d colon-separated fields, got %d", want, len(f))
	}
	id, err := strconv.Atoi(f[2])
	if err != nil || id < 0 {
		return Account{}, fmt.Errorf("bad id %q", f[2])
	}
	a := Account{Name: f[0], ID: id}
	if passwd {
		if a.GID, err = strconv.Atoi(f[3]); err != nil || a.GID < 0 {
			return Account{}, fmt.Errorf("bad gid %q", f[3])
		}
		a.Comment, a.Home, a.Shell = f[4], f[5], f[6]
	} else if f[3] != "" {
		a.Members = strings.Split(f[3], ",")
	}
	return a, nil
}
