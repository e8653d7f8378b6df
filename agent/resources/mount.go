package resources

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"github.com/herdcm/herd/catalogs"
)

// Mount keeps a file system's /etc/fstab entry and, on a real host, its
// mount state (the `mount` resource type).
//
// The entry is the line whose second field is the mount point; only that
// line changes (a duplicate entry for the same mount point is removed),
// every other byte of fstab stays as it was. ensure = mounted (the
// default), present and unmounted keep the entry; absent removes it.
//
// Mount state is managed only when the host root is "/": mounted mounts
// the file system (mount(8) with the entry's device, type and options)
// when /proc/self/mountinfo does not list the mount point, unmounted and
// absent unmount it (umount(8)) when it does. A changed entry of a mounted
// file system takes effect at its next mount; Herd does not remount. Under
// a sandbox root nothing is mounted or unmounted: the kernel's mounts are
// not the sandbox's. A plan that changes the entry there says so ("mount
// state not managed under --root").
//
// The zero Mount is ready to use.
type Mount struct {
	// fstab is the table's path under the host root; tests that mount
	// for real (root "/") point it into a temporary directory. Empty
	// means /etc/fstab.
	fstab string
}

var _ Type = (*Mount)(nil)

// defaultFstab is where the entries live.
const defaultFstab = "/etc/fstab"

// mountSpec is a mount resource, checked.
type mountSpec struct {
	point, device, fstype, options string
	dump, pass                     int64
	ensure                         string
}

// entry is the spec as an fstab line.
func (s *mountSpec) entry() string {
	return strings.Join([]string{fstabEscape(s.device), fstabEscape(s.point), fstabEscape(s.fstype), fstabEscape(s.options), strconv.FormatInt(s.dump, 10), strconv.FormatInt(s.pass, 10)}, "\t")
}

// parseMount checks a mount resource as the agent receives it.
func parseMount(r *catalogs.Resource) (mountSpec, error) {
	s := mountSpec{point: r.Name, device: r.String("device"), fstype: r.String("fstype"), options: r.String("options"), ensure: r.String("ensure")}
	if err := cleanAbs("name", s.point); err != nil {
		return s, err
	}
	if s.ensure == "" {
		s.ensure = "mounted"
	}
	switch s.ensure {
	case "mounted", "present", "unmounted", "absent":
	default:
		return s, fmt.Errorf("ensure %q: want mounted, present, unmounted or absent", s.ensure)
	}
	if s.options == "" {
		s.options = "defaults"
	}
	s.dump, _ = r.Int("dump")
	s.pass, _ = r.Int("pass")
	if s.ensure == "absent" {
		return s, nil
	}
	for _, f := range []struct{ name, v string }{{"device", s.device}, {"fstype", s.fstype}, {"options", s.options}} {
		if f.v == "" || strings.ContainsAny(f.v, "\n\r") || f.name != "device" && strings.ContainsAny(f.v, " \t") {
			return s, fmt.Errorf("%s %q: want one word", f.name, f.v)
		}
	}
	if s.dump < 0 || s.dump > 9 || s.pass < 0 || s.pass > 9 {
		return s, fmt.Errorf("dump %d, pass %d: want numbers from 0 to 9", s.dump, s.pass)
	}
	return s, nil
}

// fstabEntry is one parsed line of fstab.
type fstabEntry struct {
	fields []string // unescaped; nil for a comment, a blank or a short line
}

// parseFstab reads fstab's lines: an entry is a line of at least four
// white-space separated fields (dump and pass default to 0), with \040 and
// the other octal escapes of getmntent decoded. A comment, a blank line or
// anything shorter is no entry and is kept as it is.
func parseFstab(ls []lineSpan) []fstabEntry {
	out := make([]fstabEntry, len(ls))
	for i, l := range ls {
		f := fstabFields(string(l.text))
		if len(f) == 0 || f[0][0] == '#' {
			continue
		}
		if len(f) < 4 {
			continue
		}
		for j := range f {
			f[j] = octalUnescape(f[j])
		}
		for len(f) < 6 {
			f = append(f, "0")
		}
		out[i].fields = f
	}
	return out
}

