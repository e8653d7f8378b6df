package agent

import (
	"fmt"
	"time"
)

// The watchdog (sdnotify.Watchdog) pings systemd only while the daemon's
// run loop keeps its promise to come round again. Idle, the loop comes
// round every half interval. Before a run it promises the run's own bound:
// the wait for the run lock, the run's timeout twice (the node's run, and
// the rehearsal a check-in may bring after it) and as much again, at most
// a minute, for the report.
// A run that overruns that is stuck past every timeout the agent sets
// itself, and the manager's restart is the remedy: the services keep
// running and the new agent adopts them.

// noRunTimeoutBound is the promise before a run when runs have no timeout.
const noRunTimeoutBound = 24 * time.Hour

// runBound is how long a run (with its rehearsal) may keep the run loop.
func (s runSettings) runBound() time.Duration {
	if s.RunTimeout <= 0 {
		return noRunTimeoutBound
	}
	return s.LockWait + 2*s.RunTimeout + min(s.RunTimeout, time.Minute)
}

// notifyReady tells the service manager the daemon is ready.
func (d *Daemon) notifyReady() {
	status := fmt.Sprintf("node %s: checking in with %s", d.id.Node, d.o.Server)
	if err := d.o.Notify.Ready(status); err != nil {
		d.log.Warn("telling systemd the agent is ready", "err", err)
	}
}
