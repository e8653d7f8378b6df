package nodecmd

import (
	"context"

	"fmt"
	"io"
	"log/slog"

	"github.com/spf13/cobra"
)

// Log formats, the values of --log-format and log_format.
const (
	LogFormatAuto = "auto" // text on a terminal, JSON otherwise
	LogFormatText = "text"
	LogFormatJSON = "json"
)

// LoggerFormat returns the log/slog logger a long-running command hands
// to packages, writing to the command's stderr: its structured log, kept
// apart from the human lines (events, summaries) on stdout. format is
// "text", "json", or "auto" or "" (text on a terminal, JSON otherwise, so
// that logs shipped from a fleet parse). Durations are written as a
// person reads them (115ms), in JSON too, never as a count of
// nanoseconds.
func LoggerFormat(cmd *cobra.Command, level, format string) (*slog.Logger, error) {
	w := cmd.ErrOrStderr()
	return NewLogger(w, level, ResolveLogFormat(w, format))
}

// LoggerProgress is LoggerFormat for a daemon that shows progress: the
// log goes through p (a Progress on the command's stderr), so that its
// lines keep out of the status line. Its level is held in the returned
// LevelVar, so that the daemon can change it on SIGHUP without a restart.
func LoggerProgress(cmd *cobra.Command, p *Progress, level, format string) (*slog.Logger, *slog.LevelVar, error) {
	lv := new(slog.LevelVar)
	if err := SetLevel(lv, level); err != nil {
		return nil, nil, err
	}
	log, err := newLogger(p, lv, ResolveLogFormat(cmd.ErrOrStderr(), format))
	return log, lv, err
}

// ResolveLogFormat turns "auto" (or "") into text when w is a terminal and
// JSON otherwise; any other format is returned as it is.
func ResolveLogFormat(w io.Writer, format string) string {
	if format != "" && format != LogFormatAuto {
		return format
	}
	if isTerminalFile(w) {
		return LogFormatText
	}
	return LogFormatJSON
}

// NewLogger returns a logger writing to w at level (debug, info, warn or
// error) in format (text or json).
func NewLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	lv := new(slog.LevelVar)
	if err := SetLevel(lv, level); err != nil {
		return nil, err
	}
	return newLogger(w, lv, format)
}

func newLogger(w io.Writer, lv slog.Leveler, format string) (*slog.Logger, error) {
	opts := &slog.HandlerOptions{Level: lv, ReplaceAttr: humanDurations}
	switch format {
	case LogFormatText:
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case LogFormatJSON:
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("log format %q: want text, json or auto", format)
}

// humanDurations writes a duration as its string (115ms): the JSON
// handler would write 115000000.
func humanDurations(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		return slog.String(a.Key, a.Value.Duration().String())
	}
	return a
}

// LogFormatFlag adds --log-format to a long-running command, bound to p.
func LogFormatFlag(cmd *cobra.Command, p *string) {
	cmd.Flags().StringVar(p, "log-format", *p, "the log's format on stderr: text, json, or auto (text on a terminal, JSON otherwise)")
}

// LogStop writes the one line a long-running command logs when it stops
// because its context ended: on SIGINT or SIGTERM it names the signal.
// It says nothing when the context is still live (the command stopped on
// its own, with an error that is reported).
func LogStop(ctx context.Context, log *slog.Logger, what string) {
	if ctx.Err() == nil {
		return
	}
	cause := context.Cause(ctx)
	// A signal's cause Is context.Canceled too: only the plain one says
	// nothing more.
	if cause == context.Canceled {
		log.Info(what + " stopping")
		return
	}
	log.Info(what+" stopping: "+cause.Error(), "cause", cause.Error())
}
