package nodecmd

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/herdcm/herd/agent"
)

// TestWriteSummary: one summary for every path — the verb tells the
// truth (converged only when nothing failed or was skipped), the
// duration is human, and each failed resource shows its source line and
// the first lines of its error.
func TestWriteSummary(t *testing.T) {
	t.Parallel()
	const commit = "0123456789abcdef0123456789abcdef01234567"
	many := &agent.Report{Node: "n", RunID: "r", Version: commit, Duration: time.Second}
	for i := range 12 {
		many.Events = append(many.Events, agent.Event{ID: fmt.Sprintf("exec:e%02d", i), Status: agent.Failed, Error: "boom"})
	}
	many.Summary = agent.Summary{Resources: 12, Failed: 12}
	tests := []struct {
		name string
		r    *agent.Report
		want string
	}{
		{"converged", &agent.Report{Node: "web-01", RunID: "01J", Version: commit, Duration: 115_234_567 * time.Nanosecond,
			Summary: agent.Summary{Resources: 3, InSync: 2, Changed: 1}},
			"converged web-01 in 115ms: 3 resources, 2 in sync, 1 changed, 0 failed, 0 skipped (site 0123456789ab, run 01J)\n"},
		{"a dirty git checkout", &agent.Report{Node: "n", RunID: "r", Version: commit + "+dirty.abcdef012345", Summary: agent.Summary{Resources: 1, InSync: 1}},
			"converged n in 0s: 1 resources, 1 in sync, 0 changed, 0 failed, 0 skipped (site 0123456789ab+dirty.abcdef012345, run r)\n"},
		{"a failure is not converged", &agent.Report{Node: "web-01", RunID: "01J", Version: commit, Duration: 2345 * time.Millisecond,
			Summary: agent.Summary{Resources: 3, InSync: 1, Failed: 1, Skipped: 1},
			Events: []agent.Event{
				{ID: "file:/etc/motd", Status: agent.Failed, Source: "roles/base.toml:12",
					Error: "writing /etc/motd: permission denied\nsecond\nthird\nfourth\nfifth\n"},
				{ID: "service:web", Status: agent.Skipped, Cause: "file:/etc/motd failed"},
			}},
			"did not converge web-01 in 2.35s: 3 resources, 1 in sync, 0 changed, 1 failed, 1 skipped (site 0123456789ab, run 01J)\n" +
				"  failed file:/etc/motd (roles/base.toml:12)\n" +
				"      writing /etc/motd: permission denied\n      second\n      third\n      … 2 more lines\n"},
		{"skipped alone (a stopped run) is not converged", &agent.Report{Node: "n", RunID: "r", Version: "sha256:" + strings.Repeat("a", 64),
			Summary: agent.Summary{Resources: 1, Skipped: 1}},
			"did not converge n in 0s: 1 resources, 0 in sync, 0 changed, 0 failed, 1 skipped (site sha256:aaaaaaaaaaaa, run r)\n"},
		{"noop", &agent.Report{Node: "n", RunID: "r", Version: "v", Noop: true, Duration: 3421 * time.Microsecond,
			Summary: agent.Summary{Resources: 2, InSync: 1, Changed: 1, Drift: 1}},
			"checked (noop) n in 3.42ms: 2 resources, 1 in sync, 1 changed, 0 failed, 0 skipped, 1 drift (site v, run r)\n"},
		{"audit partial", &agent.Report{Node: "n", RunID: "r", Version: "v", Noop: true, Audit: true, Partial: true,
			Summary: agent.Summary{Resources: 1, InSync: 1}},
			"audited partially n in 0s: 1 resources, 1 in sync, 0 changed, 0 failed, 0 skipped (site v, run r)\n"},
		{"hostile strings are cleaned", &agent.Report{Node: "n\x1b[2J", RunID: "r", Version: "v", Summary: agent.Summary{Resources: 1, Failed: 1},
			Events: []agent.Event{{ID: "exec:x", Status: agent.Failed, Error: "bad\x1b]0;t\x07"}}},
			"did not converge \"n\\x1b[2J\" in 0s: 1 resources, 0 in sync, 0 changed, 1 failed, 0 skipped (site v, run r)\n" +
				"  failed exec:x\n      \"bad\\x1b]0;t\\a\"\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var b bytes.Buffer
			WriteSummary(&b, tt.r)
			if diff := cmp.Diff(tt.want, b.String()); diff != "" {
				t.Errorf("WriteSummary (-want +got):\n%s", diff)
			}
		})
	}
	t.Run("many failures are capped", func(t *testing.T) {
		t.Parallel()
		var b bytes.Buffer
		WriteSummary(&b, many)
		out := b.String()
		if !strings.Contains(out, "failed exec:e09\n") || strings.Contains(out, "exec:e10") || !strings.Contains(out, "  and 2 more failed\n") {
			t.Errorf("WriteSummary of 12 failures = %q, want the first 10 and \"and 2 more failed\"", out)
		}
	})
}

// TestHumanDuration: durations read as a person says them.
func TestHumanDuration(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		d    time.Duration
		want string
	}{
		{115 * time.Millisecond, "115ms"},
		{115_400_001, "115ms"},
		{1234567, "1.23ms"},
		{999, "1µs"},
		{2_345_678_901, "2.35s"},
		{72*time.Second + 400*time.Millisecond, "1m12s"},
	} {
		if got := HumanDuration(tt.d).String(); got != tt.want {
			t.Errorf("HumanDuration(%d) = %s, want %s", tt.d, got, tt.want)
		}
	}
}

// TestWriteEventNoTrailingSpace: an event with no detail ends at its id.
func TestWriteEventNoTrailingSpace(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	WriteEvent(&b, agent.Event{ID: "file:/etc/motd", Status: agent.Changed}, false, false)
	if got, want := b.String(), "changed      file:/etc/motd\n"; got != want {
		t.Errorf("WriteEvent = %q, want %q", got, want)
	}
}

// FuzzWriteRunSummary: whatever a node put in its report's strings (a
// report from a server is hostile input), the summary writes no control
// character but its own line breaks, and every line it writes is one of
// its own.
func FuzzWriteRunSummary(f *testing.F) {
	f.Add("web-01", "01J", "0123456789abcdef0123456789abcdef01234567+dirty.x", "exec:x", "roles/r.toml:2", "boom\nsecond")
	f.Add("n\x1b[2J", "r\r", "sha256:\u009b", "file:/\u202e", "", "\x1b]0;t\x07\n\n\n\n\n")
	f.Fuzz(func(t *testing.T, node, run, version, id, source, errText string) {
		s := RunSummary{Node: node, RunID: run, Version: version, Counts: agent.Summary{Resources: 1, Failed: 1},
			Failed: []FailedResource{{ID: id, Source: source, Error: errText}}}
		var b bytes.Buffer
		WriteRunSummary(&b, s)
		out := b.String()
		for _, r := range out {
			if r != '\n' && (r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0)) {
				t.Fatalf("WriteRunSummary wrote control character %U:\n%q", r, out)
			}
		}
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		if !strings.HasPrefix(lines[0], "did not converge ") {
			t.Fatalf("first line %q: want the summary line", lines[0])
		}
		for _, l := range lines[1:] {
			if !strings.HasPrefix(l, "  failed ") && !strings.HasPrefix(l, "      ") {
				t.Fatalf("line %q is not one the summary writes:\n%q", l, out)
			}
		}
	})
}
