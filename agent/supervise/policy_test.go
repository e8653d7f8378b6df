package supervise

import (
	"syscall"
	"testing"
	"testing/synctest"
	"time"
)

func TestExitInfoFailed(t *testing.T) {
	t.Parallel()
	tests := []struct {
		exit ExitInfo
		want bool
	}{
		{ExitInfo{Code: 0}, false},
		{ExitInfo{Code: 1}, true},
		{ExitInfo{Code: -1, Signal: syscall.SIGTERM}, false},
		{ExitInfo{Code: -1, Signal: syscall.SIGPIPE}, false},
		{ExitInfo{Code: -1, Signal: syscall.SIGKILL}, true},
		{ExitInfo{Code: -1, Signal: syscall.SIGSEGV}, true},
		{ExitInfo{Code: -1, Unknown: true}, true},
		{ExitInfo{Code: -1, Err: "no such file"}, true},
	}
	for _, tt := range tests {
		if got := tt.exit.Failed(); got != tt.want {
			t.Errorf("%v.Failed() = %v, want %v", tt.exit, got, tt.want)
		}
	}
}

// step is one exit fed to Policy.Next: how long the run lasted, how it
// ended, and what the policy must answer.
type step struct {
	ran       time.Duration
	code      int
	wantAct   Action
	wantDelay time.Duration
	wantCount int
}

func TestPolicyNext(t *testing.T) {
	t.Parallel()
	const m = time.Minute
	crash := func(ran time.Duration, act Action, delay time.Duration, count int) step {
		return step{ran, 1, act, delay, count}
	}
	tests := []struct {
		name   string
		policy Policy
		steps  []step
	}{
		{
			name:   "instant crashes back off exponentially then crash-loop",
			policy: Policy{},
			steps: []step{
				crash(0, ActionRestart, 1*time.Second, 1),
				crash(0, ActionRestart, 2*time.Second, 2),
				crash(0, ActionRestart, 4*time.Second, 3),
				crash(0, ActionRestart, 8*time.Second, 4),
				crash(0, ActionRestart, 16*time.Second, 5),
				crash(0, ActionCrashLoop, 0, 6),
			},
		},
		{
			name: "crashing after minutes of running still counts",
			steps: []step{
				crash(5*m, ActionRestart, 1*time.Second, 1),
				crash(5*m, ActionRestart, 2*time.Second, 2),
				crash(9*m, ActionRestart, 4*time.Second, 3),
				crash(5*m, ActionRestart, 8*time.Second, 4),
				crash(5*m, ActionRestart, 16*time.Second, 5),
				crash(5*m, ActionCrashLoop, 0, 6),
			},
		},
		{
			name: "a long healthy run forgives",
			steps: []step{
				crash(0, ActionRestart, 1*time.Second, 1),
				crash(0, ActionRestart, 2*time.Second, 2),
				crash(0, ActionRestart, 4*time.Second, 3),
				crash(10*m, ActionRestart, 4*time.Second, 3), // one forgiven, one counted
				crash(25*m, ActionRestart, 2*time.Second, 2), // two forgiven
				crash(10*time.Hour, ActionRestart, 1*time.Second, 1),
			},
		},
		{
			name:   "delay floor and cap",
			policy: Policy{MinDelay: 10 * time.Millisecond, MaxDelay: 3 * time.Second, Limit: 10},
			steps: []step{
				crash(0, ActionRestart, 1*time.Second, 1), // raised to the 1 s floor
				crash(0, ActionRestart, 2*time.Second, 2),
				crash(0, ActionRestart, 3*time.Second, 3),
				crash(0, ActionRestart, 3*time.Second, 4),
			},
		},
		{
			name:   "a cap under the floor is the floor",
			policy: Policy{MaxDelay: time.Millisecond},
			steps:  []step{crash(0, ActionRestart, time.Second, 1), crash(0, ActionRestart, time.Second, 2)},
		},
		{
			name:   "always restarts clean exits, and counts them",
			policy: Policy{Restart: RestartAlways, Limit: 1},
			steps: []step{
				{0, 0, ActionRestart, time.Second, 1},
				{0, 0, ActionCrashLoop, 0, 2},
			},
		},
		{
			name:   "on-failure",
			policy: Policy{Restart: RestartOnFailure},
			steps: []step{
				{0, 0, ActionStop, 0, 0},
				{0, 2, ActionRestart, time.Second, 1},
				{0, 0, ActionStop, 0, 1},
			},
		},
		{
			name:   "never",
			policy: Policy{Restart: RestartNever},
			steps:  []step{{0, 0, ActionStop, 0, 0}, {0, 2, ActionFail, 0, 0}},
		},
		{
			name:   "custom decay",
			policy: Policy{Decay: time.Minute, Limit: 2},
			steps: []step{
				crash(0, ActionRestart, time.Second, 1),
				crash(0, ActionRestart, 2*time.Second, 2),
				crash(2*m, ActionRestart, time.Second, 1),
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := tt.policy
			now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
			for i, s := range tt.steps {
				started := now
				now = now.Add(s.ran)
				act, delay := p.Next(now, ExitInfo{Started: started, At: now, Code: s.code})
				if act != s.wantAct || delay != s.wantDelay || p.Count != s.wantCount {
					t.Fatalf("exit %d (ran %v, code %d): Next = %v, %v, count %d; want %v, %v, count %d",
						i+1, s.ran, s.code, act, delay, p.Count, s.wantAct, s.wantDelay, s.wantCount)
				}
				now = now.Add(delay)
			}
		})
	}
}

