package agent

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/herdcm/herd/api/herdv1"
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
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseServers(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("ParseServers(%q) = %v, %v; want an error with %q", tc.in, got, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseServers(%q): %v", tc.in, err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ParseServers(%q) (-want +got):\n%s", tc.in, diff)
			}
		})
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

// TestDaemonWatchFollowsFailover: a daemon given [A, B] (two servers of
// one CA and signing key) watches A; when A stops, its Watch stream moves
// to B on the same channel, B's new catalog makes it run at once, and
// that run checks in with B and reports there.
func TestDaemonWatchFollowsFailover(t *testing.T) {
	t.Parallel()
	fsA := newFakeServer(t)
	fsB := &fakeServer{
		t: t, ca: fsA.ca, signKey: fsA.signKey, token: fsA.token, approved: map[string]bool{},
		files: map[string][]byte{}, knownFacts: map[string]bool{}, receipts: map[string]int{},
		watchers: map[chan *herdv1.WatchEvent]bool{},
	}
	fsB.start()
	t.Cleanup(fsB.stop)
	fsA.publish(testCatalog("web-01", "v1", fileRes("/etc/motd", "v1\n")), nil, false)
	a := newTestAgent(t, fsA, func(o *DaemonOptions) {
		o.Server = fsA.addr + "," + fsB.addr
		o.WatchBackoff = 10 * time.Millisecond
	})
	a.start(t)
	a.awaitRun(t, "the first run", anyRun)
	a.settle(t)
	waitFor(t, "a Watch stream on A", func() bool {
		fsA.mu.Lock()
		defer fsA.mu.Unlock()
		return len(fsA.watchers) > 0
	})
	fsA.stop()
	etag := fsB.publish(testCatalog("web-01", "v2", fileRes("/etc/motd", "v2\n")), nil, false)
	r := a.awaitRun(t, "a run triggered by B's Watch", func(r ranRun) bool { return r.why&TriggerWatch != 0 })
	if r.err != nil || r.r == nil || r.r.CatalogDigest != etag {
		t.Fatalf("watch-triggered run: %v, %+v; want B's catalog %s", r.err, r.r, etag)
	}
	waitFor(t, "the run's report on B", func() bool {
		fsB.mu.Lock()
		defer fsB.mu.Unlock()
		return fsB.receipts[r.r.RunID] == 1
	})
}
