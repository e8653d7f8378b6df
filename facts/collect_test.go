package facts

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.json from what Collect returns")

// fixedNow is the clock for captured trees: timezone offsets and the boot
// time of a tree without btime depend on it.
var fixedNow = time.Date(2025, 1, 15, 12, 0, 0, 0, time.UTC)

// liveFacts are the facts that describe this machine or process even under
// a sandbox root, and so cannot be golden.
var liveFacts = []string{"networking", "identity"}

func TestCollectCapturedTrees(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"debian12", "ubuntu2404", "rocky9", "alpine"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			root, err := filepath.Abs(filepath.Join("testdata", name))
			if err != nil {
				t.Fatal(err)
			}
			f, err := collect(t.Context(), Options{Root: root, AgentVersion: "test"}, fixedNow)
			if err != nil {
				t.Errorf("Collect(%s) error: %v", name, err)
			}
			for _, k := range liveFacts {
				if _, ok := f[k]; !ok {
					t.Errorf("Collect(%s) has no %s fact", name, k)
				}
				delete(f, k)
			}
			got, err := json.MarshalIndent(f, "", "  ")
			if err != nil {
				t.Fatalf("facts do not encode as JSON: %v", err)
			}
			got = append(got, '\n')
			golden := filepath.Join("testdata", name+".golden.json")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), string(got)); diff != "" {
				t.Errorf("Collect(%s) mismatch (-want +got):\n%s", name, diff)
			}
		})
	}
}

// TestCollectRealHost checks that the real host gives sane facts. What the
// values are depends on the machine; that they are there does not.
func TestCollectRealHost(t *testing.T) {
	t.Parallel()
	f, err := Collect(t.Context(), Options{AgentVersion: "test"})
	if err != nil {
		// Some hosts (CI containers) refuse a file or two; say so, but
		// judge the facts.
		t.Logf("Collect() warnings: %v", err)
	}
	checks := []struct {
		name string
		ok   func(any) bool
	}{
		{"os.family", func(v any) bool { s, _ := v.(string); return s != "" }},
		{"kernel.name", func(v any) bool { s, _ := v.(string); return s != "" }},
		{"hostname", func(v any) bool { s, _ := v.(string); return s != "" }},
		{"memory.total_bytes", func(v any) bool { n, _ := v.(int64); return n > 0 }},
		{"processors.count", func(v any) bool { n, _ := v.(int64); return n >= 1 }},
		{"mounts./.fstype", func(v any) bool { s, _ := v.(string); return s != "" }},
		{"mounts./.size_bytes", func(v any) bool { n, _ := v.(int64); return n > 0 }},
		{"uptime.seconds", func(v any) bool { n, _ := v.(int64); return n > 0 }},
		{"identity.uid", func(v any) bool { n, _ := v.(int64); return n == int64(os.Getuid()) }},
		{"networking.interfaces", func(v any) bool { m, _ := v.(map[string]any); return len(m) > 0 }},
		{"herd.version", func(v any) bool { return v == "test" }},
	}
	for _, c := range checks {
		v, ok := f.Lookup(c.name)
		if !ok || !c.ok(v) {
			t.Errorf("Collect() %s = %#v (present %v), want a sane value", c.name, v, ok)
		}
	}
	if _, err := json.Marshal(f); err != nil {
		t.Errorf("facts do not encode as JSON: %v", err)
	}
}

func TestCollectAllMounts(t *testing.T) {
	t.Parallel()
	root, _ := filepath.Abs("testdata/debian12")
	for _, all := range []bool{false, true} {
		f, err := collect(t.Context(), Options{Root: root, Only: []string{"mounts"}, AllMounts: all}, fixedNow)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{"/proc", "/sys/fs/cgroup", "/dev/pts"} {
			if _, ok := f.Lookup("mounts." + p); ok != all {
				t.Errorf("Collect(AllMounts: %v) has mount %s = %v, want %v", all, p, ok, all)
			}
		}
	}
}

func TestCollectOnly(t *testing.T) {
	t.Parallel()
	// An empty root makes every file-based collector fail, so an error
	// would show that a collector ran that should not have.
	empty := t.TempDir()
	tests := []struct {
		only []string
		keys []string
	}{
		{[]string{"herd"}, []string{"herd"}},
		{[]string{"herd.version", "identity.uid"}, []string{"herd", "identity"}},
		{[]string{"fqdn"}, []string{"fqdn"}}, // the hostname collector also makes hostname and domain
		{[]string{"nonesuch"}, nil},
	}
	for _, tt := range tests {
		f, err := Collect(t.Context(), Options{Root: empty, Only: tt.only, AgentVersion: "test"})
		if err != nil {
			t.Errorf("Collect(Only: %q) error: %v", tt.only, err)
		}
		got := sortedKeys(f)
		if diff := cmp.Diff(tt.keys, got, cmpEmptyEqual); diff != "" {
			t.Errorf("Collect(Only: %q) keys mismatch (-want +got):\n%s", tt.only, diff)
		}
	}
}