// TestPolicyOverTime drives Policy with a fake clock (synctest) the way the
// supervisor does: run for a while, exit, wait the delay, start again. It
// checks the rule stated on Policy: a service that fails faster than once
// per Decay ends in a crash loop, one that fails slower never does.
func TestPolicyOverTime(t *testing.T) {
	t.Parallel()
	tests := []struct {
		uptime        time.Duration
		wantCrashLoop bool
		wantAfter     int // exits before the crash loop
	}{
		{0, true, 6},
		{3 * time.Minute, true, 6},
		{9 * time.Minute, true, 6},
		{11 * time.Minute, false, 0},
		{time.Hour, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.uptime.String(), func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				var p Policy
				for exits := 1; exits <= 50; exits++ {
					started := time.Now()
					time.Sleep(tt.uptime) // the service runs
					act, delay := p.Next(time.Now(), ExitInfo{Started: started, At: time.Now(), Code: 1})
					if act == ActionCrashLoop {
						if !tt.wantCrashLoop || exits != tt.wantAfter {
							t.Fatalf("crash loop at exit %d; want crash loop %v after %d", exits, tt.wantCrashLoop, tt.wantAfter)
						}
						return
					}
					if act != ActionRestart || delay < MinRestartDelay {
						t.Fatalf("exit %d: Next = %v, %v; want a restart after at least %v", exits, act, delay, MinRestartDelay)
					}
					time.Sleep(delay) // the backoff
				}
				if tt.wantCrashLoop {
					t.Fatalf("no crash loop after 50 exits")
				}
			})
		})
	}
}

// TestExitInfoString: an exit names the signal once, by its name.
func TestExitInfoString(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		e    ExitInfo
		want string
	}{
		{ExitInfo{Code: 3}, "exited with code 3"},
		{ExitInfo{Code: -1, Signal: syscall.SIGKILL}, "killed by SIGKILL"},
		{ExitInfo{Code: -1, Signal: syscall.SIGTERM}, "killed by SIGTERM"},
		{ExitInfo{Unknown: true}, "exited, status unknown"},
	} {
		if got := tc.e.String(); got != tc.want {
			t.Errorf("%+v.String() = %q, want %q", tc.e, got, tc.want)
		}
	}
}
