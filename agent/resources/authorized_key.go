package resources

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"sync"

	"github.com/herdcm/herd/catalogs"
	"golang.org/x/sys/unix"
)

// AuthorizedKey is the authorized_key resource type: one public key in a
// user's ~/.ssh/authorized_keys.
//
// The resource's name is the key's label, written as the line's comment;
// a line is the resource's when it holds the same key (type and base64),
// whatever its options or comment say, so a key added by hand and then
// put under Herd is adopted rather than doubled. Every other line (other
// keys, comments, blank lines, lines that are not keys) stays byte for
// byte, unless purge = true: then every key of that user that no present
// authorized_key resource of the catalog names is removed, so the file
// holds exactly the keys Herd manages for the user. Purge is the key
// resource's, not the user type's, so that one type owns the file.
//
// The home comes from the root's etc/passwd. It is resolved as the host
// resolves it, inside the root (a home that is a link to /elsewhere is
// ROOT/elsewhere); .ssh and authorized_keys belong to the user, who may
// have made them links anywhere, so they are never followed: a link there
// is an error. .ssh is created 0700 and the file written 0600, both owned
// by the user, atomically (a temporary file beside it, then a rename).
//
// Several keys of one user share the file and the engine runs resources in
// parallel, so Apply takes a lock and edits the file as it is then, never
// the copy its Check read: one key's Apply never loses another's line.
// Check reads the root's etc/passwd and the file in process and spawns
// nothing.
type AuthorizedKey struct{}

var _ Type = (*AuthorizedKey)(nil)

// maxAuthorizedKeys bounds what is read of an authorized_keys file: a
// real one is kilobytes, and its owner may have made it anything.
const maxAuthorizedKeys = 4 << 20

// authorizedKeysMu serialises the edits of authorized_keys files: the keys
// of one user edit one file.
var authorizedKeysMu sync.Mutex

// akWant is an authorized_key resource, checked.
type akWant struct {
	user    string
	typ     string
	blob    string
	line    string // the line the file should hold, without its newline
	absent  bool
	purge   bool
	managed []string // with purge: "type blob" of every present key of the user
}

// akState is what Check hands Apply.
type akState struct {
	want    akWant
	homeRel string // the home, relative to the root
	uid     int
	gid     int
}

// Check compares the user's authorized_keys with want.
func (t *AuthorizedKey) Check(_ context.Context, h *Host, want *catalogs.Resource) (*Plan, error) {
	w, err := akParse(h, want)
	if err != nil {
		return nil, err
	}
	plan := &Plan{Resource: want}
	root := accountRoot(h)
	u, found, err := LookupUser(root, w.user)
	if err != nil {
		return nil, fmt.Errorf("checking authorized_key %s: %w", want.Name, err)
	}
	if !found {
		if w.absent {
			return plan, nil
		}
		return nil, fmt.Errorf("checking authorized_key %s: user %q is not in the root's etc/passwd", want.Name, w.user)
	}
	st := &akState{want: w, uid: u.ID, gid: u.GID}
	if st.homeRel, err = akHomeRel(u); err != nil {
		return nil, fmt.Errorf("checking authorized_key %s: %w", want.Name, err)
	}
	cur, err := akRead(root, st.homeRel)
	if err != nil {
		if w.absent && errors.Is(err, fs.ErrNotExist) {
			return plan, nil
		}
		return nil, fmt.Errorf("checking authorized_key %s: %w", want.Name, err)
	}
	_, changes := akEdit(cur.content, w)
	if cur.dir == nil && w.absent {
		return plan, nil
	}
	plan.Changes = changes
	keysPath := path.Join(u.Home, ".ssh/authorized_keys")
	switch {
	case cur.dir == nil:
		plan.Changes = append([]Change{{Attr: "ensure", From: "absent", To: path.Join(u.Home, ".ssh") + " (0700)", Action: Create}}, plan.Changes...)
	case w.absent && len(plan.Changes) == 0:
		// Nothing of this key is left: the file is not this resource's
		// to keep.
	default:
		plan.Changes = append(plan.Changes, akOwnership(".ssh", cur.dir, 0o700, u)...)
		if cur.file != nil {
			plan.Changes = append(plan.Changes, akOwnership(keysPath, cur.file, 0o600, u)...)
		}
	}
	if len(plan.Changes) > 0 {
		plan.State = st
	}
	return plan, nil
}

