package supervise

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestRotate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		files       map[string]string // suffix ("" for the live file) → content
		max         int64
		keep        int
		wantRotated bool
		want        map[string]string
	}{
		{
			name:  "under the limit",
			files: map[string]string{"": "abc"}, max: 10, keep: 2,
			want: map[string]string{"": "abc"},
		},
		{
			name:  "first rotation",
			files: map[string]string{"": "0123456789"}, max: 10, keep: 2, wantRotated: true,
			want: map[string]string{"": "", ".1": "0123456789"},
		},
		{
			name:  "shift and drop the oldest",
			files: map[string]string{"": "new content", ".1": "older", ".2": "oldest"}, max: 5, keep: 2, wantRotated: true,
			want: map[string]string{"": "", ".1": "new content", ".2": "older"},
		},
		{
			name:  "a gap in the old files",
			files: map[string]string{"": "new content", ".2": "oldest"}, max: 5, keep: 3, wantRotated: true,
			want: map[string]string{"": "", ".1": "new content", ".3": "oldest"},
		},
		{
			name:  "keep none",
			files: map[string]string{"": "new content"}, max: 5, keep: -1, wantRotated: true,
			want: map[string]string{"": ""},
		},
		{
			name:  "no file",
			files: map[string]string{}, max: 5, keep: 2,
			want: map[string]string{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			path := filepath.Join(dir, "svc.stdout.log")
			for suffix, content := range tt.files {
				if err := os.WriteFile(path+suffix, []byte(content), 0o640); err != nil {
					t.Fatal(err)
				}
			}
			rotated, err := rotate(path, tt.max, tt.keep)
			if err != nil || rotated != tt.wantRotated {
				t.Fatalf("rotate = %v, %v; want %v, nil", rotated, err, tt.wantRotated)
			}
			got := map[string]string{}
			ents, _ := os.ReadDir(dir)
			for _, e := range ents {
				b, _ := os.ReadFile(filepath.Join(dir, e.Name()))
				got[strings.TrimPrefix(e.Name(), "svc.stdout.log")] = string(b)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("files after rotate (-want +got):\n%s", diff)
			}
		})
	}
}

// TestRotateAppend checks why logs are opened with O_APPEND: after the
// truncation, a writer holding the file writes at the new end, leaving no
// hole of zeros.
func TestRotateAppend(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "svc.stdout.log")
	w, err := openLog(path)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.WriteString("first line\n")
	if ok, err := rotate(path, 5, 1); !ok || err != nil {
		t.Fatalf("rotate = %v, %v", ok, err)
	}
	w.WriteString("second line\n")
	b, _ := os.ReadFile(path)
	if string(b) != "second line\n" {
		t.Errorf("live file = %q, want only the second line", b)
	}
}
