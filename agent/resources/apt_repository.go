package resources

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"strings"
	"unicode"

	"github.com/herdcm/herd/catalogs"
	"golang.org/x/sys/unix"
)

// AptRepository is the apt_repository resource type: one apt source in
// deb822 form, etc/apt/sources.list.d/<name>.sources, and its signing key
// in etc/apt/keyrings/<name>.asc (ASCII-armored) or .gpg (binary), which
// the source names with Signed-By. apt-key is never used: a key trusted
// for one repository is trusted for that repository only.
//
// Check reads both files in process and starts no process. apt-get update
// is not this type's: the package type runs it, once per run, before the
// first install by name whenever a source is newer than apt's last update
// (aptlists.go), and the compiler orders every package without a source
// after every apt_repository of the catalog.
//
// In a sandbox root, Signed-By names the key by its path on this machine
// (ROOT/etc/apt/keyrings/…): apt run with -o Dir=ROOT reads Signed-By as
// written, and the sandbox's apt must find the sandbox's key.
type AptRepository struct{}

var _ Type = (*AptRepository)(nil)

// maxAptKey bounds a signing key: real ones are kilobytes.
const maxAptKey = 1 << 20

// aptRepoName is what a repository's name may be: it becomes two file
// names, and apt ignores sources.list.d files with other characters.
var aptRepoName = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*$`)

// aptRepoState is what Check hands Apply.
type aptRepoState struct {
	absent      bool
	sourcesRel  string // etc/apt/sources.list.d/<name>.sources
	sources     []byte // what it should hold
	keyRel      string // etc/apt/keyrings/<name>.asc|.gpg, "" without a key
	keyDigest   string
	keySource   string // the key's path in the site, for messages
	writeSrc    bool
	writeKey    bool
	removeFiles []string // what ensure = absent removes, or a stale key
}

// Check compares the source file and the key with want.
func (t *AptRepository) Check(_ context.Context, h *Host, want *catalogs.Resource) (*Plan, error) {
	name := want.Name
	if !aptRepoName.MatchString(name) {
		return nil, fmt.Errorf("checking apt_repository %q: the name must be letters, digits, _ . - (it names files)", name)
	}
	root := pkgRoot(h)
	st := &aptRepoState{sourcesRel: "etc/apt/sources.list.d/" + name + ".sources"}
	plan := &Plan{Resource: want}
	switch e := want.String("ensure"); e {
	case "", "present":
	case "absent":
		st.absent = true
	default:
		return nil, fmt.Errorf("checking apt_repository %s: ensure %q: want present or absent", name, e)
	}
	if k := want.String("key"); k != "" {
		ext := path.Ext(k)
		if ext != ".asc" && ext != ".gpg" {
			return nil, fmt.Errorf("checking apt_repository %s: key %q: want a .asc (ASCII-armored) or .gpg (binary) file", name, k)
		}
		st.keyRel = "etc/apt/keyrings/" + name + ext
		st.keySource, st.keyDigest = k, want.String("key_digest")
		if st.keyDigest == "" {
			return nil, fmt.Errorf("checking apt_repository %s: key %s has no digest in the catalog", name, k)
		}
	}
	if st.absent {
		for _, rel := range []string{st.sourcesRel, "etc/apt/keyrings/" + name + ".asc", "etc/apt/keyrings/" + name + ".gpg"} {
			if _, err := lstatInRoot(root, rel); err == nil {
				plan.Changes = append(plan.Changes, Change{Attr: "ensure", From: "/" + rel, To: "absent", Action: Delete})
				st.removeFiles = append(st.removeFiles, rel)
			} else if !errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("checking apt_repository %s: %w", name, err)
			}
		}
		if len(plan.Changes) > 0 {
			plan.State = st
		}
		return plan, nil
	}
	src, err := aptSources(root, want, st.keyRel)
	if err != nil {
		return nil, fmt.Errorf("checking apt_repository %s: %w", name, err)
	}
	st.sources = src
	have, fst, err := readInRoot(root, st.sourcesRel, maxAptKey)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		plan.Changes = append(plan.Changes, Change{Attr: "ensure", From: "absent", To: "/" + st.sourcesRel, Action: Create})
		st.writeSrc = true
	case err != nil:
		return nil, fmt.Errorf("checking apt_repository %s: %w", name, err)
	default:
		if !bytes.Equal(have, src) {
			plan.Changes = append(plan.Changes, aptFieldChanges(have, src, "/"+st.sourcesRel)...)
			st.writeSrc = true
		} else if fst.Mode&0o7777 != 0o644 {
			plan.Changes = append(plan.Changes, Change{Attr: "mode", From: formatMode(fst.Mode & 0o7777), To: "0644", Action: Update})
			st.writeSrc = true
		}
	}
	// A key of the other kind (.asc for .gpg, or any when the source has
	// no key now) is a key apt no longer needs: remove it.
	for _, ext := range []string{".asc", ".gpg"} {
		rel := "etc/apt/keyrings/" + name + ext
		if rel == st.keyRel {
			continue
		}
		if _, err := lstatInRoot(root, rel); err == nil {
			plan.Changes = append(plan.Changes, Change{Attr: "old key", From: "/" + rel, To: "absent", Action: Delete})
			st.removeFiles = append(st.removeFiles, rel)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("checking apt_repository %s: %w", name, err)
		}
	}
	if st.keyRel != "" {
		kb, kst, err := readInRoot(root, st.keyRel, maxAptKey)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			plan.Changes = append(plan.Changes, Change{Attr: "key", From: "absent", To: st.keyDigest, Action: Create})
			st.writeKey = true
		case err != nil:
			return nil, fmt.Errorf("checking apt_repository %s: %w", name, err)
		case catalogs.Digest(kb) != st.keyDigest:
			plan.Changes = append(plan.Changes, Change{Attr: "key", From: catalogs.Digest(kb), To: st.keyDigest, Action: Update})
			st.writeKey = true
		case kst.Mode&0o7777 != 0o644:
			plan.Changes = append(plan.Changes, Change{Attr: "key mode", From: formatMode(kst.Mode & 0o7777), To: "0644", Action: Update})
			st.writeKey = true
		}
	}
	if len(plan.Changes) > 0 {
		plan.State = st
	}
	return plan, nil
}

// Apply writes the key, then the source (so apt never sees a source whose
// key is missing), or removes both.
func (t *AptRepository) Apply(ctx context.Context, h *Host, p *Plan) error {
	st, ok := p.State.(*aptRepoState)
	if !ok {
		return fmt.Errorf("applying %s: the plan has no state", p.Resource.ID)
	}
	root := pkgRoot(h)
	rfd, err := openDirInRoot(root, ".", false)
	if err != nil {
		return fmt.Errorf("applying %s: opening the root: %w", p.Resource.ID, err)
	}
	r, err := rootAt(rfd)
	unix.Close(rfd)
	if err != nil {
		return fmt.Errorf("applying %s: %w", p.Resource.ID, err)
	}
	defer r.Close()
	for _, rel := range st.removeFiles {
		if err := r.Remove(rel); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("removing /%s: %w", rel, err)
		}
	}
	if st.absent {
		return nil
	}
	write := func(rel string, fill func(io.Writer) error) error {
		dir, base := splitRel(rel)
		if err := r.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("writing /%s: %w", rel, err)
		}
		d, err := r.OpenRoot(dir)
		if err != nil {
			return fmt.Errorf("writing /%s: %w", rel, err)
		}
		defer d.Close()
		if err := (fileWrite{mode: 0o644, uid: -1, gid: -1, fill: fill}).into(d, base); err != nil {
			return fmt.Errorf("writing /%s: %w", rel, err)
		}
		return nil
	}
	if st.writeKey {
		err := write(st.keyRel, func(w io.Writer) error {
			return copySource(ctx, h, &fileSpec{source: st.keySource, digest: st.keyDigest}, w)
		})
		if err != nil {
			return err
		}
	}
	if st.writeSrc {
		return write(st.sourcesRel, func(w io.Writer) error {
			_, err := w.Write(st.sources)
			return err
		})
	}
	return nil
}

// lstatInRoot stats rel under root without following its last element.
func lstatInRoot(root, rel string) (unix.Stat_t, error) {
	var st unix.Stat_t
	dir, base := splitRel(rel)
	fd, err := openDirInRoot(root, dir, false)
	if err != nil {
		return st, err
	}
	defer unix.Close(fd)
	if err := unix.Fstatat(fd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return st, &fs.PathError{Op: "lstat", Path: rel, Err: err}
	}
	return st, nil
}

// aptSources renders the resource's deb822 source. Every value is checked
// again here (the compiler checks them first), so that no catalog can add
// a field or a stanza with a line break.
func aptSources(root string, r *catalogs.Resource, keyRel string) ([]byte, error) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Managed by Herd (apt_repository:%s); edits here are put back.\n", r.Name)
	b.WriteString("Types: deb\n")
	for _, f := range []struct {
		field, attr string
		required    bool
	}{
		{"URIs", "uris", true},
		{"Suites", "suites", true},
		{"Components", "components", false},
		{"Architectures", "architectures", false},
	} {
		vs := slices.Clone(r.Strings(f.attr)) // a copy: the URIs may be rewritten below
		if len(vs) == 0 {
			if f.required {
				return nil, fmt.Errorf("%s: want at least one", f.attr)
			}
			continue
		}
		for i, v := range vs {
			if !aptWord(v) {
				return nil, fmt.Errorf("%s: %q is not one word", f.attr, v)
			}
			if f.attr == "uris" {
				vs[i] = aptURIInRoot(root, v)
			}
		}
		fmt.Fprintf(&b, "%s: %s\n", f.field, strings.Join(vs, " "))
	}
	if keyRel != "" {
		signedBy := "/" + keyRel
		if pkgSandbox(root) {
			signedBy = path.Join(root, keyRel)
		}
		fmt.Fprintf(&b, "Signed-By: %s\n", signedBy)
	}
	return b.Bytes(), nil
}

// aptURIInRoot returns a file: URI of a sandbox root as the path on this
// machine inside the root (file:/srv/repo → file:ROOT/srv/repo), for the
// reason Signed-By names ROOT's key: apt run with -o Dir=ROOT reads a
// file: URI as a path of this machine, and the sandbox's repository (a
// tree the site copied into it) is under ROOT. The path is cleaned as if
// ROOT were "/" first, so that .. cannot leave it. Other URIs, and every
// URI on the real host, are returned as they are.
func aptURIInRoot(root, uri string) string {
	rest, ok := strings.CutPrefix(uri, "file:")
	if !ok || !pkgSandbox(root) {
		return uri
	}
	// file:///srv/repo and file:/srv/repo name the same path.
	if strings.HasPrefix(rest, "///") {
		rest = rest[2:]
	}
	if !strings.HasPrefix(rest, "/") {
		return uri
	}
	return "file:" + path.Join(root, path.Clean(rest))
}

// aptWord reports whether v can be one word of a deb822 list field:
// printable, without spaces, control characters or #.
func aptWord(v string) bool {
	if v == "" {
		return false
	}
	for _, c := range v {
		if c == '#' || unicode.IsSpace(c) || !unicode.IsGraphic(c) {
			return false
		}
	}
	return true
}

// aptFieldChanges describes how a source file differs field by field, as
// "URIs http://a → http://b", or as one content diff when either side is
// not one deb822 stanza.
func aptFieldChanges(have, want []byte, name string) []Change {
	hs, herr := parseDeb822(have)
	ws, werr := parseDeb822(want)
	if herr == nil && werr == nil && len(hs) == 1 && len(ws) == 1 {
		var out []Change
		keys := map[string]bool{}
		for _, s := range []deb822Stanza{hs[0], ws[0]} {
			for _, f := range s {
				keys[f.Name] = true
			}
		}
		names := make([]string, 0, len(keys))
		for k := range keys {
			names = append(names, k)
		}
		slices.Sort(names)
		for _, k := range names {
			hv, hok := hs[0].get(k)
			wv, wok := ws[0].get(k)
			switch {
			case hok && !wok:
				out = append(out, Change{Attr: k, From: hv, Action: Delete})
			case !hok && wok:
				out = append(out, Change{Attr: k, To: wv, Action: Create})
			case hv != wv:
				out = append(out, Change{Attr: k, From: hv, To: wv, Action: Update})
			}
		}
		if len(out) > 0 {
			return out
		}
	}
	// Only comments or layout differ, or the file is not one stanza.
	return []Change{{Attr: "content", Diff: UnifiedDiff(name, name, string(have), string(want)), Action: Update}}
}

// deb822Field is one field of a deb822 stanza.
type deb822Field struct{ Name, Value string }

// deb822Stanza is one paragraph of a deb822 file, fields in their order.
type deb822Stanza []deb822Field

// get returns the value of the field named n (case-insensitive, as apt
// matches them).
func (s deb822Stanza) get(n string) (string, bool) {
	for _, f := range s {
		if strings.EqualFold(f.Name, n) {
			return f.Value, true
		}
	}
	return "", false
}

// parseDeb822 parses a deb822 file as apt reads sources: paragraphs
// separated by blank lines, "Field: value" lines, continuation lines
// (starting with a space or tab) appended to the field before them with
// a newline, comment lines (#) ignored. A line that is neither, a field
// without a name, or a continuation with no field before it is an error
// naming the line.
func parseDeb822(data []byte) ([]deb822Stanza, error) {
	var out []deb822Stanza
	var cur deb822Stanza
	n := 0
	for line := range strings.Lines(string(data)) {
		n++
		line = strings.TrimRight(line, "\r\n")
		switch {
		case strings.TrimSpace(line) == "":
			if len(cur) > 0 {
				out = append(out, cur)
				cur = nil
			}
		case line[0] == '#':
		case line[0] == ' ' || line[0] == '\t':
			if len(cur) == 0 {
				return nil, fmt.Errorf("line %d: a continuation line with no field before it", n)
			}
			v := strings.TrimSpace(line)
			if v == "." {
				v = ""
			}
			cur[len(cur)-1].Value += "\n" + v
		default:
			name, value, ok := strings.Cut(line, ":")
			if !ok || name == "" || strings.ContainsAny(name, " \t") {
				return nil, fmt.Errorf("line %d: want \"Field: value\"", n)
			}
			if _, dup := cur.get(name); dup {
				return nil, fmt.Errorf("line %d: field %s given twice", n, name)
			}
			cur = append(cur, deb822Field{Name: name, Value: strings.TrimSpace(value)})
		}
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out, nil
}
