package sandbox

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"syscall"
)

// sandboxDirs are the directories of a sandbox host root and their modes.
// dpkg --root needs its admin directory (status, available, info/,
// updates/, triggers/); apt-get -o Dir= needs etc/apt and its state and
// cache directories, or it warns instead of saying what is missing; the
// shadow tools' --prefix need etc/ and create homes under home/.
var sandboxDirs = []struct {
	path string
	mode os.FileMode
}{
	{"etc", 0o755},
	{"etc/default", 0o755},
	{"etc/skel", 0o755},
	{"etc/apt", 0o755},
	{"etc/apt/apt.conf.d", 0o755},
	{"etc/apt/preferences.d", 0o755},
	{"etc/apt/sources.list.d", 0o755},
	{"home", 0o755},
	{"root", 0o700},
	{"tmp", os.ModeSticky | 0o777},
	{"usr", 0o755},
	{"usr/bin", 0o755},
	{"usr/sbin", 0o755},
	{"var", 0o755},
	{"var/cache", 0o755},
	{"var/cache/apt", 0o755},
	{"var/cache/apt/archives", 0o755},
	{"var/cache/apt/archives/partial", 0o700},
	{"var/cache/herd", 0o700},
	{"var/lib", 0o755},
	{"var/lib/apt", 0o755},
	{"var/lib/apt/lists", 0o755},
	{"var/lib/apt/lists/partial", 0o700},
	{"var/lib/dpkg", 0o755},
	{"var/lib/dpkg/info", 0o755},
	{"var/lib/dpkg/triggers", 0o755},
	{"var/lib/dpkg/updates", 0o755},
	{"var/lib/herd", 0o700},
	{"var/log", 0o755},
	{"var/log/apt", 0o755}, // apt-get install fails without it
	{"var/mail", 0o755},
}

// shadowGID is the gid of group shadow, which owns etc/shadow and
// etc/gshadow on Debian.
const shadowGID = 42

// sandboxFiles are the files of a sandbox host root and their modes. The
// accounts are the handful every Debian system starts with, so that a test
// adds its own users with real ids next to real neighbours.
var sandboxFiles = []struct {
	path    string
	mode    os.FileMode
	gid     int // group owner; root when 0
	content string
}{
	{"var/lib/dpkg/status", 0o644, 0, ""},
	{"var/lib/dpkg/available", 0o644, 0, ""},
	{"etc/passwd", 0o644, 0, "root:x:0:0:root:/root:/bin/bash\n" +
		"daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n" +
		"nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"},
	{"etc/group", 0o644, 0, "root:x:0:\ndaemon:x:1:\nshadow:x:42:\nusers:x:100:\nnogroup:x:65534:\n"},
	{"etc/shadow", 0o640, shadowGID, "root:*:19000:0:99999:7:::\n" +
		"daemon:*:19000:0:99999:7:::\n" +
		"nobody:*:19000:0:99999:7:::\n"},
	{"etc/gshadow", 0o640, shadowGID, "root:*::\ndaemon:*::\nshadow:*::\nusers:*::\nnogroup:*::\n"},
	// The shadow tools read login.defs and default/useradd under --prefix;
	// without them they fall back to built-in defaults that differ from
	// Debian's (no user private groups, uids from 500).
	{"etc/login.defs", 0o644, 0, `# A minimal Debian 12 login.defs for a herd sandbox host.
MAIL_DIR        /var/mail
UMASK           022
PASS_MAX_DAYS   99999
PASS_MIN_DAYS   0
PASS_WARN_AGE   7
UID_MIN         1000
UID_MAX         60000
SYS_UID_MIN     100
SYS_UID_MAX     999
GID_MIN         1000
GID_MAX         60000
SYS_GID_MIN     100
SYS_GID_MAX     999
USERGROUPS_ENAB yes
ENCRYPT_METHOD  SHA512
`},
	{"etc/default/useradd", 0o644, 0, "SHELL=/bin/sh\n"},
	{"etc/skel/.profile", 0o644, 0, "# ~/.profile of a herd sandbox host\n"},
}

// debianOSRelease describes the sandbox as Debian 12, so that a site's
// conditions on the os family hold in it.
const debianOSRelease = `PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
`

