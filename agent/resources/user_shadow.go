package resources

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/herdcm/herd/catalogs"
)

// shadowTimeout bounds one run of a shadow tool (useradd, groupmod, …).
// They finish in milliseconds; a longer wait means a lock that will not
// come free, and the run should say so rather than hang.
const shadowTimeout = 2 * time.Minute

// accountsDB is a host root's etc/passwd and etc/group, read in process
// for one Check: the files are small, and reading them is cheaper than
// knowing whether they changed.
type accountsDB struct {
	users  []Account
	groups []Account
}

// readAccountsDB reads root's etc/passwd and etc/group.
func readAccountsDB(root string) (*accountsDB, error) {
	users, err := readAccountsIn(root, true)
	if err != nil {
		return nil, err
	}
	groups, err := readAccountsIn(root, false)
	if err != nil {
		return nil, err
	}
	return &accountsDB{users: users, groups: groups}, nil
}

// user finds a user by name.
func (db *accountsDB) user(name string) (Account, bool) {
	for _, a := range db.users {
		if a.Name == name {
			return a, true
		}
	}
	return Account{}, false
}

// group finds a group by name or, failing that, by number, the way the
// shadow tools resolve -g and -G.
func (db *accountsDB) group(nameOrID string) (Account, bool) {
	for _, a := range db.groups {
		if a.Name == nameOrID {
			return a, true
		}
	}
	if id, err := strconv.Atoi(nameOrID); err == nil {
		for _, a := range db.groups {
			if a.ID == id {
				return a, true
			}
		}
	}
	return Account{}, false
}

// groupName names gid for a message: its name, or the number when the
// root has no such group.
func (db *accountsDB) groupName(gid int) string {
	for _, a := range db.groups {
		if a.ID == gid {
			return a.Name
		}
	}
	return strconv.Itoa(gid)
}

