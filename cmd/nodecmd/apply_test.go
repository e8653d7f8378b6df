package nodecmd

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/herdcm/herd/agent"
	"github.com/herdcm/herd/agent/resources"
)

// TestWriteDrift: the terminal view says an audited resource's content
// differs (it was found, not changed), and the summary counts drift.
func TestWriteDrift(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name      string
		e         agent.Event
		want, not string
	}{
		{"drift", agent.Event{ID: "file:/etc/ssh/sshd_config", Status: agent.Drift,
			Changes: []resources.Change{{Attr: "content", Diff: "-a\n+b\n"}, {Attr: "mode", From: "0644", To: "0600"}}},
			"drift        file:/etc/ssh/sshd_config                content differs; mode 0644 → 0600", "changed"},
		{"a change is still a change", agent.Event{ID: "file:/etc/motd", Status: agent.Changed,
			Changes: []resources.Change{{Attr: "content", Diff: "-a\n+b\n"}}},
			"content changed", "differs"},
	} {
		var b bytes.Buffer
		WriteEvent(&b, tt.e, false, false)
		if out := b.String(); !strings.Contains(out, tt.want) || strings.Contains(out, tt.not) {
			t.Errorf("%s: WriteEvent = %q, want %q and not %q", tt.name, out, tt.want, tt.not)
		}
	}
	var b bytes.Buffer
	WriteSummary(&b, &agent.Report{Node: "web-01", Duration: time.Millisecond, Summary: agent.Summary{Resources: 3, InSync: 2, Drift: 1}})
	if out := b.String(); !strings.Contains(out, ", 1 drift") {
		t.Errorf("WriteSummary = %q, want it to count the drift", out)
	}
}

// TestWriteSensitive: a sensitive change says it changed (or differs)
// and never prints a diff, even one an event should not have had.
func TestWriteSensitive(t *testing.T) {
	t.Parallel()
	const canary = "CANARY-term-1"
	for _, tt := range []struct {
		status agent.Status
		want   string
	}{{agent.Changed, "content (sensitive) changed"}, {agent.Drift, "content (sensitive) differs"}} {
		var b bytes.Buffer
		WriteEvent(&b, agent.Event{ID: "file:/etc/db.conf", Status: tt.status,
			Changes: []resources.Change{{Attr: "content", Sensitive: true, Diff: "+" + canary}}}, true, true)
		if out := b.String(); !strings.Contains(out, tt.want) || strings.Contains(out, canary) {
			t.Errorf("WriteEvent(%s, --diff) = %q, want %q and no value", tt.status, out, tt.want)
		}
	}
}
