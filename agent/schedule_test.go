package agent

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

func TestScheduleNext(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	s := Schedule{Interval: 30 * time.Minute, Splay: 10 * time.Minute}
	for _, tt := range []struct {
		name string
		s    Schedule
		st   ScheduleState
		want time.Time
	}{
		{"first run at once", s, ScheduleState{}, t0},
		{"interval, no splay drawn", s, ScheduleState{LastRun: t0}, t0.Add(30 * time.Minute)},
		{"interval with half the splay", s, ScheduleState{LastRun: t0, Jitter: 0.5}, t0.Add(35 * time.Minute)},
		{"default interval", Schedule{}, ScheduleState{LastRun: t0}, t0.Add(30 * time.Minute)},
		{"the server's time", s, ScheduleState{LastRun: t0, ServerNext: t0.Add(17 * time.Minute), Jitter: 0.9}, t0.Add(17 * time.Minute)},
		{"the server's time, too soon", s, ScheduleState{LastRun: t0, ServerNext: t0.Add(-time.Hour)}, t0.Add(10 * time.Second)},
		{"the server's time, too late", s, ScheduleState{LastRun: t0, ServerNext: t0.Add(48 * time.Hour)}, t0.Add(70 * time.Minute)},
		{"first failure", s, ScheduleState{LastRun: t0, Failures: 1}, t0.Add(5 * time.Second)},
		{"first failure, jittered", s, ScheduleState{LastRun: t0, Failures: 1, Jitter: 0.5}, t0.Add(7500 * time.Millisecond)},
		{"third failure", s, ScheduleState{LastRun: t0, Failures: 3}, t0.Add(20 * time.Second)},
		{"many failures: capped", s, ScheduleState{LastRun: t0, Failures: 50}, t0.Add(150 * time.Second)},
		{"failures capped by a short interval", Schedule{Interval: time.Minute}, ScheduleState{LastRun: t0, Failures: 50}, t0.Add(30 * time.Second)},
		{"failure beats the server's time", s, ScheduleState{LastRun: t0, Failures: 1, ServerNext: t0.Add(time.Hour)}, t0.Add(5 * time.Second)},
		{"the server's hint is a floor", s, ScheduleState{LastRun: t0, Failures: 1, RetryAfter: time.Minute}, t0.Add(time.Minute)},
		{"the hint, jittered up", s, ScheduleState{LastRun: t0, Failures: 1, RetryAfter: time.Minute, Jitter: 0.5}, t0.Add(67500 * time.Millisecond)},
		{"a hint below the backoff", s, ScheduleState{LastRun: t0, Failures: 3, RetryAfter: time.Second}, t0.Add(20 * time.Second)},
		{"an absurd hint is capped", s, ScheduleState{LastRun: t0, Failures: 1, RetryAfter: 100 * time.Hour}, t0.Add(time.Hour)},
	} {
		if got := tt.s.Next(t0, tt.st); !got.Equal(tt.want) {
			t.Errorf("%s: Next = %v, want %v", tt.name, got.Sub(t0), tt.want.Sub(t0))
		}
	}
}

// TestBackoffJitterSpreads: over the whole range of draws the wait stays
// within [d/2, d) and grows with the failures, never past the cap.
func TestBackoffJitterSpreads(t *testing.T) {
	t.Parallel()
	s := Schedule{Interval: time.Hour, MinBackoff: time.Second, MaxBackoff: time.Minute}
	prevMax := time.Duration(0)
	for f := 1; f <= 12; f++ {
		lo, hi := s.Backoff(f, 0, 0), s.Backoff(f, 0, 0.999999)
		d := min(time.Second<<(f-1), time.Minute)
		if lo != d/2 || hi < d*99/100 || hi >= d {
			t.Errorf("Backoff(%d) spans [%v, %v], want [%v, %v)", f, lo, hi, d/2, d)
		}
		if hi < prevMax {
			t.Errorf("Backoff(%d) = %v shrank from %v", f, hi, prevMax)
		}
		prevMax = hi
	}
	if got := s.Backoff(0, time.Hour, 0.5); got != 0 {
		t.Errorf("Backoff without a failure = %v, want 0", got)
	}
	if got := s.Backoff(1<<30, 0, 0); got != 30*time.Second {
		t.Errorf("Backoff after very many failures = %v, want the cap's half", got)
	}
}

func TestTriggerString(t *testing.T) {
	t.Parallel()
	for tr, want := range map[Trigger]string{0: "none", TriggerTimer: "timer", TriggerWatch | TriggerDrift: "watch+drift"} {
		if got := tr.String(); got != want {
			t.Errorf("Trigger(%d).String() = %q, want %q", tr, got, want)
		}
	}
	if !TriggerDrift.local() || (TriggerDrift | TriggerWatch).local() || TriggerTimer.local() {
		t.Error("only a drift alone is a local run")
	}
}

