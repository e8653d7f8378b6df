package sandbox

import (
	"fmt"
	"os"
	"path/filepath"
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
	{"var/log", 0o755},
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

// Init lays out root, an existing directory, like a minimal Debian 12
// host: an empty dpkg database (var/lib/dpkg/{status, available, info/,
// updates/, triggers/}) that `dpkg --root` installs into; etc/apt and
// apt's state and cache directories, empty, so that `apt-get -o Dir=` runs
// and finds no package; etc/passwd, group, shadow and gshadow with root,
// daemon and nobody; etc/login.defs (UID_MIN 1000, SYS_UID_MIN 100, user
// private groups), etc/default/useradd and etc/skel, which `useradd
// --prefix` reads; etc/os-release; and home/, tmp/ (1777), usr/bin,
// usr/sbin, var/log, var/mail and var/cache/herd. Files that exist are left
// alone, so Init may run on a sandbox that was already used.
//
// etc/shadow and etc/gshadow belong to group shadow (42) when run as root,
// as on Debian.
func Init(root string) error {
	if err := os.Chmod(root, 0o755); err != nil {
		return fmt.Errorf("laying out sandbox host %s: %w", root, err)
	}
	for _, d := range sandboxDirs {
		p := filepath.Join(root, d.path)
		if err := os.MkdirAll(p, 0o755); err != nil {
			return fmt.Errorf("laying out sandbox host: %w", err)
		}
		// Chmod, not MkdirAll's mode, so that the umask does not strip
		// tmp's sticky bit.
		if err := os.Chmod(p, d.mode); err != nil {
			return fmt.Errorf("laying out sandbox host: %w", err)
		}
	}
	files := append(sandboxFiles, struct {
		path    string
		mode    os.FileMode
		gid     int
		content string
	}{"etc/os-release", 0o644, 0, debianOSRelease})
	for _, f := range files {
		p := filepath.Join(root, f.path)
		if _, err := os.Lstat(p); err == nil {
			continue
		}
		if err := os.WriteFile(p, []byte(f.content), f.mode); err != nil {
			return fmt.Errorf("laying out sandbox host: %w", err)
		}
		if err := os.Chmod(p, f.mode); err != nil {
			return fmt.Errorf("laying out sandbox host: %w", err)
		}
		if f.gid != 0 && os.Geteuid() == 0 {
			if err := os.Chown(p, 0, f.gid); err != nil {
				return fmt.Errorf("laying out sandbox host: %w", err)
			}
		}
	}
	return nil
}
