package agent

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseServers(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in      string
		want    []string
		wantErr string // a part of the error; "" for none
	}{
		{in: "herd.example.com:8140", want: []string{"herd.example.com:8140"}},
		{in: "a:8140,b:8140", want: []string{"a:8140", "b:8140"}},
		{in: " a:8140 , [::1]:8140 ,10.0.0.5:1", want: []string{"a:8140", "[::1]:8140", "10.0.0.5:1"}},
		{in: "", wantErr: "no server address"},
		{in: "  ", wantErr: "no server address"},
		{in: "a:8140,", wantErr: `server address 2 "": empty`},
		{in: "a:8140,,b:8140", wantErr: `server address 2 "": empty`},
		{in: "a", wantErr: `server address 1 "a": want host:port`},
		{in: "::1:8140", wantErr: "want host:port"},
		{in: ":8140", wantErr: "no host"},
		{in: "a:0", wantErr: `bad port "0"`},
		{in: "a:65536", wantErr: `bad port "65536"`},
		{in: "a:http", wantErr: `bad port "http"`},
		{in: "a b:8140", wantErr: `the host has " "`},
		{in: "a\x00:8140", wantErr: `the host has "\x00"`},
		{in: "a/b:8140", wantErr: `the host has "/"`},
		{in: "h\"st:8140", wantErr: `the host has "\""`},
		{in: "hé:8140", wantErr: `the host has "é"`},
		{in: "a:8140,b:8140,a:8140", wantErr: `server address 3 "a:8140": listed twice`},
	} {
		got, err := ParseServers(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseServers(%q) = %v, %v; want an error with %q", tc.in, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseServers(%q): %v", tc.in, err)
			continue
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("ParseServers(%q) (-want +got):\n%s", tc.in, diff)
		}
	}
}

// FuzzParseServers: the list parser never panics, and what it accepts
// is a list of distinct, trimmed host:port entries that parses again to
// itself.
func FuzzParseServers(f *testing.F) {
	for _, s := range []string{"a:8140", "a:8140,b:8140", "[::1]:8140", " a:1 ,b:2", ",", "a:8140,a:8140", "[::1", "a:99999", "h\t:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseServers(s)
		if err != nil {
			return
		}
		if len(got) == 0 {
			t.Fatalf("ParseServers(%q) accepted an empty list", s)
		}
		seen := map[string]bool{}
		for _, a := range got {
			if a != strings.TrimSpace(a) || strings.Contains(a, ",") || seen[a] {
				t.Fatalf("ParseServers(%q) = %q: entry %q is untrimmed, has a comma or repeats", s, got, a)
			}
			seen[a] = true
		}
		again, err := ParseServers(strings.Join(got, ","))
		if err != nil || !cmp.Equal(got, again) {
			t.Fatalf("ParseServers(%q) = %q, which parses again to %q, %v", s, got, again, err)
		}
	})
}
