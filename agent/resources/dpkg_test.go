package resources

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// The package's golden tests share one -update flag. Whichever test file
// declares it first wins: a package-level flag.Bool in another file is
// initialised before this init runs, and then this one steps aside.
func init() {
	if flag.Lookup("update") == nil {
		flag.Bool("update", false, "rewrite golden files under testdata/")
	}
}

// updatingGolden reports whether the test run was asked to rewrite
// golden files.
func updatingGolden() bool {
	f := flag.Lookup("update")
	return f != nil && f.Value.String() == "true"
}

func TestParseDpkgStatusGolden(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("testdata/dpkg/status")
	if err != nil {
		t.Fatal(err)
	}
	recs, err := parseDpkgStatus(data)
	if err != nil {
		t.Fatalf("parseDpkgStatus(testdata/dpkg/status): %v", err)
	}
	got, err := json.MarshalIndent(recs, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	golden := "testdata/dpkg/status.golden.json"
	if updatingGolden() {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("parseDpkgStatus(testdata/dpkg/status) mismatch (-want +got):\n%s", diff)
	}
}

func TestParseDpkgStatusErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, in, want string }{
		{"no package", "Status: install ok installed\nVersion: 1\n", "line 1: stanza without a Package field"},
		{"bad status", "Package: a\nStatus: install installed\n", "line 2: Status \"install installed\": want three words"},
		{"no colon", "Package: a\nnonsense\n", "line 2: want \"Field: value\""},
		{"stray continuation", " continued\n", "line 1: continuation line outside a stanza"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseDpkgStatus([]byte(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("parseDpkgStatus(%q) = %v, want an error containing %q", tc.in, err, tc.want)
			}
		})
	}
	for _, ok := range []string{"", "\n\n", "package: a\nstatus: install ok installed\nversion: 1\n", "Package: a\r\nStatus: install ok installed\r\n\r\n"} {
		if _, err := parseDpkgStatus([]byte(ok)); err != nil {
			t.Errorf("parseDpkgStatus(%q) = %v, want no error", ok, err)
		}
	}
}

func TestDpkgDBFind(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("testdata/dpkg/status")
	if err != nil {
		t.Fatal(err)
	}
	recs, err := parseDpkgStatus(data)
	if err != nil {
		t.Fatal(err)
	}
	db := newDpkgDB(recs, "amd64")
	for _, tc := range []struct {
		name        string
		found       bool
		arch, state string
	}{
		{"adduser", true, "all", "installed"},
		{"libc6", true, "amd64", "installed"}, // the native instance
		{"libc6:i386", true, "i386", "installed"},
		{"libc6:native", true, "amd64", "installed"},
		{"libc6:arm64", false, "", ""},
		{"nginx-common", true, "all", "config-files"},
		{"broken-tool", true, "amd64", "half-installed"},
		{"man-db", true, "amd64", "triggers-pending"},
		{"removed-tool", true, "amd64", "not-installed"},
		{"nginx", false, "", ""},
	} {
		r, ok := db.find(tc.name)
		if ok != tc.found || r.Arch != tc.arch || r.State != tc.state {
			t.Errorf("find(%q) = %+v, %v; want arch %q state %q, %v", tc.name, r, ok, tc.arch, tc.state, tc.found)
		}
	}
	// A foreign-only instance is still found by its bare name.
	db = newDpkgDB([]dpkgRecord{{Name: "wine32", Arch: "i386", Version: "8.0", Want: "install", Flag: "ok", State: "installed"}}, "amd64")
	if r, ok := db.find("wine32"); !ok || r.Arch != "i386" {
		t.Errorf("find(wine32) = %+v, %v; want the i386 instance", r, ok)
	}
	if got := (dpkgRecord{State: "triggers-awaited"}).installed(); !got {
		t.Error("a package awaiting triggers is not installed")
	}
}

