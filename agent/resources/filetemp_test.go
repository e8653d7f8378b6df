package resources

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
				tc.leftover(t, tmp, out)
				writeFile(t, filepath.Join(etc, ".herd-notes"), "mine\n")
				writeFile(t, filepath.Join(etc, ".herd-tmp-other"), "another file's\n")
				outBefore := treeHash(t, out)

				before := treeHash(t, h.Root)
				p := mustCheck(t, f, h, r)
				if treeHash(t, h.Root) != before {
					t.Fatal("Check changed the root")
				}
				found := false
				for _, c := range p.Changes {
					if c.Attr == "leftover" && c.From == "/etc/.herd-tmp-motd" && c.Action == Delete {
						found = true
					}
				}
				if !found {
					t.Fatalf("Check did not report the leftover: %+v", p.Changes)
				}
				if err := f.Apply(context.Background(), h, p); err != nil {
					t.Fatalf("Apply: %v", err)
				}
				if _, err := os.Lstat(tmp); !os.IsNotExist(err) {
					t.Errorf("the leftover is still there: %v", err)
				}
				for _, keep := range []string{".herd-notes", ".herd-tmp-other"} {
					if _, err := os.Stat(filepath.Join(etc, keep)); err != nil {
						t.Errorf("%s was removed: %v", keep, err)
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
					if strings.HasPrefix(e.Name(), ".herd-tmp-motd") {
						t.Errorf("a temporary file is left: %s", e.Name())
					}
				}
			})
		})
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