// layoutFiles is every file Init writes: sandboxFiles and etc/os-release.
func layoutFiles() []struct {
	path    string
	mode    os.FileMode
	gid     int
	content string
} {
	return append(sandboxFiles[:len(sandboxFiles):len(sandboxFiles)], struct {
		path    string
		mode    os.FileMode
		gid     int
		content string
	}{"etc/os-release", 0o644, 0, debianOSRelease})
}

// statePaths are what a run opens in its state directory, var/lib/herd:
// a link at any of them would lead the agent's own writes (the sqlite
// database and its journal, the run lock, saved contents, service logs,
// the enrollment key) out of the root.
var statePaths = []string{
	"var/lib/herd/state.db", "var/lib/herd/state.db-wal", "var/lib/herd/state.db-shm",
	"var/lib/herd/state.db-journal", "var/lib/herd/run.lock", "var/lib/herd/content",
	"var/lib/herd/logs", "var/lib/herd/tls",
}

// layoutPaths lists every path the layout makes, directories before what
// they hold.
func layoutPaths() []string {
	var out []string
	for _, d := range sandboxDirs {
		out = append(out, d.path)
	}
	for _, f := range layoutFiles() {
		out = append(out, f.path)
	}
	return out
}

// isRealRoot reports whether root is this machine's own root, which is
// never laid out nor judged: it is the host.
func isRealRoot(root string) bool { return root == "" || path.Clean(root) == "/" }