// TestDpkgCache checks that the status file is parsed once for many
// lookups, again after it changes, and that an updates journal entry left
// by an interrupted dpkg run overrides the status file, as it does for dpkg.
func TestDpkgCache(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	status := filepath.Join(root, dpkgStatusPath)
	if err := os.MkdirAll(filepath.Join(root, dpkgUpdatesPath), 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(p, s string) {
		t.Helper()
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var c dpkgCache
	// A root without dpkg has nothing installed.
	db, err := c.load(root)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := db.find("a"); ok {
		t.Error("found a package in a root without a status file")
	}
	write(status, "Package: a\nStatus: install ok installed\nArchitecture: all\nVersion: 1.0\n")
	for range 20 {
		if db, err = c.load(root); err != nil {
			t.Fatal(err)
		}
	}
	if r, _ := db.find("a"); r.Version != "1.0" {
		t.Errorf("find(a) = %+v, want version 1.0", r)
	}
	if c.parses != 2 {
		t.Errorf("parsed the database %d times for 21 loads of 2 versions, want 2", c.parses)
	}
	// A rewrite of the same size within the same clock tick is still seen:
	// the rename gives it a new inode.
	tmp := status + "-new"
	write(tmp, "Package: a\nStatus: install ok installed\nArchitecture: all\nVersion: 2.0\n")
	if err := os.Rename(tmp, status); err != nil {
		t.Fatal(err)
	}
	if db, err = c.load(root); err != nil {
		t.Fatal(err)
	}
	if r, _ := db.find("a"); r.Version != "2.0" {
		t.Errorf("after a rewrite, find(a) = %+v, want version 2.0", r)
	}
	// Directory mtimes can be coarse; make sure the journal changes it.
	time.Sleep(10 * time.Millisecond)
	write(filepath.Join(root, dpkgUpdatesPath, "0000"), "Package: a\nStatus: install reinstreq half-installed\nArchitecture: all\nVersion: 3.0\n")
	write(filepath.Join(root, dpkgUpdatesPath, "tmp.i"), "not a journal entry")
	if db, err = c.load(root); err != nil {
		t.Fatal(err)
	}
	if r, _ := db.find("a"); r.Version != "3.0" || r.State != "half-installed" {
		t.Errorf("with an updates journal, find(a) = %+v, want 3.0 half-installed", r)
	}
	n := c.parses
	c.invalidate()
	if _, err = c.load(root); err != nil || c.parses != n+1 {
		t.Errorf("after invalidate: parses = %d, %v; want %d", c.parses, err, n+1)
	}
}

// TestCompareDebianVersions uses vectors from dpkg's own tests
// (lib/dpkg/t/t-version.c) and from Debian policy §5.6.12.
func TestCompareDebianVersions(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"1.0", "1.0", 0},
		{"0:1.0", "1.0", 0},
		{"1", "0:1", 0},
		{"1.0000-1", "1.0-1", 0},
		{"1.0-0", "1.0", 0},
		{"00:1.0", "1.0", 0},
		{"1.0~rc1", "1.0", -1},
		{"1:0.1", "2.0", 1},
		{"1.0-1", "2.0-2", -1},
		{"2.2~rc-4", "2.2-1", -1},
		{"1.0~", "1.0", -1},
		{"1.0~~", "1.0~", -1},
		{"1.0~~a", "1.0~", -1},
		{"1.0~~", "1.0~~a", -1},
		{"1.0", "1.0a", -1},
		{"1.0a", "1.0+", -1}, // letters sort before other characters
		{"1.0+b1", "1.0", 1},
		{"1.0", "1.0-1", -1},
		{"1.0-1", "1.0-1.1", -1},
		{"1.2.3", "1.2.10", -1},
		{"1.0.0~beta1", "1.0.0~beta2", -1},
		{"2.36-9+deb12u10", "2.36-9+deb12u9", 1},
		{"1:1.0", "1:1.0", 0},
		{"10:1.0", "9:5.0", 1},
		{"99999999999999999999:1", "9:1", 1}, // epochs past int64
		{"1.0-a", "1.0-b", -1},
		{"1.0-1~bpo1", "1.0-1", -1},
		{"0.9", "1.0~rc1", -1},
		{"a", "1", 1}, // refused by dpkg, still ordered
	} {
		if got := compareDebianVersions(tc.a, tc.b); got != tc.want {
			t.Errorf("compareDebianVersions(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
		if got := compareDebianVersions(tc.b, tc.a); got != -tc.want {
			t.Errorf("compareDebianVersions(%q, %q) = %d, want %d", tc.b, tc.a, got, -tc.want)
		}
	}
}

func TestValidDebVersion(t *testing.T) {
	t.Parallel()
	for _, v := range []string{"1.0", "1:2.0-3", "2.36-9+deb12u10", "1.0~rc1", "0.9+git20240101.abc-1~bpo12+1", "1.0-1-2"} {
		if why := validDebVersion(v); why != "" {
			t.Errorf("validDebVersion(%q) = %q, want valid", v, why)
		}
	}
	for _, v := range []string{"", "instaled", "latest2", "1.0 beta", "a:1.0", ":1.0", "1.0-b_1", "-1", "1.0/2"} {
		if why := validDebVersion(v); why == "" {
			t.Errorf("validDebVersion(%q) is valid, want a reason", v)
		}
	}
}

func FuzzParseDpkgStatus(f *testing.F) {
	if data, err := os.ReadFile("testdata/dpkg/status"); err == nil {
		f.Add(data)
	}
	f.Add([]byte("Package: a\nStatus: install ok installed\nVersion: 1\n\n\nPackage: a\nArchitecture: i386\n"))
	f.Add([]byte(" x\n"))
	f.Add([]byte("PACkAge:0:"))
	f.Fuzz(func(t *testing.T, data []byte) {
		recs, err := parseDpkgStatus(data)
		if err != nil {
			return
		}
		for _, r := range recs {
			if r.Name == "" || r.State == "" {
				t.Fatalf("parseDpkgStatus(%q) gave %+v: a record without a name or state", data, r)
			}
		}
		// Whatever parsed, the database built from it answers lookups of
		// the names dpkg allows (a colon would read as name:arch).
		db := newDpkgDB(recs, "amd64")
		for _, r := range recs {
			if strings.Contains(r.Name, ":") {
				continue
			}
			if _, ok := db.find(r.Name); !ok {
				t.Fatalf("find(%q) found nothing in a database that has it", r.Name)
			}
		}
	})
}

func FuzzCompareVersions(f *testing.F) {
	for _, s := range [][2]string{{"1.0~rc1", "1.0"}, {"1:0.1", "2.0"}, {"1.0-1", "1.0-1.1"}, {"", "~"}, {"0:", "00:0"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		ab, ba := compareDebianVersions(a, b), compareDebianVersions(b, a)
		if ab != -ba {
			t.Fatalf("compareDebianVersions(%q, %q) = %d but compareDebianVersions(%q, %q) = %d", a, b, ab, b, a, ba)
		}
		if ab < -1 || ab > 1 {
			t.Fatalf("compareDebianVersions(%q, %q) = %d, want -1, 0 or 1", a, b, ab)
		}
		if c := compareDebianVersions(a, a); c != 0 {
			t.Fatalf("compareDebianVersions(%q, %q) = %d, want 0", a, a, c)
		}
	})
}

// generateDpkgStatus returns a status file like a real host's: n stanzas
// with the fields and multi-line descriptions dpkg writes, the first
// installed ones named pkg-0000, pkg-0001, ….
func generateDpkgStatus(n int) []byte {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "Package: pkg-%04d\n", i)
		fmt.Fprintf(&b, "Status: install ok installed\n")
		fmt.Fprintf(&b, "Priority: optional\nSection: libs\nInstalled-Size: %d\n", 100+i)
		fmt.Fprintf(&b, "Maintainer: Debian Maintainers <maint-%d@lists.debian.org>\n", i%50)
		fmt.Fprintf(&b, "Architecture: amd64\nMulti-Arch: same\nSource: src-%d\n", i/3)
		fmt.Fprintf(&b, "Version: %d.%d.%d-%d+deb12u%d\n", i%7, i%13, i%29, i%5, i%3)
		fmt.Fprintf(&b, "Depends: libc6 (>= 2.36), pkg-%04d (= %d.0)\n", (i+1)%n, i%4)
		if i%4 == 0 {
			fmt.Fprintf(&b, "Conffiles:\n /etc/pkg-%04d/main.conf 0123456789abcdef0123456789abcdef\n", i)
		}
		fmt.Fprintf(&b, "Description: generated package number %d\n", i)
		for l := range 6 {
			fmt.Fprintf(&b, " line %d of a long description, as real packages have, with enough words to weigh.\n", l)
		}
		fmt.Fprintf(&b, "Homepage: https://example.invalid/pkg-%04d\n\n", i)
	}
	return []byte(b.String())
}

func BenchmarkParseDpkgStatus(b *testing.B) {
	data := generateDpkgStatus(2000)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := parseDpkgStatus(data); err != nil {
			b.Fatal(err)
		}
	}
}
