package nodecmd

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/cobra"
)

// TestServerListConfig: agent.toml's server takes one address or a list,
// flags win over it, and a bad entry is an error naming the file and the
// setting.
func TestServerListConfig(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		file    string   // agent.toml
		flags   []string // --server values
		want    ServerList
		wantErr string
	}{
		{name: "default", file: "", want: ServerList{defaultAgentServer}},
		{name: "string", file: `server = "a:8140"`, want: ServerList{"a:8140"}},
		{name: "list", file: `server = ["a:8140", "b:8140"]`, want: ServerList{"a:8140", "b:8140"}},
		{name: "string with commas", file: `server = "a:8140,b:8140"`, want: ServerList{"a:8140", "b:8140"}},
		{name: "flag wins", file: `server = ["a:8140"]`, flags: []string{"c:1"}, want: ServerList{"c:1"}},
		{name: "flag repeated", flags: []string{"c:1", "d:2,e:3"}, want: ServerList{"c:1", "d:2", "e:3"}},
		{name: "flag repeats an address", flags: []string{"c:1", "c:1"}, wantErr: `server address 2 "c:1": listed twice`},
		{name: "flag bad", flags: []string{"c"}, wantErr: `server address 1 "c": want host:port`},
		{name: "empty list", file: `server = []`, wantErr: "server: no server address"},
		{name: "not a string", file: `server = ["a:8140", 8140]`, wantErr: "server: entry 2 is a int64"},
		{name: "commas in an entry", file: `server = ["a:8140,b:8140"]`, wantErr: `server: entry 1 "a:8140,b:8140": one address per entry`},
		{name: "bad port", file: `server = ["a:8140", "b:x"]`, wantErr: `server: server address 2 "b:x": bad port "x"`},
		{name: "a table", file: "[server]\nhost = \"a\"", wantErr: `server: want "host:port" or a list of them`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := agentConfig{Server: ServerList{defaultAgentServer}}
			cmd := &cobra.Command{}
			ServerFlag(cmd.Flags(), &cfg.Server, "")
			path := filepath.Join(t.TempDir(), "agent.toml")
			if err := os.WriteFile(path, []byte(tc.file+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			var err error
			for _, v := range tc.flags {
				if err = cmd.Flags().Set("server", v); err != nil {
					break
				}
			}
			fromFile := err == nil
			if fromFile {
				err = ApplyConfigFile(cmd, path, &cfg)
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("server from %q and %q: %v; want an error with %q", tc.file, tc.flags, err, tc.wantErr)
				}
				if fromFile && !strings.Contains(err.Error(), path) {
					t.Errorf("error %q does not name the file %s", err, path)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, cfg.Server); diff != "" {
				t.Errorf("server from %q and %q (-want +got):\n%s", tc.file, tc.flags, diff)
			}
		})
	}
}

// TestServerListRoundTrip: what bootstrap writes reads back the same.
func TestServerListRoundTrip(t *testing.T) {
	t.Parallel()
	for _, l := range []ServerList{{"a:8140"}, {"a:8140", "[::1]:8140", "10.0.0.5:1"}} {
		b, err := l.MarshalTOML()
		if err != nil {
			t.Fatal(err)
		}
		var got ServerList
		if err := got.UnmarshalTOML(b); err != nil {
			t.Fatalf("UnmarshalTOML(%s): %v", b, err)
		}
		if diff := cmp.Diff(l, got); diff != "" {
			t.Errorf("%s read back (-want +got):\n%s", b, diff)
		}
	}
}

// FuzzServerListTOML: agent.toml's server never panics the decoder, and
// what it accepts bootstrap writes back to the same list.
func FuzzServerListTOML(f *testing.F) {
	for _, s := range []string{`"a:8140"`, `["a:8140", "b:1"]`, `[]`, `[1]`, `"a:8140,b:1"`, `{host = "a"}`, `["a:8140,b:1"]`, `'[::1]:8140'`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		var l ServerList
		if err := l.UnmarshalTOML([]byte(raw)); err != nil {
			return
		}
		b, err := l.MarshalTOML()
		if err != nil {
			t.Fatal(err)
		}
		var again ServerList
		if err := again.UnmarshalTOML(b); err != nil || !cmp.Equal(l, again) {
			t.Fatalf("%s read %q, written as %s, read back %q, %v", raw, l, b, again, err)
		}
	})
}
