package facts

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"time"
)

// pseudoFS are filesystems that hold no data of the host's own: kernel
// interfaces and bookkeeping. Mounts of them are left out unless
// Options.AllMounts, because hosts differ in them only by noise. tmpfs and
// overlay stay: a container's root is overlay, /tmp is often tmpfs.
var pseudoFS = map[string]bool{
	"proc": true, "sysfs": true, "devtmpfs": true, "devpts": true, "cgroup": true, "cgroup2": true,
	"mqueue": true, "debugfs": true, "tracefs": true, "securityfs": true, "pstore": true, "bpf": true,
	"configfs": true, "fusectl": true, "hugetlbfs": true, "autofs": true, "binfmt_misc": true,
	"rpc_pipefs": true, "nsfs": true, "efivarfs": true, "selinuxfs": true, "nfsd": true,
	"fuse.gvfsd-fuse": true, "fuse.portal": true, "ramfs": true,
}

// collectMounts reads /proc/mounts and, on the real host, the size of each
// filesystem. Under a sandbox root sizes are left out: statfs would measure
// this machine's filesystems, not the tree's.
func collectMounts(ctx context.Context, h *host) (Facts, error) {
	b, err := h.readFile("/proc/mounts")
	if err != nil {
		return nil, err
	}
	mounts := map[string]any{}
	for _, m := range parseMounts(b) {
		if !h.opts.AllMounts && (pseudoFS[m.fstype] || underKernelDir(m.point)) {
			continue
		}
		opts := make([]any, len(m.options))
		for i, o := range m.options {
			opts[i] = o
		}
		// A later line for the same point is a mount over the earlier one:
		// the one a path there reaches, so it wins.
		mounts[m.point] = map[string]any{"device": m.device, "fstype": m.fstype, "options": opts}
	}
	if !h.live {
		return Facts{"mounts": mounts}, nil
	}
	return Facts{"mounts": mounts}, addUsage(ctx, mounts)
}

// underKernelDir reports mount points inside /proc, /sys and /dev, which
// belong to the kernel's view of the host rather than to its storage.
func underKernelDir(p string) bool {
	for _, d := range []string{"/proc", "/sys", "/dev"} {
		if p == d || strings.HasPrefix(p, d+"/") {
			return true
		}
	}
	return false
}

// addUsage statfs-es every mount concurrently. A hung network filesystem
// blocks statfs in the kernel, uninterruptibly, so each call gets its own
// goroutine: the others report, and the hung one is named when ctx ends
// (its goroutine returns whenever the kernel lets it go).
func addUsage(ctx context.Context, mounts map[string]any) error {
	// Give up a little before the collector's deadline, so that the
	// mounts that did answer are still reported.
	if dl, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Until(dl)*3/4)
		defer cancel()
	}
	type usage struct {
		point string
		u     fsUsage
		err   error
	}
	ch := make(chan usage, len(mounts)) // buffered: a late answer must not block
	pending := make(map[string]bool, len(mounts))
	for p := range mounts {
		pending[p] = true
		go func() {
			u, err := statfs(p)
			ch <- usage{p, u, err}
		}()
	}
	var errs []error
	for len(pending) > 0 {
		select {
		case r := <-ch:
			delete(pending, r.point)
			switch {
			case r.err == nil:
				m := mounts[r.point].(map[string]any)
				m["size_bytes"], m["used_bytes"], m["available_bytes"] = r.u.size, r.u.used, r.u.avail
			case errors.Is(r.err, syscall.EACCES), errors.Is(r.err, syscall.EPERM), errors.Is(r.err, syscall.ENOENT):
				// Another user's FUSE mount, or one gone since /proc/mounts
				// was read: nothing to report, and nothing wrong.
			default:
				errs = append(errs, fmt.Errorf("statfs %s: %w", r.point, r.err))
			}
		case <-ctx.Done():
			// Results that arrive from now on are dropped: mounts is being
			// returned, and no goroutine may write it any more.
			for _, p := range sortedKeys(pending) {
				errs = append(errs, fmt.Errorf("statfs %s: no answer: %w", p, ctx.Err()))
			}
			return errors.Join(errs...)
		}
	}
	return errors.Join(errs...)
}

// mount is one line of /proc/mounts.
type mount struct {
	device, point, fstype string
	options               []string
}

// parseMounts parses /proc/mounts (fstab(5) format, with the kernel's
// octal escapes for blanks and backslashes in names). Short lines are
// skipped.
func parseMounts(b []byte) []mount {
	var out []mount
	for line := range strings.SplitSeq(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		out = append(out, mount{
			device:  unescapeOctal(f[0]),
			point:   unescapeOctal(f[1]),
			fstype:  f[2],
			options: strings.Split(f[3], ","),
		})
	}
	return out
}

// unescapeOctal undoes the kernel's \ooo escapes (\040 for a space).
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }
