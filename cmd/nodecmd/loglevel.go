package nodecmd

import (
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"
)

// LevelLogger is Logger with its level held in the returned LevelVar, so
// that a daemon can change it on SIGHUP without a restart.
func LevelLogger(cmd *cobra.Command, level string) (*slog.Logger, *slog.LevelVar, error) {
	lv := new(slog.LevelVar)
	if err := SetLevel(lv, level); err != nil {
		return nil, nil, err
	}
	opts := &slog.HandlerOptions{Level: lv}
	w := cmd.ErrOrStderr()
	if f, ok := w.(interface{ Fd() uintptr }); ok && isTerminalFd(f.Fd()) {
		return slog.New(slog.NewTextHandler(w, opts)), lv, nil
	}
	return slog.New(slog.NewJSONHandler(w, opts)), lv, nil
}

// SetLevel sets lv from a log level's name.
func SetLevel(lv *slog.LevelVar, level string) error {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	lv.Set(l)
	return nil
}