// akOwnership says how a path's owner and mode differ from the user's and
// mode.
func akOwnership(what string, st *unix.Stat_t, mode uint32, u Account) []Change {
	var out []Change
	if have := st.Mode & 0o7777; have != mode {
		out = append(out, Change{Attr: what + " mode", From: formatMode(have), To: formatMode(mode), Action: Update})
	}
	if int(st.Uid) != u.ID || int(st.Gid) != u.GID {
		out = append(out, Change{Attr: what + " owner", From: fmt.Sprintf("%d:%d", st.Uid, st.Gid), To: fmt.Sprintf("%d:%d", u.ID, u.GID), Action: Update})
	}
	return out
}

// Apply edits the file as it is now, under the lock.
func (t *AuthorizedKey) Apply(_ context.Context, h *Host, p *Plan) error {
	st, ok := p.State.(*akState)
	if !ok {
		return fmt.Errorf("applying %s: the plan has no state", p.Resource.ID)
	}
	authorizedKeysMu.Lock()
	defer authorizedKeysMu.Unlock()
	root := accountRoot(h)
	doing := "writing the authorized_keys of " + st.want.user
	homeFD, err := openDirInRoot(root, st.homeRel, false)
	if err != nil {
		return fmt.Errorf("%s: opening the home: %w", doing, err)
	}
	defer unix.Close(homeFD)
	switch err := unix.Mkdirat(homeFD, ".ssh", 0o700); {
	case err == nil:
		if err := unix.Fchownat(homeFD, ".ssh", st.uid, st.gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("%s: chown .ssh: %w", doing, err)
		}
	case !errors.Is(err, unix.EEXIST):
		return fmt.Errorf("%s: creating .ssh: %w", doing, err)
	}
	// O_NOFOLLOW: the user may have swapped .ssh for a link since Check.
	sshFD, err := unix.Openat(homeFD, ".ssh", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("%s: opening .ssh (a symbolic link is never followed): %w", doing, err)
	}
	defer unix.Close(sshFD)
	if err := unix.Fchown(sshFD, st.uid, st.gid); err != nil {
		return fmt.Errorf("%s: chown .ssh: %w", doing, err)
	}
	if err := unix.Fchmod(sshFD, 0o700); err != nil {
		return fmt.Errorf("%s: chmod .ssh: %w", doing, err)
	}
	cur, _, err := akReadAt(sshFD)
	if err != nil {
		return fmt.Errorf("%s: %w", doing, err)
	}
	next, _ := akEdit(cur, st.want)
	dir, err := rootAt(sshFD)
	if err != nil {
		return fmt.Errorf("%s: %w", doing, err)
	}
	defer dir.Close()
	w := fileWrite{mode: 0o600, uid: st.uid, gid: st.gid, fill: func(w io.Writer) error {
		_, err := io.WriteString(w, next)
		return err
	}}
	if err := w.into(dir, "authorized_keys"); err != nil {
		return fmt.Errorf("%s: %w", doing, err)
	}
	return nil
}

// akParse reads and checks the resource's attributes. The compiler checks
// them fully; this guards the file against a line break or a bad key
// whatever the catalog's origin.
func akParse(h *Host, r *catalogs.Resource) (akWant, error) {
	w := akWant{user: r.String("user"), purge: r.Bool("purge")}
	bad := func(format string, args ...any) (akWant, error) {
		return akWant{}, fmt.Errorf("checking authorized_key %s: %s", r.Name, fmt.Sprintf(format, args...))
	}
	switch e := r.String("ensure"); e {
	case "", "present":
	case "absent":
		w.absent = true
	default:
		return bad("ensure %q: want present or absent", e)
	}
	if w.user == "" || strings.ContainsAny(w.user, ":/\n\x00") {
		return bad("user %q is not a valid account name", w.user)
	}
	typ, blob, err := catalogs.SplitPublicKey(r.String("key"))
	if err != nil {
		return bad("key: %v", err)
	}
	w.typ, w.blob = typ, blob
	label := r.Name
	if strings.ContainsAny(label, "\n\r\x00") {
		return bad("the name must be one line")
	}
	opts := r.Strings("options")
	for _, o := range opts {
		if err := catalogs.CheckKeyOption(o); err != nil {
			return bad("options: %v", err)
		}
	}
	w.line = typ + " " + blob
	if len(opts) > 0 {
		w.line = strings.Join(opts, ",") + " " + w.line
	}
	if label != "" {
		w.line += " " + label
	}
	if w.purge && h.Catalog != nil {
		for i := range h.Catalog.Resources {
			o := &h.Catalog.Resources[i]
			if o.Type != "authorized_key" || o.String("user") != w.user || o.String("ensure") == "absent" {
				continue
			}
			if t, b, err := catalogs.SplitPublicKey(o.String("key")); err == nil {
				w.managed = append(w.managed, t+" "+b)
			}
		}
	}
	if w.purge && !w.absent {
		w.managed = append(w.managed, typ+" "+blob)
	}
	return w, nil
}