// memberships returns the names of the groups whose member lists name
// user: its supplementary groups, sorted.
func (db *accountsDB) memberships(user string) []string {
	var out []string
	for _, g := range db.groups {
		if slices.Contains(g.Members, user) {
			out = append(out, g.Name)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// accountState is what a user or group Check hands Apply: the one shadow
// tool command that makes the host match, so that Apply does exactly what
// the plan showed.
type accountState struct {
	doing string // "creating user alice", for errors
	argv  []string
	// passwd, when set, is "name:hash\n" for chpasswd -e, run after argv
	// (if any): the hash goes through standard input, never a command
	// line.
	passwd []byte
}

// shadowArgv starts a command of the shadow suite for root. A sandbox root
// gets --prefix, which makes the tools read and write root's etc/passwd,
// group, shadow and gshadow and its login.defs and default/useradd, and
// resolve group names there. The tool is named without a path: this
// machine's tool works on the root.
func shadowArgv(root, tool string) []string {
	if root != "/" {
		return []string{tool, "--prefix", root}
	}
	return []string{tool}
}

// shadowApply runs the command of an account plan.
func shadowApply(ctx context.Context, h *Host, p *Plan) error {
	st, ok := p.State.(*accountState)
	if !ok {
		return fmt.Errorf("applying %s: the plan has no account command", p.Resource.ID)
	}
	if err := shadowPathsInRoot(accountRoot(h)); err != nil {
		return fmt.Errorf("%s: %w", st.doing, err)
	}
	if len(st.argv) > 0 {
		if err := shadowRun(ctx, h, p, st.doing, Cmd{Argv: st.argv, Timeout: shadowTimeout}); err != nil {
			return err
		}
	}
	if st.passwd != nil {
		argv := []string{"chpasswd", "--encrypted"}
		if root := accountRoot(h); root != "/" {
			argv = append(argv, "--root", root)
		}
		return shadowRun(ctx, h, p, st.doing+": setting its password", Cmd{Argv: argv, Stdin: st.passwd, Timeout: shadowTimeout})
	}
	return nil
}

// shadowRun runs one shadow tool and turns a failure into an error.
func shadowRun(ctx context.Context, h *Host, p *Plan, doing string, c Cmd) error {
	res, err := h.Run(ctx, c)
	p.Output += string(res.Output)
	if err != nil {
		return fmt.Errorf("%s: %w", doing, err)
	}
	if res.ExitCode != 0 {
		return fmt.Errorf("%s: %s exited with status %d: %s", doing, c.Argv[0], res.ExitCode, toolErrorLine(res.Output))
	}
	return nil
}

// checkCryptField refuses a password field that would corrupt etc/shadow
// or chpasswd's input (a colon or a line break), whatever the catalog's
// origin; the compiler checks the full shape. The value is never quoted.
func checkCryptField(hash string) error {
	if hash == "" || strings.ContainsAny(hash, ":\n\r") {
		return errors.New("not a crypt(3) hash or a locked field (\"!\", \"*\")")
	}
	return nil
}

// readShadowHash returns user's password field in root's etc/shadow. The
// file is read in process, through the one resolution policy; a missing
// file or line is found = false.
func readShadowHash(root, user string) (hash string, found bool, err error) {
	b, _, err := readInRoot(root, "etc/shadow", maxAccountFile)
	if errors.Is(err, fs.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("reading etc/shadow: %w", err)
	}
	for line := range strings.Lines(string(b)) {
		name, rest, ok := strings.Cut(strings.TrimRight(line, "\n"), ":")
		if ok && name == user {
			hash, _, _ = strings.Cut(rest, ":")
			return hash, true, nil
		}
	}
	return "", false, nil
}

// shadowPaths are what the shadow tools read and write under --prefix:
// the account files with their backups, locks and temporary copies beside
// them, the subordinate id files, login.defs and useradd's defaults, the
// skeleton (a link there would copy another tree into a new home), homes
// and mail spools.
var shadowPaths = func() []string {
	out := []string{"etc", "etc/login.defs", "etc/default", "etc/default/useradd", "etc/skel", "home", "var", "var/mail"}
	for _, f := range []string{"passwd", "group", "shadow", "gshadow", "subuid", "subgid"} {
		for _, suffix := range []string{"", "-", "+", ".lock"} {
			out = append(out, "etc/"+f+suffix)
		}
	}
	return out
}()

// shadowPathsInRoot refuses a sandbox root where the shadow tools would
// follow a symbolic link: they open root + "/etc/passwd" and the rest as
// plain paths, so a link there (etc -> /etc) would make useradd --prefix
// edit files outside the root. The real root "/" is the host itself.
func shadowPathsInRoot(root string) error {
	if root == "/" {
		return nil
	}
	r, err := os.OpenRoot(root)
	if err != nil {
		return fmt.Errorf("opening the host root: %w", err)
	}
	defer r.Close()
	for _, p := range shadowPaths {
		fi, err := r.Lstat(p)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return err
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			target, _ := r.Readlink(p)
			return fmt.Errorf("%s/%s is a symbolic link (to %s): refusing to run the shadow tools with --prefix, which would follow it", root, p, target)
		}
	}
	return nil
}

// accountRoot is the host root, "/" when unset.
func accountRoot(h *Host) string {
	if h.Root == "" {
		return "/"
	}
	return h.Root
}

// accountName returns the resource's account name, refusing one the
// shadow tools would misread: an option ("-o…"), or a name with the
// separators of etc/passwd and etc/group in it. The compiler checks the
// full rule; this guards the command line whatever the catalog's origin.
func accountName(typ string, r *catalogs.Resource) (string, error) {
	name := r.String("name")
	if name == "" {
		name = r.Name
	}
	if name == "" || name[0] == '-' || strings.ContainsAny(name, ":,/ \t\n") {
		return "", fmt.Errorf("checking %s %q: not a valid account name", typ, name)
	}
	return name, nil
}

// accountEnsure returns ensure, "present" by default.
func accountEnsure(typ, name string, r *catalogs.Resource) (string, error) {
	switch e := r.String("ensure"); e {
	case "", "present":
		return "present", nil
	case "absent":
		return e, nil
	default:
		return "", fmt.Errorf("checking %s %s: ensure %q: want present or absent", typ, name, e)
	}
}

// accountIgnores reports whether the resource leaves attr to another tool.
func accountIgnores(r *catalogs.Resource, attr string) bool {
	return slices.Contains(r.Strings("ignore"), attr)
}

// accountsMu serialises the shadow tools: useradd, usermod and groupadd
// lock etc/passwd and etc/group and give up after a few seconds when
// another holds them, so the engine's parallel user and group resources
// must not run them at the same time.
var accountsMu sync.Mutex
