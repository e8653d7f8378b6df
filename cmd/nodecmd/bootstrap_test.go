package nodecmd

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBootstrapFile: bootstrap adds its settings to the agent.toml the
// package installed, keeping the rest of it and its mode; a setting the
// file has with another value is refused unless force; a file that
// already says everything is left alone.
func TestBootstrapFile(t *testing.T) {
	t.Parallel()
	const pkg = "# the package's agent.toml\n# server = \"herd.example.com:8140\"\n\nroot = \"/\"\ninterval = \"30m\"\n"
	settings := []byte("server = 'a:8140'\nname = 'web-01'\n")
	tests := []struct {
		name     string
		file     string // "" for none
		force    bool
		wantErr  string
		wantSame bool
		want     func(body string) bool
	}{
		{name: "no file", want: func(b string) bool {
			return strings.HasPrefix(b, "# Written by herd-agent bootstrap") && strings.Contains(b, "server = 'a:8140'")
		}},
		{name: "the package's file", file: pkg, want: func(b string) bool {
			return strings.HasSuffix(b, pkg) && strings.Contains(b, "name = 'web-01'\nserver = 'a:8140'\n")
		}},
		{name: "already says it", file: "server = \"a:8140\"\nname = \"web-01\"\ninterval = \"5m\"\n", wantSame: true},
		{name: "another server", file: "server = \"b:8140\"\n", wantErr: "server = a:8140 here, b:8140 in the file"},
		{name: "another server, forced", file: "server = \"b:8140\"\n", force: true, want: func(b string) bool {
			return !strings.Contains(b, "b:8140") && strings.Contains(b, "a:8140")
		}},
		{name: "not TOML", file: "server = \n", wantErr: "does not read as TOML"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "agent.toml")
			if tt.file != "" {
				if err := os.WriteFile(path, []byte(tt.file), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			body, same, err := bootstrapFile(path, settings, tt.force)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "--force") {
					t.Fatalf("bootstrapFile = %v, want an error with %q naming --force", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if same != tt.wantSame {
				t.Errorf("same = %v, want %v", same, tt.wantSame)
			}
			if tt.want != nil && !tt.want(string(body)) {
				t.Errorf("body:\n%s", body)
			}
			if same || tt.file == "" {
				return
			}
			if err := writeConfigFile(path, body); err != nil {
				t.Fatal(err)
			}
			if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("agent.toml mode after bootstrap = %v, %v; want the 0600 it had", fi.Mode().Perm(), err)
			}
		})
	}
}
