package supervise

import (
	"fmt"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ExitInfo is how one run of a service ended.
type ExitInfo struct {
	// Started is when the run began; zero when the process never started.
	Started time.Time `json:"started,omitzero"`
	// At is when the run ended (or the start failed).
	At time.Time `json:"at"`
	// Code is the exit code; -1 when the process was killed by a signal,
	// did not start or ended unseen.
	Code int `json:"code"`
	// Signal is the signal that killed the process, if one did.
	Signal syscall.Signal `json:"signal,omitempty"`
	// Err says why the process did not start, or why its status is unknown.
	Err string `json:"err,omitempty"`
	// Unknown is set when the process ended while nobody could learn its
	// status: it was adopted from an earlier agent and is not our child, or
	// it died while no agent ran. Unknown counts as a failure.
	Unknown bool `json:"unknown,omitempty"`
}

// Failed reports whether the exit counts as a failure for RestartOnFailure
// and RestartNever: a start error, an unknown status, a non-zero code, or a
// signal other than SIGHUP, SIGINT, SIGTERM and SIGPIPE.
func (e ExitInfo) Failed() bool {
	switch {
	case e.Err != "" || e.Unknown:
		return true
	case e.Signal != 0:
		switch e.Signal {
		case syscall.SIGHUP, syscall.SIGINT, syscall.SIGTERM, syscall.SIGPIPE:
			return false
		}
		return true
	}
	return e.Code != 0
}

// String describes the exit for logs and status output.
func (e ExitInfo) String() string {
	switch {
	case e.Err != "":
		return e.Err
	case e.Unknown:
		return "exited, status unknown"
	case e.Signal != 0:
		// The signal's name, not its description: String of SIGKILL is
		// "killed", which made "killed by killed".
		if n := unix.SignalName(e.Signal); n != "" {
			return "killed by " + n
		}
		return fmt.Sprintf("killed by signal %d", int(e.Signal))
	}
	return fmt.Sprintf("exited with code %d", e.Code)
}

// Action is what Policy.Next decides after an exit.
type Action int

// The actions, and the state each leaves the service in.
const (
	// ActionRestart starts the service again after the returned delay
	// (state backoff until then).
	ActionRestart Action = iota + 1
	// ActionStop leaves the service stopped: it exited cleanly and its
	// policy does not restart clean exits (state stopped).
	ActionStop
	// ActionFail leaves the service failed: it failed and its policy is
	// never (state failed).
	ActionFail
	// ActionCrashLoop gives up: the service failed too often (state
	// crash-loop) and stays down until it is started again on request.
	ActionCrashLoop
)

// String names the action.
func (a Action) String() string {
	switch a {
	case ActionRestart:
		return "restart"
	case ActionStop:
		return "stop"
	case ActionFail:
		return "fail"
	case ActionCrashLoop:
		return "crash-loop"
	}
	return fmt.Sprintf("Action(%d)", int(a))
}

// Defaults of Policy, used for its fields left at zero.
const (
	DefaultRestartLimit = 5
	DefaultRestartDecay = 10 * time.Minute
	DefaultMaxDelay     = time.Minute
	// MinRestartDelay is the floor of every restart delay: a service is
	// never started again sooner than this after it exited.
	MinRestartDelay = time.Second
)

// Policy decides, after each exit of a service, whether and when it starts
// again. It is a pure value: it reads no clock and does no I/O, so every
// timing decision of the supervisor can be tested as a table.
//
// The rule. Each restart adds one to Count. Uninterrupted running forgives:
// a run that lasted k whole Decay periods takes k off Count before the exit
// is counted. When Count passes Limit the service is in a crash loop and is
// not restarted. The delay before restart n (Count = n) is
// MinDelay·2^(n-1), capped at MaxDelay, and never under MinRestartDelay.
//
// So a service that fails faster than once per Decay on average ends in a
// crash loop, however long each single run lasted: with the defaults (limit
// 5, decay 10 minutes) a service that crashes after 5 minutes is given up on
// at its sixth crash, about half an hour in, while one that crashes every
// hour keeps being restarted after 1 s. Running "a few seconds" forgives
// nothing, so a service that crashes while warming up cannot reset its
// count by crashing a little later each time.
//
// Clean exits count too when the policy restarts them (RestartAlways): a
// service that keeps exiting 0 at once is flapping just the same.
type Policy struct {
	// Restart is the service's restart policy; RestartAlways when empty.
	Restart RestartPolicy `json:"restart,omitempty"`
	// Limit is how many restarts Count may reach; DefaultRestartLimit when
	// zero.
	Limit int `json:"limit,omitempty"`
	// Decay is the uninterrupted running that forgives one restart;
	// DefaultRestartDecay when zero.
	Decay time.Duration `json:"decay,omitempty"`
	// MinDelay is the first restart delay; raised to MinRestartDelay.
	MinDelay time.Duration `json:"min_delay,omitempty"`
	// MaxDelay caps the delay; DefaultMaxDelay when zero.
	MaxDelay time.Duration `json:"max_delay,omitempty"`
	// Count is the state Next keeps: the restarts not yet forgiven.
	Count int `json:"count"`
}

// Next records an exit that happened at now and says what to do: for
// ActionRestart, the delay before the next start; zero otherwise.
func (p *Policy) Next(now time.Time, exit ExitInfo) (Action, time.Duration) {
	switch p.restart() {
	case RestartNever:
		if exit.Failed() {
			return ActionFail, 0
		}
		return ActionStop, 0
	case RestartOnFailure:
		if !exit.Failed() {
			return ActionStop, 0
		}
	}
	if ran := now.Sub(exit.Started); !exit.Started.IsZero() && ran > 0 {
		p.Count = max(0, p.Count-int(ran/p.decay()))
	}
	p.Count++
	if p.Count > p.limit() {
		return ActionCrashLoop, 0
	}
	return ActionRestart, p.delay(p.Count)
}

// delay is the wait before restart n (n ≥ 1).
func (p *Policy) delay(n int) time.Duration {
	lo := max(p.MinDelay, MinRestartDelay)
	hi := p.MaxDelay
	if hi == 0 {
		hi = DefaultMaxDelay
	}
	hi = max(hi, lo)
	d := lo
	for i := 1; i < n && d < hi; i++ {
		d *= 2
	}
	return min(d, hi)
}

func (p *Policy) restart() RestartPolicy {
	if p.Restart == "" {
		return RestartAlways
	}
	return p.Restart
}

func (p *Policy) limit() int {
	if p.Limit <= 0 {
		return DefaultRestartLimit
	}
	return p.Limit
}

func (p *Policy) decay() time.Duration {
	if p.Decay <= 0 {
		return DefaultRestartDecay
	}
	return p.Decay
}
