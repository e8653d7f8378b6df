package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestDescribeVersion(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 12, 3, 14, 5, 12, 0, time.FixedZone("CET", 3600))
	for _, tc := range []struct{ desc, want, err string }{
		{"v1.2.3", "1.2.3", ""},
		{"1.2.3", "1.2.3", ""},
		{"v1.2.3-rc1", "1.2.3~rc1", ""},
		{"v1.2.3-4-gabc1234", "1.2.3+git20261203130512.abc1234", ""},
		{"v1.2.3-rc1-4-gabc1234", "1.2.3~rc1+git20261203130512.abc1234", ""},
		{"abc1234", "0.0.0~git20261203130512.abc1234", ""},
		{"abc1234-dirty", "0.0.0~git20261203130512.abc1234.dirty", ""},
		{"v1.2.3-4-gabc1234-dirty", "1.2.3+git20261203130512.abc1234.dirty", ""},
		{"v1.2.3-dirty", "1.2.3+dirty", ""},
		{"", "", "not a tag or a commit"},
		{"release-2026", "", "not a Debian version"},
		{"v1.2.3_final", "", "not a Debian version"},
		{"v1.2 3", "", "not a Debian version"},
	} {
		got, err := DescribeVersion(tc.desc, at)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("DescribeVersion(%q) = %q, %v; want an error saying %q", tc.desc, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("DescribeVersion(%q) = %q, %v; want %q", tc.desc, got, err, tc.want)
		}
	}
}

// TestVersionsSort checks with dpkg itself that the versions made from
// one history sort as the history goes.
func TestVersionsSort(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("dpkg"); err != nil {
		t.Skip("dpkg is not installed: it is the judge of Debian version order")
	}
	day := time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)
	history := []struct {
		desc string
		at   time.Time
	}{
		{"abc1234", day},
		{"bcd2345", day.Add(time.Hour)},
		{"v0.9.0-rc1", day.Add(2 * time.Hour)},
		{"v0.9.0-rc1-1-gcde3456", day.Add(3 * time.Hour)},
		{"v0.9.0", day.Add(4 * time.Hour)},
		{"v0.9.0-dirty", day.Add(4 * time.Hour)},
		{"v0.9.0-1-gdef4567", day.Add(5 * time.Hour)},
		{"v0.9.0-1-gdef4567-dirty", day.Add(5 * time.Hour)},
		{"v0.9.0-2-gef05678", day.Add(24 * time.Hour)},
		{"v0.10.0", day.Add(48 * time.Hour)},
	}
	prev := ""
	for _, h := range history {
		v, err := DescribeVersion(h.desc, h.at)
		if err != nil {
			t.Fatalf("DescribeVersion(%q): %v", h.desc, err)
		}
		if prev != "" {
			if err := exec.Command("dpkg", "--compare-versions", prev, "lt", v).Run(); err != nil {
				t.Errorf("dpkg says %s (before %s) is not older than %s", prev, h.desc, v)
			}
		}
		prev = v
	}
}

func TestCheckVersion(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"1.0.0", "1.0.0"}, {"v2.1.0-beta2", "2.1.0~beta2"}, {" 3.0 ", "3.0"},
		{"", ""}, {"v", ""}, {"latest", ""}, {"1.0/../x", ""}, {"1:2.0", ""},
	} {
		got, err := CheckVersion(tc.in)
		if tc.want == "" {
			if err == nil {
				t.Errorf("CheckVersion(%q) = %q, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("CheckVersion(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

// FuzzDescribeVersion: whatever git describe prints (a tag is anybody's
// text), the result is refused or a version dpkg would take, and it is
// never a path or an option.
func FuzzDescribeVersion(f *testing.F) {
	for _, s := range []string{"v1.2.3", "abc1234-dirty", "v1-2-gabcd", "--help", "../../etc", "v1.2.3-4-gabc1234-dirty", "0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, desc string) {
		v, err := DescribeVersion(desc, time.Unix(0, 0))
		if err != nil {
			return
		}
		if !debVersion.MatchString(v) || strings.ContainsAny(v, "/-_ ") {
			t.Fatalf("DescribeVersion(%q) = %q: not a plain Debian version", desc, v)
		}
	})
}

func TestFindTree(t *testing.T) {
	t.Parallel()
	top := t.TempDir()
	deep := filepath.Join(top, "cmd", "herd-pkg")
	if err := os.MkdirAll(deep, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(top, "go.mod"), []byte("module github.com/herdcm/herd\n\ngo 1.26.8\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Its own go.mod, of another module, is passed over.
	if err := os.WriteFile(filepath.Join(deep, "go.mod"), []byte("module github.com/herdcm/herd/cmd/herd-pkg\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := FindTree(deep); err != nil || got != top {
		t.Errorf("FindTree(%s) = %q, %v; want %s", deep, got, err, top)
	}
	if got, err := FindTree(t.TempDir()); err == nil {
		t.Errorf("FindTree(an empty directory) = %q, want an error", got)
	}
}

// TestGlibcNeeded reads this host's env, a C program linked with glibc.
func TestGlibcNeeded(t *testing.T) {
	t.Parallel()
	env, err := exec.LookPath("env")
	if err != nil {
		t.Skip("no env program to read")
	}
	got, err := GlibcNeeded(env)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(got, "2.") || !isDotted(got) {
		t.Errorf("GlibcNeeded(%s) = %q, want a 2.x version", env, got)
	}
	if _, err := GlibcNeeded(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("GlibcNeeded(a missing file) succeeded")
	}
	for _, tc := range []struct {
		a, b string
		want int
	}{{"2.34", "2.4", 1}, {"2.3.4", "2.3", 1}, {"2.17", "2.17", 0}, {"2.2.5", "2.34", -1}} {
		if got := compareDotted(tc.a, tc.b); got != tc.want {
			t.Errorf("compareDotted(%s, %s) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}