// TestRunLoopFollowsSchedule runs the real loop in a bubble with a fake
// clock: the first run at once, then one an interval after the last; a
// trigger runs at once, and the interval counts from that run.
func TestRunLoopFollowsSchedule(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		d := &Daemon{
			sched: Schedule{Interval: time.Hour},
			log:   testLog(t),
			wake:  make(chan struct{}, 1),
			sent:  make(chan struct{}, 1),
		}
		start := time.Now()
		var runs []time.Duration
		var whys []Trigger
		d.runCycle = func(_ context.Context, why Trigger) (*Report, cycleResult) {
			runs = append(runs, time.Since(start))
			whys = append(whys, why)
			return nil, cycleResult{}
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- d.runLoop(ctx, nil) }()
		time.Sleep(90 * time.Minute) // the bubble's clock: no real wait
		d.Trigger(TriggerManual)
		synctest.Wait()
		time.Sleep(61 * time.Minute)
		synctest.Wait()
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		want := []time.Duration{0, time.Hour, 90 * time.Minute, 150 * time.Minute}
		wantWhy := []Trigger{TriggerTimer, TriggerTimer, TriggerManual, TriggerTimer}
		if !slices.Equal(runs, want) || !slices.Equal(whys, wantWhy) {
			t.Errorf("runs at %v for %v, want at %v for %v", runs, whys, want, wantWhy)
		}
	})
}

// TestScheduleHangup: SIGHUP's Hangup asks for a run at once and takes
// the reloaded settings from that run on; a reload that changes a
// restart-only setting is refused whole, and the run happens all the same.
func TestScheduleHangup(t *testing.T) {
	t.Parallel()
	fs := newFakeServer(t)
	fs.publish(testCatalog("web-01", "v1", fileRes("/etc/motd", "managed\n")), nil, false)
	a := newTestAgent(t, fs)
	a.start(t)
	a.awaitRun(t, "the first run", anyRun)
	a.settle(t)
	hup := func(r ranRun) bool { return r.why&TriggerHangup != 0 }

	// Refused: the server changed, noop asked for too; neither is taken.
	refused := a.d.Hangup(func() (DaemonOptions, error) {
		o := a.d.o
		o.Server, o.Noop = "elsewhere:8140", true
		return o, nil
	})
	if refused == nil || !strings.Contains(refused.Error(), `server ("`+fs.addr+`" → "elsewhere:8140")`) {
		t.Errorf("Hangup with a new server = %v, want a refusal naming it", refused)
	}
	if r := a.awaitRun(t, "the run SIGHUP asked for", hup); r.r == nil || r.r.Noop {
		t.Errorf("run after a refused reload: %+v, want a run, not noop", r.r)
	}
	a.settle(t)

	// A failing reload: the run happens, with the settings in effect.
	if err := a.d.Hangup(func() (DaemonOptions, error) { return DaemonOptions{}, errors.New("agent.toml:3:1: bad") }); err == nil ||
		!strings.Contains(err.Error(), "agent.toml:3:1: bad") {
		t.Errorf("Hangup with a failing reload = %v, want its error", err)
	}
	a.awaitRun(t, "the run SIGHUP asked for", hup)
	a.settle(t)

	// Taken: noop and a new interval.
	if err := a.d.Hangup(func() (DaemonOptions, error) {
		o := a.d.o
		o.Noop, o.Interval = true, 2*time.Hour
		return o, nil
	}); err != nil {
		t.Fatalf("Hangup: %v", err)
	}
	a.write(t, "etc/motd", "hand edit\n")
	if r := a.awaitRun(t, "the run SIGHUP asked for", hup); r.r == nil || !r.r.Noop {
		t.Errorf("run after reloading noop = true: %+v, want a noop run", r.r)
	}
	if got := a.read(t, "etc/motd"); got != "hand edit\n" {
		t.Errorf("a noop run changed etc/motd to %q", got)
	}
	a.settle(t)
	a.d.mu.Lock() // the run loop wrote sched before it went idle
	interval := a.d.sched.Interval
	a.d.mu.Unlock()
	if interval != 2*time.Hour {
		t.Errorf("interval after reload = %v, want 2h", interval)
	}
}

func TestNextAudit(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		name    string
		every   time.Duration
		checked time.Time
		want    time.Time
	}{
		{"off", 0, t0, time.Time{}},
		{"negative is off", -time.Minute, t0, time.Time{}},
		{"nothing checked yet: the first run is a real one", time.Minute, time.Time{}, time.Time{}},
		{"every after the last run that checked the host", 5 * time.Minute, t0, t0.Add(5 * time.Minute)},
	} {
		if got := NextAudit(tt.every, tt.checked); !got.Equal(tt.want) {
			t.Errorf("%s: NextAudit(%s, %s) = %s, want %s", tt.name, tt.every, tt.checked, got, tt.want)
		}
	}
}
