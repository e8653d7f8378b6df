package resources

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/herdcm/herd/catalogs"
)

// Sysctl keeps a kernel parameter (the `sysctl` resource type) at its
// value live, by writing <root>/proc/sys/<name with dots as slashes>, and,
// with persist (the default), across reboots in
// /etc/sysctl.d/60-herd-<name>.conf, a file Herd owns whole (mode 0644,
// root). persist = false removes that file.
//
// Check reads the live value and the file, and compares the value as
// sysctl prints it: runs of white space (the tabs of net.ipv4.tcp_rmem)
// count as one space. No command runs: the live value is a file of
// /proc/sys on a real host, a plain file in a sandbox root (where nothing
// reaches the kernel). A sandbox root without a proc/sys directory has
// only the persisted file managed, and a plan that changes it says "live
// value not managed under --root", as mount does for its mount state.
//
// The zero Sysctl is ready to use.
type Sysctl struct{}

var _ Type = (*Sysctl)(nil)

// sysctlState is what Check learned and Apply needs.
type sysctlState struct {
	name, value string
	live        bool // the live value must be written
	file        *textFile
	fileChanges bool
	want        []byte
	persist     bool
}

// sysctlLivePath is the parameter's file under /proc/sys.
func sysctlLivePath(name string) string {
	return "proc/sys/" + strings.ReplaceAll(name, ".", "/")
}

// sysctlConfPath is the parameter's file under /etc/sysctl.d.
func sysctlConfPath(name string) string {
	return "/etc/sysctl.d/60-herd-" + name + ".conf"
}

// normalizeSysctl is a value as sysctl compares it: its words separated
// by one space.
func normalizeSysctl(v string) string { return strings.Join(strings.Fields(v), " ") }

// Check reads the live value and the persisted file.
func (s *Sysctl) Check(ctx context.Context, h *Host, want *catalogs.Resource) (*Plan, error) {
	if err := catalogs.SysctlName(want.Name); err != nil {
		return nil, fmt.Errorf("name: %w", err)
	}
	value := want.String("value")
	if normalizeSysctl(value) == "" || strings.ContainsAny(value, "\n\r") {
		return nil, fmt.Errorf("value %q: want one non-empty line", value)
	}
	st := &sysctlState{name: want.Name, value: normalizeSysctl(value), persist: !want.Has("persist") || want.Bool("persist")}
	p := &Plan{Resource: want, State: st}

	live := sysctlLivePath(want.Name)
	b, _, err := readInRoot(h.Root, live, 1<<20)
	unmanaged := false
	switch {
	case errors.Is(err, fs.ErrNotExist) && !realRoot(h.Root) && !sysctlTree(h.Root):
		// A sandbox root with no proc/sys of its own: nothing there
		// reaches a kernel, so only the persisted file is managed, and
		// a plan that changes it says so.
		unmanaged = true
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("no kernel parameter %s (/%s does not exist: a missing module, or a name from another kernel)", want.Name, live)
	case err != nil:
		return nil, fmt.Errorf("reading %s: %w", want.Name, err)
	default:
		if have := normalizeSysctl(string(b)); have != st.value {
			st.live = true
			p.Changes = append(p.Changes, Change{Attr: "value", From: have, To: st.value, Action: Update})
		}
	}

	if st.file, err = readText(h.Root, sysctlConfPath(want.Name)); err != nil {
		return nil, err
	}
	if st.persist {
		st.want = []byte(fmt.Sprintf("# Managed by herd (sysctl:%s): changes made here are put back.\n%s = %s\n", want.Name, want.Name, st.value))
	}
	cs := ownedFileChanges(st.file, st.want, st.persist)
	for i := range cs {
		cs[i].Attr = "persist " + cs[i].Attr
	}
	st.fileChanges = len(cs) > 0
	p.Changes = append(p.Changes, cs...)
	if unmanaged && st.fileChanges {
		// Said, not hidden; nothing a re-check could compare (as a
		// mount's state under --root).
		p.Changes = append(p.Changes, Change{Attr: "live value not managed under --root", Action: Update, Converges: true})
	}
	return p, nil
}

// sysctlTree reports whether the root has a proc/sys directory: a
// sandbox that provides one (a test's plain files) has its live values
// managed like a host's.
func sysctlTree(root string) bool {
	fi, err := os.Lstat(filepath.Join(root, "proc", "sys"))
	return err == nil && fi.IsDir()
}

// Apply writes the live value and the persisted file.
func (s *Sysctl) Apply(ctx context.Context, h *Host, p *Plan) error {
	st, ok := p.State.(*sysctlState)
	if !ok {
		return fmt.Errorf("applying sysctl: plan has no sysctl state (%T)", p.State)
	}
	if st.live {
		if err := writeSysctl(h.Root, sysctlLivePath(st.name), st.value); err != nil {
			return fmt.Errorf("setting %s: %w", st.name, err)
		}
	}
	if st.fileChanges {
		return applyOwnedFile(ctx, h, st.file, st.want, st.persist)
	}
	return nil
}

// writeSysctl writes a value to the parameter's file, opened by the one
// resolution policy (never created: a parameter the kernel lacks is an
// error, not a new file). O_TRUNC matters only to a sandbox's plain file.
func writeSysctl(root, rel, value string) error {
	fd, err := openInRoot(root, rel, unix.O_WRONLY|unix.O_TRUNC|unix.O_NOCTTY|unix.O_NONBLOCK, false)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), rel)
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fmt.Errorf("/%s is not a regular file", rel)
	}
	// One write: the kernel parses what one write gives it.
	if _, err := f.Write([]byte(value + "\n")); err != nil {
		return err
	}
	return f.Close()
}
