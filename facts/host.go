package facts

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"
)

// host is what collectors read from: the real host or a sandbox root.
type host struct {
	opts Options
	root string // cleaned; "/" for the real host
	live bool   // root is the real host: syscalls describe it too
	// sharedKernel says the root has neither a proc nor a sys tree of its
	// own: it is a sandbox on this machine's kernel, so its /proc and /sys
	// are this machine's, as in a chroot that mounts them. A captured tree
	// brings its own and is read as it is.
	sharedKernel bool
	now          time.Time
	timeout      time.Duration
}

func newHost(opts Options, now time.Time) *host {
	root := "/"
	if opts.Root != "" {
		// Absolute, so that messages name real paths and scripts, which
		// run in "/", get a HERD_ROOT they can use.
		if abs, err := filepath.Abs(opts.Root); err == nil {
			root = abs
		} else {
			root = filepath.Clean(opts.Root)
		}
	}
	t := opts.Timeout
	if t <= 0 {
		t = DefaultTimeout
	}
	h := &host{opts: opts, root: root, live: root == "/", now: now, timeout: t}
	if !h.live {
		h.sharedKernel = !isDir(filepath.Join(root, "proc")) && !isDir(filepath.Join(root, "sys"))
	}
	return h
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// path returns where the host's absolute path p is on this machine. Under a
// sandbox root, symlinks are resolved as if root were "/", the way chroot
// would: captured trees hold absolute links (etc/localtime →
// /usr/share/zoneinfo/…) that must not escape to the machine's own files.
func (h *host) path(p string) string {
	if h.live {
		return p
	}
	if h.sharedKernel && (strings.HasPrefix(p, "/proc/") || strings.HasPrefix(p, "/sys/")) {
		return p
	}
	return resolveIn(h.root, p)
}

// readFile reads the host's file p. The error names the file as it was read.
func (h *host) readFile(p string) ([]byte, error) {
	file := h.path(p)
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", file, pathErrCause(err))
	}
	return b, nil
}

// readHead reads at most n bytes of the host's file p. /proc/cpuinfo is
// generated per CPU as it is read, so a reader that needs only the first
// CPU's lines should not pay for a hundred.
func (h *host) readHead(p string, n int) ([]byte, error) {
	file := h.path(p)
	fh, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", file, pathErrCause(err))
	}
	defer fh.Close()
	b := make([]byte, n)
	m, err := io.ReadFull(fh, b)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("reading %s: %w", file, pathErrCause(err))
	}
	return b[:m], nil
}

// readLine reads a one-line file such as proc/sys/kernel/osrelease.
func (h *host) readLine(p string) (string, error) {
	b, err := h.readFile(p)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// exists reports whether the host's path p exists (without following a
// final symlink's target out of the root).
func (h *host) exists(p string) bool {
	_, err := os.Lstat(h.path(p))
	return err == nil
}

// pathErrCause drops the *fs.PathError wrapper, whose path we already name.
func pathErrCause(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// resolveIn resolves name under root as chroot(root) would, following
// symlinks (absolute ones from root) and never climbing above root.
// A component that does not exist ends the walk: the rest is joined as is,
// and opening the result fails with the usual error.
func resolveIn(root, name string) string {
	const maxLinks = 40 // as the kernel's MAXSYMLINKS
	rest := strings.Split(name, "/")
	resolved := "" // relative to root, clean, never above it
	for links := 0; len(rest) > 0; {
		c := rest[0]
		rest = rest[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			resolved = path.Dir(resolved)
			if resolved == "." {
				resolved = ""
			}
			continue
		}
		next := path.Join(resolved, c)
		fi, err := os.Lstat(filepath.Join(root, next))
		if err != nil || fi.Mode()&fs.ModeSymlink == 0 || links >= maxLinks {
			resolved = next
			if err != nil {
				return filepath.Join(root, resolved, path.Join(rest...))
			}
			continue
		}
		links++
		target, err := os.Readlink(filepath.Join(root, next))
		if err != nil {
			return filepath.Join(root, next, path.Join(rest...))
		}
		if path.IsAbs(target) {
			resolved = ""
		}
		rest = append(strings.Split(target, "/"), rest...)
	}
	return filepath.Join(root, resolved)
}
