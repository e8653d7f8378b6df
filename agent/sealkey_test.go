package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadSealKey(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "tls")
	k, err := LoadSealKey(dir)
	if err != nil {
		t.Fatalf("LoadSealKey on a fresh directory: %v", err)
	}
	p := filepath.Join(dir, sealKeyFile)
	fi, err := os.Stat(p)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the key file: %v, mode %v; want 0600", err, fi.Mode())
	}
	again, err := LoadSealKey(dir)
	if err != nil || !again.Equal(k) {
		t.Fatalf("LoadSealKey again = %v; want the same key", err)
	}
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, p string)
		want  string
	}{
		{"readable by others", func(t *testing.T, p string) { os.Chmod(p, 0o644) }, "chmod 600"},
		{"a symbolic link", func(t *testing.T, p string) {
			other := filepath.Join(t.TempDir(), "k")
			os.Rename(p, other)
			os.Symlink(other, p)
		}, "not a regular file"},
		{"garbage", func(t *testing.T, p string) { os.WriteFile(p, []byte("nope"), 0o600) }, "no PRIVATE KEY"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			if _, err := LoadSealKey(dir); err != nil {
				t.Fatal(err)
			}
			tc.setup(t, filepath.Join(dir, sealKeyFile))
			if _, err := LoadSealKey(dir); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("LoadSealKey = %v, want an error saying %q", err, tc.want)
			}
		})
	}
}
