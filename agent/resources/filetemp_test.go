package resources

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestFileSweepsLeftovers simulates an Apply killed between writing its
// temporary file and renaming it: the next run's Check reports the
// leftover (noop changes nothing), Apply removes it without following a
// link, and a user's own dot files beside it survive.
func TestFileSweepsLeftovers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		attrs map[string]any
		// leftover makes what the killed Apply left at the temporary
		// name; out is a directory outside the root.
		leftover func(t *testing.T, p, out string)
	}{
		{"file in sync", map[string]any{"content": "new\n"}, func(t *testing.T, p, out string) {
			writeFile(t, p, "secret old copy\n")
		}},
		{"file to write", map[string]any{"content": "newer\n"}, func(t *testing.T, p, out string) {
			writeFile(t, p, "secret old copy\n")
		}},
		{"link leftover", map[string]any{"ensure": "link", "target": "/etc/other"}, func(t *testing.T, p, out string) {
			if err := os.Symlink(filepath.Join(out, "victim"), p); err != nil {
				t.Fatal(err)
			}
		}},
		{"absent", map[string]any{"ensure": "absent"}, func(t *testing.T, p, out string) {
			writeFile(t, p, "secret old copy\n")
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			readers(t, func(t *testing.T, newFile func() *File) {
				h, _ := newTestHost(t)
				out := outsideDir(t, map[string]string{"victim": "outside\n"})
				etc := filepath.Join(h.Root, "etc")
				if err := os.MkdirAll(etc, 0o755); err != nil {
					t.Fatal(err)
				}
				r := fileRes("/etc/motd", tc.attrs)
				setCatalog(h, r)
				f := newFile()
				if p := mustCheck(t, f, h, r); !p.InSync() {
					if err := f.Apply(context.Background(), h, p); err != nil {
						t.Fatal(err)
					}
				}
				if tc.name == "file to write" {
					writeFile(t, filepath.Join(etc, "motd"), "new\n")
				}
				tmp := filepath.Join(etc, ".herd-tmp-motd")
				// Warm the cache of the directory's temporary names, so
				// that the leftover made below must be noticed by the
				// directory's change, not by a first listing.
				mustCheck(t, f, h, r)
				tc.leftover(t, tmp, out)
				// The random-suffix fallback and the name agents used
				// before the fixed one.
				others := []string{".herd-tmp.k3x9a0.motd", ".herd-motd-3w5e11264sgsf"}
				for _, n := range others {
					writeFile(t, filepath.Join(etc, n), "secret old copy\n")
				}
				keep := []string{".herd-notes", ".herd-tmp-other", ".herd-motd-abc", ".herd-motd-notes-2024", ".herd-tmp-motd.conf", ".herd-tmp.k3x9a0.motd.conf"}
				for _, n := range keep {
					writeFile(t, filepath.Join(etc, n), "mine\n")
				}
				outBefore := treeHash(t, out)

				before := treeHash(t, h.Root)
				p := mustCheck(t, f, h, r)
				if treeHash(t, h.Root) != before {
					t.Fatal("Check changed the root")
				}
				var got []string
				for _, c := range p.Changes {
					if c.Attr == "leftover" && c.Action == Delete {
						got = append(got, c.From)
					}
				}
				want := []string{"/etc/.herd-motd-3w5e11264sgsf", "/etc/.herd-tmp-motd", "/etc/.herd-tmp.k3x9a0.motd"}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Fatalf("Check's leftovers (-want +got):\n%s", diff)
				}
				if err := f.Apply(context.Background(), h, p); err != nil {
					t.Fatalf("Apply: %v", err)
				}
				for _, n := range append(others, ".herd-tmp-motd") {
					if _, err := os.Lstat(filepath.Join(etc, n)); !os.IsNotExist(err) {
						t.Errorf("the leftover %s is still there: %v", n, err)
					}
				}
				for _, n := range keep {
					if _, err := os.Stat(filepath.Join(etc, n)); err != nil {
						t.Errorf("%s was removed: %v", n, err)
					}
				}
				if treeHash(t, out) != outBefore {
					t.Error("the link's target outside the root changed")
				}
				if p := mustCheck(t, f, h, r); !p.InSync() {
					t.Errorf("after Apply: %+v, want in sync", p.Changes)
				}
				entries, _ := os.ReadDir(etc)
				for _, e := range entries {
					if isLeftoverOf(e.Name(), "motd") {
						t.Errorf("a temporary file is left: %s", e.Name())
					}
				}
			})
		})
	}
}

func TestIsLeftoverOf(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, base string
		want       bool
	}{
		{".herd-tmp-motd", "motd", true},
		{".herd-tmp.k3x9a0.motd", "motd", true},
		{".herd-tmp.k3x9a0.motd.conf", "motd", false},
		{".herd-tmp.k3x9a0.motd.conf", "motd.conf", true},
		{".herd-tmp.K3.motd", "motd", false},
		{".herd-tmp-12345678", "tmp", false}, // the fixed name of a file "12345678"
		{".herd-motd-3w5e11264sgsf", "motd", true},
		{".herd-motd-12345678", "motd", true},
		{".herd-notes", "notes", false},
		{".herd-notes", "motd", false},
		{".herd-tmp-motd", "motd.conf", false},
		{".herd-tmp-motd.conf", "motd", false}, // motd.conf's own fixed name
		{".herd-motd-abc", "motd", false},
		{".herd-motd-notes-2024", "motd", false},
		{".herd-motd-Abcdefgh1", "motd", false},
		{".herd-tmp.motd", "motd", false},
		{".herd-x-abcdefgh", "x-abcdefgh", false},
	}
	for _, tc := range tests {
		if got := isLeftoverOf(tc.name, tc.base); got != tc.want {
			t.Errorf("isLeftoverOf(%q, %q) = %v, want %v", tc.name, tc.base, got, tc.want)
		}
	}
}

// TestTempName: names are recognisably ours and fit a directory entry.
func TestTempName(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 255)
	for _, base := range []string{"motd", long, long[:254] + "y"} {
		n := tempName(base)
		if !strings.HasPrefix(n, tempPrefix) || len(n) > 255 {
			t.Errorf("tempName(%.20q…) = %q (%d bytes)", base, n, len(n))
		}
	}
	if tempName(long) == tempName(long[:254]+"y") {
		t.Error("two long names share a temporary name")
	}
}

func writeFile(t *testing.T, p, s string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

// FuzzIsLeftoverOf: the temporary names made for one managed name are
// never taken for another's, and always for its own.
func FuzzIsLeftoverOf(f *testing.F) {
	f.Add("motd", "motd.conf")
	f.Add("tmp", "12345678")
	f.Add("x", "x-abcdefgh")
	f.Add(strings.Repeat("a", 250), strings.Repeat("a", 249)+"b")
	f.Fuzz(func(t *testing.T, a, b string) {
		if a == b || a == "" || b == "" || strings.ContainsAny(a+b, "/\x00") {
			return
		}
		for _, n := range []string{tempName(a), fallbackTempName(a)} {
			if !isLeftoverOf(n, a) {
				t.Errorf("isLeftoverOf(%q, %q) = false for its own temporary", n, a)
			}
			if isLeftoverOf(n, b) && tempKey(a) != tempKey(b) {
				t.Errorf("isLeftoverOf(%q, %q) = true: %q's temporary taken for %q's", n, b, a, b)
			}
		}
	})
}