// akHomeRel returns the user's home relative to the root.
func akHomeRel(u Account) (string, error) {
	if !path.IsAbs(u.Home) {
		return "", fmt.Errorf("user %s has no absolute home in etc/passwd (%q)", u.Name, u.Home)
	}
	rel := strings.TrimPrefix(path.Clean(u.Home), "/")
	if rel == "" {
		rel = "."
	}
	return rel, nil
}

// akCurrent is what Check found on the host: .ssh and the file's stats
// (nil when missing) and the file's content.
type akCurrent struct {
	dir, file *unix.Stat_t
	content   string
}

// akRead reads the user's .ssh/authorized_keys under root. The home is
// resolved inside the root; .ssh and the file are never followed when
// they are links. A missing home is fs.ErrNotExist.
func akRead(root, homeRel string) (akCurrent, error) {
	var cur akCurrent
	homeFD, err := openDirInRoot(root, homeRel, false)
	if err != nil {
		return cur, fmt.Errorf("opening the home /%s: %w", homeRel, err)
	}
	defer unix.Close(homeFD)
	var dst unix.Stat_t
	switch err := unix.Fstatat(homeFD, ".ssh", &dst, unix.AT_SYMLINK_NOFOLLOW); {
	case errors.Is(err, unix.ENOENT):
		return cur, nil
	case err != nil:
		return cur, fmt.Errorf("stat .ssh: %w", err)
	case dst.Mode&unix.S_IFMT == unix.S_IFLNK:
		return cur, fmt.Errorf("/%s/.ssh is a symbolic link: refusing to follow it", homeRel)
	case dst.Mode&unix.S_IFMT != unix.S_IFDIR:
		return cur, fmt.Errorf("/%s/.ssh is not a directory", homeRel)
	}
	cur.dir = &dst
	sshFD, err := unix.Openat(homeFD, ".ssh", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return cur, fmt.Errorf("opening /%s/.ssh: %w", homeRel, err)
	}
	defer unix.Close(sshFD)
	content, fst, err := akReadAt(sshFD)
	if err != nil {
		return cur, fmt.Errorf("/%s/.ssh: %w", homeRel, err)
	}
	cur.file, cur.content = fst, content
	return cur, nil
}