// Check says whether root may serve as a sandbox host root, without
// changing anything: it must be a directory owned by the invoking user and
// writable by no one else (or anyone could plant a link in it between two
// runs), and no path the layout or a run's state touches (etc, tmp,
// var/lib/dpkg, var/lib/herd and the state files in it, etc/passwd, …)
// may be a symbolic link that leads out of root or nowhere. A link inside
// root that stays inside is accepted. The real root "/" always passes: it is the host itself.
func Check(root string) error {
	if isRealRoot(root) {
		return nil
	}
	fi, err := os.Lstat(root)
	if err != nil {
		return fmt.Errorf("sandbox host %s: %w", root, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("sandbox host %s: not a directory (a symbolic link to one is refused too: name the directory itself)", root)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("sandbox host %s: no owner information", root)
	}
	if uid := os.Geteuid(); int(st.Uid) != uid {
		return fmt.Errorf("sandbox host %s: owned by uid %d, not by the invoking user (uid %d); refusing a root another user controls", root, st.Uid, uid)
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("sandbox host %s: mode %04o is writable by group or others; refusing a root others can plant links in (chmod go-w it)", root, fi.Mode().Perm())
	}
	r, err := os.OpenRoot(root)
	if err != nil {
		return fmt.Errorf("sandbox host %s: %w", root, err)
	}
	defer r.Close()
	seen := map[string]bool{}
	for _, p := range append(layoutPaths(), statePaths...) {
		// Every prefix of p, so that a link at etc is found through
		// etc/passwd even when etc/default is not looked at.
		for i := 0; i <= len(p); i++ {
			if i < len(p) && p[i] != '/' {
				continue
			}
			prefix := p[:i]
			if seen[prefix] {
				continue
			}
			seen[prefix] = true
			if err := checkComponent(r, root, prefix); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkComponent refuses rel when it is a symbolic link that leads out of
// root or to nothing. os.Root resolves links the way Init writes through
// them, refusing absolute targets and targets that climb above the root.
func checkComponent(r *os.Root, root, rel string) error {
	fi, err := r.Lstat(rel)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("sandbox host %s: %s: %w", root, rel, err)
	}
	if fi.Mode()&fs.ModeSymlink == 0 {
		return nil
	}
	target, err := r.Readlink(rel)
	if err != nil {
		return fmt.Errorf("sandbox host %s: %s: %w", root, rel, err)
	}
	if _, err := r.Stat(rel); err != nil {
		return fmt.Errorf("sandbox host %s: %s is a symbolic link to %s, which leads out of the root or nowhere; refusing to lay out or run through it", root, rel, target)
	}
	return nil
}

// NeedsLayout reports whether Init would create anything in root: a
// sandbox root that lacks a directory or file of the layout. The real
// root "/" never needs one. It only reads.
func NeedsLayout(root string) bool {
	if isRealRoot(root) {
		return false
	}
	r, err := os.OpenRoot(root)
	if err != nil {
		return true
	}
	defer r.Close()
	for _, p := range layoutPaths() {
		if _, err := r.Lstat(p); err != nil {
			return true
		}
	}
	return false
}

// Init lays out root, an existing directory, like a minimal Debian 12
// host: an empty dpkg database (var/lib/dpkg/{status, available, info/,
// updates/, triggers/}) that `dpkg --root` installs into; etc/apt and
// apt's state and cache directories, empty, so that `apt-get -o Dir=` runs
// and finds no package; etc/passwd, group, shadow and gshadow with root,
// daemon and nobody; etc/login.defs (UID_MIN 1000, SYS_UID_MIN 100, user
// private groups), etc/default/useradd and etc/skel, which `useradd
// --prefix` reads; etc/os-release; and home/, tmp/ (1777), usr/bin,
// usr/sbin, var/log, var/mail, var/cache/herd and var/lib/herd. Files that
// exist are left alone, so Init may run on a sandbox that was already used.
//
// Init first runs Check, and then creates, chmods and writes only through
// an os.Root opened on root, so that nothing outside root is touched even
// should a link be planted while it runs. The real root "/" is never laid
// out.
//
// etc/shadow and etc/gshadow belong to group shadow (42) when run as root,
// as on Debian.
func Init(root string) error {
	if isRealRoot(root) {
		return errors.New("laying out a sandbox host: refusing to lay out the real root /")
	}
	if err := Check(root); err != nil {
		return err
	}
	r, err := os.OpenRoot(root)
	if err != nil {
		return fmt.Errorf("laying out sandbox host %s: %w", root, err)
	}
	defer r.Close()
	if err := r.Chmod(".", 0o755); err != nil {
		return fmt.Errorf("laying out sandbox host %s: %w", root, err)
	}
	for _, d := range sandboxDirs {
		if err := r.Mkdir(d.path, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("laying out sandbox host %s: %w", root, err)
		}
		// Chmod, not Mkdir's mode, so that the umask does not strip
		// tmp's sticky bit.
		if err := r.Chmod(d.path, d.mode); err != nil {
			return fmt.Errorf("laying out sandbox host %s: %w", root, err)
		}
	}
	for _, f := range layoutFiles() {
		if err := writeNew(r, f.path, f.content, f.mode, f.gid); err != nil {
			return fmt.Errorf("laying out sandbox host %s: %w", root, err)
		}
	}
	return nil
}

// writeNew creates the file rel with content, mode and group unless
// something is already there. It writes a temporary file beside rel
// (.herd-tmp-<name>, the name Herd's file resource uses too), syncs it
// and hard-links it into place: link never replaces an existing name, a
// link included, and a crash leaves either no file or the whole one, never
// a truncated etc/passwd that a later Init would keep.
func writeNew(r *os.Root, rel, content string, mode os.FileMode, gid int) error {
	if _, err := r.Lstat(rel); err == nil {
		return nil
	}
	dir, base := path.Split(rel)
	tmp := dir + ".herd-tmp-" + base
	// A leftover of a killed Init: never followed, always replaced.
	if err := r.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("writing %s: removing a leftover: %w", rel, err)
	}
	f, err := r.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("writing %s: %w", rel, err)
	}
	defer r.Remove(tmp)
	_, err = f.WriteString(content)
	if err == nil && gid != 0 && os.Geteuid() == 0 {
		err = f.Chown(0, gid)
	}
	if err == nil {
		err = f.Chmod(mode)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = r.Link(tmp, rel)
		if errors.Is(err, fs.ErrExist) {
			err = nil // created meanwhile: leave it alone
		}
	}
	if err == nil {
		err = syncDir(r, dir)
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", rel, err)
	}
	return nil
}

// syncDir flushes the directory dir (as path.Split gives it) so that a
// new name in it survives a crash.
func syncDir(r *os.Root, dir string) error {
	if dir == "" {
		dir = "."
	}
	d, err := r.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
