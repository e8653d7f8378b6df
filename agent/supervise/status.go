package supervise

import "time"

// State is where a service is in its life.
type State string

// The states.
const (
	// StateRunning: its process runs.
	StateRunning State = "running"
	// StateStopped: stopped on request, never started, or exited cleanly
	// under a policy that does not restart clean exits.
	StateStopped State = "stopped"
	// StateBackoff: it exited and is started again at Status.RetryAt.
	StateBackoff State = "backoff"
	// StateCrashLoop: it failed too often (see Policy) and is not
	// restarted until Ensure or Restart starts it.
	StateCrashLoop State = "crash-loop"
	// StateFailed: it failed under RestartNever.
	StateFailed State = "failed"
)

// Status is a snapshot of one service.
type Status struct {
	Name  string `json:"name"`
	State State  `json:"state"`
	// PID is the service's main process; 0 when none runs.
	PID int `json:"pid,omitempty"`
	// StartedAt is when the current (or last) process started.
	StartedAt time.Time `json:"started_at,omitzero"`
	// Restarts counts automatic restarts since the last start on request.
	Restarts int `json:"restarts"`
	// Backoff is the delay the restart policy chose after the last exit.
	Backoff time.Duration `json:"backoff,omitempty"`
	// RetryAt is when a service in backoff starts again.
	RetryAt time.Time `json:"retry_at,omitzero"`
	// LastExit is how the last process ended; nil before any ended.
	LastExit *ExitInfo `json:"last_exit,omitempty"`
	// Health is what the health probes say; HealthError is the last
	// failed probe's message.
	Health      Health `json:"health"`
	HealthError string `json:"health_error,omitempty"`
	// Adopted is set when the process was started by an earlier
	// supervisor (an earlier agent) and adopted by this one.
	Adopted bool `json:"adopted,omitempty"`
	// Cgroup is the service's cgroup directory; empty when it runs in a
	// process group alone.
	Cgroup string `json:"cgroup,omitempty"`
	// Stdout and Stderr are the service's log files.
	Stdout string `json:"stdout"`
	Stderr string `json:"stderr"`
	// Digest identifies the spec the service runs with.
	Digest string `json:"digest,omitempty"`
}

// clone copies s deeply enough that the caller cannot change a published
// snapshot.
func (s *Status) clone() Status {
	c := *s
	if s.LastExit != nil {
		e := *s.LastExit
		c.LastExit = &e
	}
	return c
}