// fstabFields splits an fstab line as getmntent does: at spaces and
// tabs only (any other byte, a \v say, is part of a field).
func fstabFields(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == '\t' })
}

// octalUnescape decodes the \ooo escapes fstab and mountinfo use for
// white space and backslashes in a field.
func octalUnescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1:i+4]) {
			n, _ := strconv.ParseUint(s[i+1:i+4], 8, 8)
			b.WriteByte(byte(n))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(s string) bool {
	if len(s) != 3 || s[0] > '3' {
		return false
	}
	for i := 0; i < 3; i++ {
		if s[i] < '0' || s[i] > '7' {
			return false
		}
	}
	return true
}

// fstabEscape encodes a field as fstab needs it: white space and
// backslashes as octal escapes (a leading # too, which would make the
// line a comment).
func fstabEscape(s string) string {
	if !strings.ContainsAny(s, " \t\n\r\\") && !strings.HasPrefix(s, "#") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == ' ', c == '\t', c == '\n', c == '\r', c == '\\', c == '#' && i == 0:
			fmt.Fprintf(&b, `\%03o`, c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// sameEntry reports whether an fstab entry says what s says.
func (s *mountSpec) sameEntry(f []string) bool {
	return f[0] == s.device && f[2] == s.fstype && f[3] == s.options &&
		numField(f[4]) == s.dump && numField(f[5]) == s.pass
}

func numField(s string) int64 {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return -1
	}
	return n
}

// editFstab returns fstab's content with the spec's entry in place (or
// removed, for absent) and the change that describes it (nil when fstab
// is already right).
func (s *mountSpec) editFstab(old []byte) ([]byte, *Change) {
	ls := splitText(old)
	entries := parseFstab(ls)
	want := s.entry()
	kept := ls[:0:0]
	var from []string
	placed := false
	for i, l := range ls {
		f := entries[i].fields
		if f == nil || f[1] != s.point {
			kept = append(kept, l)
			continue
		}
		if s.ensure != "absent" && !placed {
			placed = true
			if !s.sameEntry(f) {
				from = append(from, string(l.text))
				l.text = []byte(want)
			}
			kept = append(kept, l)
			continue
		}
		from = append(from, string(l.text)) // absent, or a duplicate
	}
	switch {
	case s.ensure == "absent" && len(from) > 0:
		return joinText(kept), &Change{Attr: "fstab", From: strings.Join(from, "\n"), Action: Delete}
	case s.ensure == "absent":
		return old, nil
	case !placed:
		return joinText(appendLine(kept, want)), &Change{Attr: "fstab", To: want, Action: Create}
	case len(from) > 0:
		return joinText(kept), &Change{Attr: "fstab", From: strings.Join(from, "\n"), To: want, Action: Update}
	}
	return old, nil
}

// mountState is what Check learned and Apply needs.
type mountState struct {
	spec        mountSpec
	fstab       bool // the entry changes
	mount       bool // mount it
	unmount     bool // unmount it
	realHost    bool
	fstabExists bool
}

// realRoot says whether the host root is this machine's own, the only
// one whose mounts Herd manages.
func realRoot(root string) bool {
	return root == "/"
}

// Check reads fstab and, on a real host, the kernel's mounts.
func (m *Mount) Check(ctx context.Context, h *Host, want *catalogs.Resource) (*Plan, error) {
	s, err := parseMount(want)
	if err != nil {
		return nil, err
	}
	tf, err := readText(h.Root, m.fstabPath())
	if err != nil {
		return nil, err
	}
	if err := tf.refuseLink("mount"); err != nil {
		return nil, err
	}
	st := &mountState{spec: s, realHost: realRoot(h.Root), fstabExists: tf.exists}
	p := &Plan{Resource: want, State: st}
	if tf.exists || s.ensure != "absent" {
		next, c := s.editFstab(tf.content)
		if c != nil {
			c.Diff = textDiff(tf.path, tf.exists, tf.content, next)
			p.Changes = append(p.Changes, *c)
			st.fstab = true
		}
	}
	if !st.realHost {
		if st.fstab && (s.ensure == "mounted" || s.ensure == "unmounted") {
			// Said, not hidden: the entry is managed, the mount is not.
			// Marked Converges: nothing a re-check could compare.
			// The note is the whole change, so that every view shows it as
			// it stands ("fstab changed; mount state not managed under
			// --root").
			p.Changes = append(p.Changes, Change{Attr: "mount state not managed under --root", Action: Update, Converges: true})
		}
		return p, nil
	}
	mounted, err := m.mounted(s.point)
	if err != nil {
		return nil, err
	}
	switch {
	case s.ensure == "mounted" && !mounted:
		st.mount = true
		p.Changes = append(p.Changes, Change{Attr: "mounted", From: "unmounted", To: "mounted", Action: Update})
	case (s.ensure == "unmounted" || s.ensure == "absent") && mounted:
		st.unmount = true
		p.Changes = append(p.Changes, Change{Attr: "mounted", From: "mounted", To: "unmounted", Action: Update})
	}
	return p, nil
}

// fstabPath is the table this Mount edits.
func (m *Mount) fstabPath() string {
	if m.fstab != "" {
		return m.fstab
	}
	return defaultFstab
}

// mounted reports whether the kernel lists point as a mount point.
func (m *Mount) mounted(point string) (bool, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false, fmt.Errorf("reading the mounts: %w", err)
	}
	for _, p := range parseMountinfo(b) {
		if p == point {
			return true, nil
		}
	}
	return false, nil
}

// parseMountinfo returns the mount points /proc/self/mountinfo lists (its
// fifth field, unescaped), in order.
func parseMountinfo(b []byte) []string {
	var out []string
	for _, l := range splitText(b) {
		f := fstabFields(string(l.text))
		if len(f) < 5 {
			continue
		}
		out = append(out, octalUnescape(f[4]))
	}
	return out
}

// Apply writes the entry, then mounts or unmounts on a real host: an
// unmount first when the entry goes, so that nothing is left mounted that
// fstab no longer explains.
func (m *Mount) Apply(ctx context.Context, h *Host, p *Plan) error {
	st, ok := p.State.(*mountState)
	if !ok {
		return fmt.Errorf("applying mount: plan has no mount state (%T)", p.State)
	}
	s := &st.spec
	if st.unmount {
		if err := m.run(ctx, h, "/usr/bin/umount", "--", s.point); err != nil {
			return err
		}
	}
	if st.fstab {
		err := editText(ctx, h, m.fstabPath(), "mount", func(old []byte) ([]byte, bool) {
			next, c := s.editFstab(old)
			return next, c != nil
		}, s.ensure != "absent")
		if err != nil {
			return err
		}
	}
	if st.mount {
		fi, err := os.Stat(s.point)
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("mounting %s: the mount point does not exist (manage it with a file resource, ensure = \"directory\")", s.point)
		}
		if err == nil && !fi.IsDir() {
			return fmt.Errorf("mounting %s: the mount point is not a directory", s.point)
		}
		return m.run(ctx, h, "/usr/bin/mount", "-t", s.fstype, "-o", s.options, "--", s.device, s.point)
	}
	return nil
}

// run runs mount or umount through Host.Run and turns a failure into an
// error carrying its output.
func (m *Mount) run(ctx context.Context, h *Host, argv ...string) error {
	res, err := h.Run(ctx, Cmd{Argv: argv})
	if err != nil {
		return fmt.Errorf("%s: %w", strings.Join(argv, " "), err)
	}
	if res.ExitCode != 0 {
		return fmt.Errorf("%s: exit %d: %s", strings.Join(argv, " "), res.ExitCode, strings.TrimSpace(string(res.Output)))
	}
	return nil
}
