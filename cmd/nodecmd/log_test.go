package nodecmd

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
)

// TestNewLogger: each format writes its own shape, durations are human in
// both, and a bad level or format is an error naming the choices.
func TestNewLogger(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		format string
		want   []string
	}{
		{"json", []string{`"msg":"run done"`, `"duration":"115ms"`}},
		{"text", []string{`msg="run done"`, `duration=115ms`}},
	} {
		var b bytes.Buffer
		log, err := NewLogger(&b, "info", tt.format)
		if err != nil {
			t.Fatalf("NewLogger(%s): %v", tt.format, err)
		}
		log.Debug("hidden")
		log.Info("run done", "duration", 115*time.Millisecond)
		out := b.String()
		for _, w := range tt.want {
			if !strings.Contains(out, w) {
				t.Errorf("%s log = %q, want %q", tt.format, out, w)
			}
		}
		if strings.Contains(out, "115000000") || strings.Contains(out, "hidden") {
			t.Errorf("%s log = %q: a duration in nanoseconds, or a debug line at level info", tt.format, out)
		}
	}
	for _, tt := range []struct{ level, format, want string }{
		{"loud", "json", "want debug, info, warn or error"},
		{"info", "xml", `log format "xml": want text, json or auto`},
	} {
		if _, err := NewLogger(&bytes.Buffer{}, tt.level, tt.format); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("NewLogger(%s, %s) = %v, want an error saying %q", tt.level, tt.format, err, tt.want)
		}
	}
}

// TestLoggerFormatAuto: "auto" (and "") is JSON when stderr is not a
// terminal; an explicit format is kept.
func TestLoggerFormatAuto(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ format, want string }{
		{"", `{"time"`}, {"auto", `{"time"`}, {"text", `time=`},
	} {
		cmd := &cobra.Command{}
		var b bytes.Buffer
		cmd.SetErr(&b)
		log, err := LoggerFormat(cmd, "info", tt.format)
		if err != nil {
			t.Fatal(err)
		}
		log.Info("x")
		if !strings.HasPrefix(b.String(), tt.want) {
			t.Errorf("LoggerFormat(%q) wrote %q, want it to start %q", tt.format, b.String(), tt.want)
		}
	}
}

// TestLogStop: one line when a signal stopped the command, naming it;
// none while the context is live.
func TestLogStop(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	log, _ := NewLogger(&b, "info", "text")
	LogStop(context.Background(), log, "agent")
	if b.Len() != 0 {
		t.Errorf("LogStop on a live context wrote %q", b.String())
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(errors.New("terminated signal received"))
	LogStop(ctx, log, "agent")
	if got := b.String(); strings.Count(got, "\n") != 1 || !strings.Contains(got, `msg="agent stopping: terminated signal received"`) {
		t.Errorf("LogStop after SIGTERM wrote %q, want one line naming the signal", got)
	}
}