var cmpEmptyEqual = cmp.Comparer(func(a, b []string) bool { return slices.Equal(a, b) })

// TestCollectEmptyRoot checks that a root without files gives an error per
// file-based collector, naming it, and the facts that need no files.
func TestCollectEmptyRoot(t *testing.T) {
	t.Parallel()
	f, err := Collect(t.Context(), Options{Root: t.TempDir(), AgentVersion: "test"})
	if err == nil {
		t.Fatal("Collect(empty root) error = nil, want errors for missing files")
	}
	if !strings.Contains(err.Error(), "collector os: reading ") {
		t.Errorf("Collect(empty root) error does not name collector os:\n%v", err)
	}
	// A root with no proc or sys tree of its own is a sandbox on this
	// machine's kernel: its kernel-provided facts are this machine's.
	for _, k := range []string{"memory.total_bytes", "processors.count", "uptime.seconds"} {
		if v, ok := f.Lookup(k); !ok || v == int64(0) {
			t.Errorf("Collect(empty root) %s = %v, want this machine's", k, v)
		}
	}
	if strings.Contains(err.Error(), "collector memory") || strings.Contains(err.Error(), "collector processors") {
		t.Errorf("Collect(empty root) failed a kernel-provided collector:\n%v", err)
	}
	for _, k := range []string{"herd", "identity", "kernel", "hostname", "virtual", "timezone"} {
		if _, ok := f[k]; !ok {
			t.Errorf("Collect(empty root) has no %s fact", k)
		}
	}
	if tz, _ := f.Lookup("timezone.name"); tz != "UTC" {
		t.Errorf("Collect(empty root) timezone.name = %v, want UTC", tz)
	}
}

func TestRunCollectorPanicsAndHangs(t *testing.T) {
	t.Parallel()
	h := newHost(Options{Timeout: 50 * time.Millisecond}, fixedNow)
	stuck := make(chan struct{})
	t.Cleanup(func() { close(stuck) }) // let the abandoned goroutine go
	tests := []struct {
		name    string
		fn      func(context.Context, *host) (Facts, error)
		want    Facts
		wantErr string
	}{
		{"ok", func(context.Context, *host) (Facts, error) { return Facts{"a": "b"}, nil }, Facts{"a": "b"}, ""},
		{"partial", func(context.Context, *host) (Facts, error) { return Facts{"a": "b"}, errors.New("one mount") }, Facts{"a": "b"}, "collector partial: one mount"},
		{"panics", func(context.Context, *host) (Facts, error) { panic("boom") }, nil, "collector panics: panic: boom"},
		{"hangs", func(context.Context, *host) (Facts, error) { <-stuck; return Facts{"late": true}, nil }, nil, "collector hangs: timed out after 50ms"},
	}
	for _, tt := range tests {
		start := time.Now()
		r := runCollector(t.Context(), h, tt.name, tt.fn)
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("runCollector(%s) took %v", tt.name, took)
		}
		if diff := cmp.Diff(tt.want, r.facts); diff != "" {
			t.Errorf("runCollector(%s) facts mismatch (-want +got):\n%s", tt.name, diff)
		}
		if got := errString(r.err); !strings.HasPrefix(got, tt.wantErr) {
			t.Errorf("runCollector(%s) error = %q, want prefix %q", tt.name, got, tt.wantErr)
		}
	}
}

func TestRunCollectorPanicNamesLine(t *testing.T) {
	t.Parallel()
	h := newHost(Options{}, fixedNow)
	r := runCollector(t.Context(), h, "x", func(context.Context, *host) (Facts, error) {
		var l []string
		return Facts{"x": l[len(l)-1]}, nil // index out of range
	})
	if got := errString(r.err); !strings.Contains(got, "collect_test.go") {
		t.Errorf("runCollector(panicking) error = %q, want the panicking line named", got)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func BenchmarkCollect(b *testing.B) {
	ctx := context.Background()
	root, _ := filepath.Abs("testdata/debian12")
	for _, bc := range []struct{ name, root string }{{"host", ""}, {"debian12", root}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Collect(ctx, Options{Root: bc.root}); err != nil && bc.root != "" {
					b.Fatal(err)
				}
			}
		})
	}
}