// akReadAt reads authorized_keys in the directory sshFD, refusing a link
// or anything but a regular file; a missing file is empty (stat nil).
func akReadAt(sshFD int) (string, *unix.Stat_t, error) {
	fd, err := unix.Openat(sshFD, "authorized_keys", unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	switch {
	case errors.Is(err, unix.ENOENT):
		return "", nil, nil
	case errors.Is(err, unix.ELOOP):
		return "", nil, errors.New("authorized_keys is a symbolic link: refusing to follow it")
	case err != nil:
		return "", nil, fmt.Errorf("opening authorized_keys: %w", err)
	}
	f := os.NewFile(uintptr(fd), "authorized_keys")
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return "", nil, fmt.Errorf("stat authorized_keys: %w", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return "", nil, errors.New("authorized_keys is not a regular file")
	}
	b, err := io.ReadAll(io.LimitReader(f, maxAuthorizedKeys+1))
	if err != nil {
		return "", nil, fmt.Errorf("reading authorized_keys: %w", err)
	}
	if len(b) > maxAuthorizedKeys {
		return "", nil, fmt.Errorf("authorized_keys is larger than %d bytes", maxAuthorizedKeys)
	}
	return string(b), &st, nil
}

// akEdit returns content edited to hold w (its one line, or none when
// absent; with purge, no key the catalog does not manage) and the changes
// that makes. Every line it has no reason to touch is kept byte for byte.
func akEdit(content string, w akWant) (string, []Change) {
	var b strings.Builder
	var changes []Change
	placed := false
	for line := range strings.Lines(content) {
		body, nl := strings.CutSuffix(line, "\n")
		k, ok := ParseKeyLine(body)
		switch {
		case ok && k.Type == w.typ && k.Blob == w.blob:
			if w.absent || placed {
				changes = append(changes, Change{Attr: "key", From: akDescribe(k.Type, k.Blob, k.Comment), Action: Delete})
				continue
			}
			placed = true
			if body != w.line {
				changes = append(changes, Change{Attr: "key", From: body, To: w.line, Action: Update})
				line = w.line
				if nl {
					line += "\n"
				}
			}
		case ok && w.purge && !slices.Contains(w.managed, k.Type+" "+k.Blob):
			changes = append(changes, Change{Attr: "purge", From: akDescribe(k.Type, k.Blob, k.Comment), Action: Delete})
			continue
		}
		b.WriteString(line)
	}
	if !placed && !w.absent {
		if s := b.String(); s != "" && !strings.HasSuffix(s, "\n") {
			b.WriteString("\n")
		}
		b.WriteString(w.line + "\n")
		changes = append([]Change{{Attr: "key", To: akDescribe(w.typ, w.blob, ""), Action: Create}}, changes...)
	}
	return b.String(), changes
}

// akDescribe names a key for a change the way ssh-keygen -l does: its type
// and SHA256 fingerprint, and its comment.
func akDescribe(typ, blob, comment string) string {
	s := typ
	if raw, err := base64.StdEncoding.DecodeString(blob); err == nil {
		sum := sha256.Sum256(raw)
		s += " SHA256:" + base64.RawStdEncoding.EncodeToString(sum[:])
	}
	if comment != "" {
		s += " " + comment
	}
	return s
}

// KeyLine is one key line of an authorized_keys file.
type KeyLine struct {
	Options string // as written, "" when none
	Type    string
	Blob    string // the base64 key
	Comment string
}

// ParseKeyLine parses one line of an authorized_keys file (without its
// newline) as sshd does: optional options (a comma-separated list, double
// quotes protecting spaces and commas, a backslash escaping a quote inside
// them), then the key type, the base64 key and an optional comment. A blank
// line, a comment line, or anything else that is not a key is ok = false.
func ParseKeyLine(line string) (k KeyLine, ok bool) {
	s := strings.TrimLeft(strings.TrimSuffix(line, "\r"), " \t")
	if s == "" || s[0] == '#' {
		return k, false
	}
	first := s
	if i := strings.IndexAny(s, " \t"); i >= 0 {
		first = s[:i]
	}
	if !catalogs.KnownKeyType(first) {
		quoted := false
		i := 0
		for ; i < len(s); i++ {
			c := s[i]
			if quoted && c == '\\' && i+1 < len(s) && s[i+1] == '"' {
				i++
				continue
			}
			if c == '"' {
				quoted = !quoted
				continue
			}
			if !quoted && (c == ' ' || c == '\t') {
				break
			}
		}
		if quoted || i == len(s) {
			return k, false
		}
		k.Options = s[:i]
		s = strings.TrimLeft(s[i:], " \t")
	}
	fields := strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == '\t' })
	if len(fields) < 2 || !catalogs.KnownKeyType(fields[0]) || !isBase64(fields[1]) {
		return KeyLine{}, false
	}
	k.Type, k.Blob = fields[0], fields[1]
	// The comment is the rest of the line after the key, as written.
	rest := strings.TrimLeft(s[len(fields[0]):], " \t")
	k.Comment = strings.TrimLeft(rest[len(fields[1]):], " \t")
	return k, true
}

func isBase64(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '=') {
			return false
		}
	}
	return true
}
