package testkit

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// DebSpec describes a Debian binary package for BuildDeb.
type DebSpec struct {
	Name    string // the Package field (required)
	Version string // the Version field (required), e.g. "1.0-1" or "2:1.4~rc1-3"
	Arch    string // the Architecture field; "all" when empty
	// Files are the package's files: absolute path → content.
	Files map[string]string
	// Modes gives some of Files a mode other than 0644.
	Modes map[string]fs.FileMode
	// Depends are the entries of the Depends field, e.g. "libc6 (>= 2.36)".
	Depends []string
	// Conffiles are paths among Files that dpkg keeps on remove and drops
	// on purge, which leaves a removed package in state config-files.
	Conffiles []string
}

// debEpoch is the SOURCE_DATE_EPOCH BuildDeb builds with: dpkg-deb then
// stamps every member and clamps every file time to it, so that the same
// spec always gives the same bytes and the same digest.
const debEpoch = "1700000000"

// BuildDeb builds a real .deb from s with `dpkg-deb --root-owner-group
// --build` in a temporary directory and returns its path and content. The
// calling test is skipped, saying so, only when dpkg-deb is not installed.
func BuildDeb(tb testing.TB, s DebSpec) (file string, content []byte) {
	tb.Helper()
	dpkgDeb, err := exec.LookPath("dpkg-deb")
	if err != nil {
		tb.Skip("dpkg-deb is not installed on this machine (apt-get install dpkg); BuildDeb needs it")
	}
	if s.Name == "" || s.Version == "" {
		tb.Fatalf("BuildDeb: DebSpec needs a Name and a Version, got %+v", s)
	}
	arch := s.Arch
	if arch == "" {
		arch = "all"
	}
	dir := tb.TempDir()
	tree := filepath.Join(dir, "tree")
	write := func(rel string, content string, mode fs.FileMode) {
		p := filepath.Join(tree, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			tb.Fatalf("BuildDeb %s: %v", s.Name, err)
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			tb.Fatalf("BuildDeb %s: %v", s.Name, err)
		}
		// WriteFile's mode passes through the umask; the package must
		// carry exactly the mode asked for.
		if err := os.Chmod(p, mode); err != nil {
			tb.Fatalf("BuildDeb %s: %v", s.Name, err)
		}
	}

	var control strings.Builder
	fmt.Fprintf(&control, "Package: %s\nVersion: %s\nArchitecture: %s\n", s.Name, s.Version, arch)
	fmt.Fprintf(&control, "Maintainer: Herd Tests <tests@herd.invalid>\n")
	if len(s.Depends) > 0 {
		fmt.Fprintf(&control, "Depends: %s\n", strings.Join(s.Depends, ", "))
	}
	fmt.Fprintf(&control, "Description: %s, built by testkit.BuildDeb\n a package built for a herd test.\n", s.Name)
	write("DEBIAN/control", control.String(), 0o644)

	names := make([]string, 0, len(s.Files))
	for name := range s.Files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		clean := path.Clean(name)
		if !path.IsAbs(clean) || clean == "/" || strings.HasPrefix(clean, "/DEBIAN") {
			tb.Fatalf("BuildDeb %s: file %q: want an absolute path outside /DEBIAN", s.Name, name)
		}
		mode := fs.FileMode(0o644)
		if m, ok := s.Modes[name]; ok {
			mode = m
		}
		write(clean, s.Files[name], mode)
	}
	if len(s.Conffiles) > 0 {
		for _, c := range s.Conffiles {
			if _, ok := s.Files[c]; !ok {
				tb.Fatalf("BuildDeb %s: conffile %s is not among Files", s.Name, c)
			}
		}
		write("DEBIAN/conffiles", strings.Join(s.Conffiles, "\n")+"\n", 0o644)
	}

	out := filepath.Join(dir, fmt.Sprintf("%s_%s_%s.deb", s.Name, strings.ReplaceAll(s.Version, ":", "%3a"), arch))
	// gzip rather than the default xz: as portable, and much faster for
	// the many packages a test suite builds.
	cmd := exec.Command(dpkgDeb, "--root-owner-group", "-Zgzip", "--build", tree, out)
	cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH="+debEpoch)
	if msg, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("BuildDeb %s: dpkg-deb --build: %v\n%s", s.Name, err, msg)
	}
	content, err = os.ReadFile(out)
	if err != nil {
		tb.Fatalf("BuildDeb %s: %v", s.Name, err)
	}
	return out, content
}
