package facts

import (
	"context"
	"errors"
	"io/fs"
	"strings"
)

// collectOS reads os-release(5): /etc/os-release, or /usr/lib/os-release
// where the distribution ships only that one.
func collectOS(_ context.Context, h *host) (Facts, error) {
	b, err := h.readFile("/etc/os-release")
	if errors.Is(err, fs.ErrNotExist) {
		b, err = h.readFile("/usr/lib/os-release")
	}
	if err != nil {
		return nil, err
	}
	rel := parseOSRelease(b)

	full := rel["VERSION_ID"]
	// Debian's os-release says only "12"; the point release is in
	// /etc/debian_version ("12.11"). Testing and sid write a codename there
	// ("trixie/sid"), which is not a version and is left alone.
	if rel["ID"] == "debian" {
		if v, err := h.readLine("/etc/debian_version"); err == nil && isDottedNumber(v) && strings.HasPrefix(v, full) {
			full = v
		}
	}
	major, minor := splitVersion(full)

	name := rel["NAME"]
	if name == "" {
		name = "Linux" // the default os-release(5) gives
	}
	id := rel["ID"]
	if id == "" {
		id = "linux"
	}
	var like []any
	for l := range strings.FieldsSeq(rel["ID_LIKE"]) {
		like = append(like, l)
	}
	if like == nil {
		like = []any{} // a stable shape: conditions may test membership
	}
	codename := rel["VERSION_CODENAME"]
	if codename == "" {
		codename = rel["UBUNTU_CODENAME"]
	}
	return Facts{"os": map[string]any{
		"name":        name,
		"pretty_name": rel["PRETTY_NAME"],
		"id":          id,
		"id_like":     like,
		"family":      osFamily(id, rel["ID_LIKE"]),
		"codename":    codename,
		"release":     map[string]any{"full": full, "major": major, "minor": minor},
	}}, nil
}

// families maps os-release IDs to the family that decides package tools and
// file layout. The ID is tried first, then each ID_LIKE in order.
var families = map[string]string{
	"debian": "debian", "ubuntu": "debian", "raspbian": "debian",
	"rhel": "redhat", "fedora": "redhat", "centos": "redhat",
	"suse": "suse", "sles": "suse", "opensuse": "suse", "opensuse-leap": "suse", "opensuse-tumbleweed": "suse",
	"arch":   "arch",
	"alpine": "alpine",
	"gentoo": "gentoo",
	"void":   "void",
	"nixos":  "nixos",
}

// osFamily derives the family from ID and ID_LIKE. An unknown distribution
// is its own family, so that the fact is never empty.
func osFamily(id, idLike string) string {
	if f, ok := families[id]; ok {
		return f
	}
	for l := range strings.FieldsSeq(idLike) {
		if f, ok := families[l]; ok {
			return f
		}
	}
	return id
}

// parseOSRelease parses os-release(5) text: KEY=value lines in shell
// quoting, with comments and blank lines. Lines it cannot read are skipped,
// as systemd does, because one odd line must not hide the rest.
func parseOSRelease(b []byte) map[string]string {
	m := map[string]string{}
	for line := range strings.SplitSeq(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || !isEnvName(k) {
			continue
		}
		v, ok = unquoteShell(v)
		if !ok {
			continue
		}
		m[k] = v
	}
	return m
}

func isEnvName(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		if c != '_' && (c < 'A' || c > 'Z') && (c < 'a' || c > 'z') && (i == 0 || c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// unquoteShell undoes the subset of shell quoting os-release(5) allows:
// "double quotes" with \" \\ \$ \` escapes, 'single quotes', and bare
// words with backslash escapes. Quoted and bare parts may be adjacent.
func unquoteShell(s string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return "", false
			}
			b.WriteString(s[i+1 : i+1+j])
			i += 1 + j
		case '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte("\"\\$`", s[i+1]) >= 0 {
					i++
				}
				b.WriteByte(s[i])
			}
			if i >= len(s) {
				return "", false
			}
		case '\\':
			if i+1 < len(s) {
				i++
				b.WriteByte(s[i])
			}
		case ' ', '\t':
			// An unquoted blank ends the value; what follows would be a
			// second shell word, which os-release does not allow.
			return b.String(), true
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), true
}

func isDottedNumber(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' {
		return false
	}
	for _, c := range s {
		if c != '.' && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// splitVersion splits "9.3" into "9" and "3", "3.19.1" into "3" and "19".
func splitVersion(v string) (major, minor string) {
	major, rest, _ := strings.Cut(v, ".")
	minor, _, _ = strings.Cut(rest, ".")
	return major, minor
}
