package main

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/herdcm/herd/cmd/nodecmd"
	"github.com/herdcm/herd/sdnotify"
	"github.com/herdcm/herd/server"
)

// liveServerSettings are the server.toml settings SIGHUP takes at once;
// every other one changed in the file is logged as needing a restart.
var liveServerSettings = map[string]bool{"log_level": true}

// serverReload is what `herd server` does on SIGHUP.
type serverReload struct {
	cmd        *cobra.Command
	configFile string
	defaults   serverConfig
	running    *serverConfig // the settings in effect; log_level changes
	level      *slog.LevelVar
	notify     *sdnotify.Notifier
	log        *slog.Logger
}

// do tells systemd RELOADING=1, reads server.toml again (defaults, the
// file, the flags given at start: what a restart would read), takes the
// live settings, names every other changed setting as needing a restart,
// reloads the server (site, TLS, revocations) and says READY=1. A file
// that does not parse changes nothing.
func (r *serverReload) do(ctx context.Context, s *server.Server) {
	r.notify.Reloading("reloading server.toml, the site, TLS and revocations")
	defer r.notify.Ready("serving")
	next := flagsOverConfig(r.cmd, r.defaults, *r.running)
	if err := nodecmd.ApplyConfigFile(r.cmd, r.configFile, &next); err != nil {
		r.log.Error("SIGHUP: server.toml does not read; keeping the settings in effect", "err", err)
	} else if err := next.check(); err != nil {
		r.log.Error("SIGHUP: server.toml is not valid; keeping the settings in effect", "err", err)
	} else {
		live, restart := diffServerConfig(*r.running, next)
		for _, name := range live {
			switch name {
			case "log_level":
				if err := nodecmd.SetLevel(r.level, next.LogLevel); err != nil {
					r.log.Error("SIGHUP: log_level", "err", err)
					continue
				}
				r.running.LogLevel = next.LogLevel
				r.log.Info("SIGHUP: log_level changed", "log_level", next.LogLevel)
			}
		}
		if len(restart) > 0 {
			r.log.Error("SIGHUP: these settings changed in server.toml but take effect only after a restart of the server; still running with the old values",
				"settings", strings.Join(restart, ", "))
		}
	}
	res, err := s.Reload(ctx)
	if err != nil {
		r.log.Error("SIGHUP: reloading", "err", err)
	}
	if res.SiteError != "" {
		r.log.Error("SIGHUP: the site's newest version does not load; still serving the previous one", "version", res.Version, "err", res.SiteError)
	}
}

// diffServerConfig names the settings (by their server.toml key) that
// differ between a and b: those SIGHUP takes, and those that need a
// restart.
func diffServerConfig(a, b serverConfig) (live, restart []string) {
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	for i := range va.NumField() {
		if reflect.DeepEqual(va.Field(i).Interface(), vb.Field(i).Interface()) {
			continue
		}
		name := strings.Split(va.Type().Field(i).Tag.Get("toml"), ",")[0]
		if liveServerSettings[name] {
			live = append(live, name)
		} else {
			restart = append(restart, name)
		}
	}
	return live, restart
}

// flagsOverConfig returns base with the settings given as flags taken
// from cfg: the flags of the start stay in force on a reload.
func flagsOverConfig(cmd *cobra.Command, base, cfg serverConfig) serverConfig {
	dst, src := reflect.ValueOf(&base).Elem(), reflect.ValueOf(cfg)
	for i := range dst.NumField() {
		tag := strings.Split(dst.Type().Field(i).Tag.Get("toml"), ",")[0]
		if f := cmd.Flags().Lookup(strings.ReplaceAll(tag, "_", "-")); f != nil && f.Changed {
			dst.Field(i).Set(src.Field(i))
		}
	}
	return base
}

// serverStatus is the status line systemd shows.
func serverStatus(s *server.Server) string {
	return fmt.Sprintf("serving gRPC on %s, HTTP on %s", s.Addr, s.HTTPAddr)
}

// reloadBound is how long the main loop may spend in one reload before
// the watchdog stops vouching for it.
const reloadBound = 10 * time.Minute
