package facts

import (
	"context"
	"fmt"
	"os"
	"path"
	"strings"
	"time"
)

// collectTimezone reports the host's zone: its IANA name (from
// /etc/timezone, else the /etc/localtime link), and the abbreviation and UTC
// offset in force now, computed from the host's own tzdata. A host with
// neither file runs in UTC, as glibc and musl assume.
func collectTimezone(_ context.Context, h *host) (Facts, error) {
	name := h.zoneName()
	data, err := h.readFile("/etc/localtime")
	if name != "" && validZoneName(name) {
		// The named file, when there is one, is the zone the name says even
		// if /etc/localtime is a stale copy.
		if b, err2 := h.readFile("/usr/share/zoneinfo/" + name); err2 == nil {
			data, err = b, nil
		}
	}
	tz := map[string]any{"name": name}
	switch {
	case err == nil:
		loc, err := time.LoadLocationFromTZData(name, data)
		if err != nil {
			return Facts{"timezone": tz}, fmt.Errorf("reading zone %q: %w", name, err)
		}
		if name == "" {
			tz["name"] = "localtime" // a copied file names no zone
		}
		abbr, off := h.now.In(loc).Zone()
		tz["abbreviation"], tz["offset"] = abbr, formatOffset(off)
	case name == "" || name == "UTC" || name == "Etc/UTC":
		tz["name"], tz["abbreviation"], tz["offset"] = "UTC", "UTC", "+00:00"
	}
	return Facts{"timezone": tz}, nil
}

// zoneName reads /etc/timezone, else the zone /etc/localtime links to.
func (h *host) zoneName() string {
	if b, err := h.readFile("/etc/timezone"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if line = strings.TrimSpace(line); line != "" && line[0] != '#' {
				return line
			}
		}
	}
	// Resolve /etc but not the link itself: its text is the name.
	target, err := os.Readlink(path.Join(h.path("/etc"), "localtime"))
	if err != nil {
		return ""
	}
	_, name, ok := strings.Cut(target, "zoneinfo/")
	if !ok {
		return ""
	}
	for _, p := range []string{"posix/", "right/"} {
		name = strings.TrimPrefix(name, p)
	}
	return name
}

// validZoneName keeps a name read from the host from reaching outside
// the zoneinfo directory.
func validZoneName(name string) bool {
	return !strings.HasPrefix(name, "/") && !strings.Contains(name, "..") && path.Clean(name) == name
}

// formatOffset writes seconds east of UTC as ±hh:mm.
func formatOffset(secs int) string {
	sign := '+'
	if secs < 0 {
		sign, secs = '-', -secs
	}
	return fmt.Sprintf("%c%02d:%02d", sign, secs/3600, secs%3600/60)
}
