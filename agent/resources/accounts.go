package resources

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
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

// LookupUser finds a user by name or numeric id in root/etc/passwd. Names
// are resolved in the host root's own files, never through this machine's
// NSS, so that a sandbox root answers for itself.
func LookupUser(root, nameOrID string) (Account, bool, error) {
	return lookupAccount(filepath.Join(root, "etc/passwd"), nameOrID, true)
}

// LookupGroup finds a group by name or numeric id in root/etc/group.
func LookupGroup(root, nameOrID string) (Account, bool, error) {
	return lookupAccount(filepath.Join(root, "etc/group"), nameOrID, false)
}

func lookupAccount(file, nameOrID string, passwd bool) (Account, bool, error) {
	accts, err := ReadAccounts(file, passwd)
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

// ReadAccounts parses a passwd (passwd = true) or group file. A missing
// file is an empty list: a fresh sandbox root has no accounts yet.
func ReadAccounts(file string, passwd bool) ([]Account, error) {
	f, err := os.Open(file)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading accounts: %w", err)
	}
	defer f.Close()
	var out []Account
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		a, err := parseAccount(line, passwd)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", file, n, err)
		}
		out = append(out, a)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", file, err)
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
