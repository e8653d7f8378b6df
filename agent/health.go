package agent

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/herdcm/herd/agent/resources"
	"github.com/herdcm/herd/agent/supervise"
	"github.com/herdcm/herd/catalogs"
)

// ServiceHealth is the health of one supervised service of the catalog as
// a run ended: what a rollout reads to tell a change that left a service
// running but broken from a good one.
type ServiceHealth struct {
	Name string `json:"name"`
	// Health is healthy, unhealthy (its check fails, or it does not run)
	// or unknown (no verdict yet, or nobody to ask).
	Health supervise.Health `json:"health"`
	// Detail says why when it is not healthy: the check's last error, the
	// supervisor's account of a service that does not run.
	Detail string `json:"detail,omitempty"`
}

// Bounds of the health a run reports.
const (
	// maxHealthWait caps the wait for the first verdict of a service the
	// run started or restarted, whatever its check's settings.
	maxHealthWait = 2 * time.Minute
	// maxHealthDetail bounds one service's detail (a failing exec check's
	// output, a crashed service's log tail).
	maxHealthDetail = 4 << 10
)

// healthReader is how a run reads a service's status, health included:
// the supervisor's owner (*Services) and a client of its socket
// (*ServiceClient) can; the records a noop run reads when no supervisor
// runs (recordView) cannot, and their services' health is unknown.
type healthReader interface {
	Status(ctx context.Context, name string) (supervise.Status, error)
}

// healthAwaiter waits for a service's first verdict; the supervisor's
// owner can (the daemon, whose reports a rollout reads).
type healthAwaiter interface {
	AwaitHealth(ctx context.Context, name string) (supervise.Status, bool)
}

// AwaitHealth waits, until ctx ends, for the first verdict of the service's
// health check, or for the service to stop running; see
// supervise.Supervisor.AwaitHealth. False when the service is unknown.
func (s *Services) AwaitHealth(ctx context.Context, name string) (supervise.Status, bool) {
	return s.sup.AwaitHealth(ctx, name)
}

// healthWait is how long a run waits for the first verdict of a service it
// started: long enough for the check to fail Retries times in a row
// (Interval apart, the last one taking up to Timeout), capped.
func healthWait(h *resources.HealthSpec) time.Duration {
	return min(h.Interval*time.Duration(h.Retries)+h.Timeout, maxHealthWait)
}

// servicesHealth returns the health of every supervised service of cat
// that has a health check (resources.SupervisedHealth), in cat's order;
// nil when there is none, without allocating. events are the run's, sorted
// by id. A service this run started or restarted (changed, or refreshed)
// is waited for, each at most healthWait, all at once; in noop nothing is
// waited for, and a service the run would start reads as unknown rather
// than as the unhealthy service it is not yet. A service the run failed
// is never unknown: unhealthy.
func servicesHealth(ctx context.Context, svcs resources.Services, cat *catalogs.Catalog, events []Event, noop bool) []ServiceHealth {
	type checked struct {
		res   *catalogs.Resource
		check *resources.HealthSpec
	}
	var found []checked
	for i := range cat.Resources {
		if hs := resources.SupervisedHealth(&cat.Resources[i]); hs != nil {
			found = append(found, checked{&cat.Resources[i], hs})
		}
	}
	if len(found) == 0 {
		return nil
	}
	out := make([]ServiceHealth, len(found))
	aw, canWait := svcs.(healthAwaiter)
	var wg sync.WaitGroup
	for i, c := range found {
		name := c.res.Name
		ev := eventOf(events, c.res.ID)
		if canWait && !noop && ev != nil && (ev.Status == Changed || ev.Refresh == "refreshed") {
			wait := healthWait(c.check)
			wg.Go(func() {
				wctx, cancel := context.WithTimeout(ctx, wait)
				defer cancel()
				st, known := aw.AwaitHealth(wctx, name)
				out[i] = healthOf(name, st, known)
				if out[i].Health == supervise.HealthUnknown {
					out[i].Detail = "no verdict from its health check within " + wait.String() + " after the run started it"
				}
			})
			continue
		}
		wouldStart := noop && ev != nil && (ev.Status == Changed || ev.Status == Unknown)
		out[i] = readHealth(ctx, svcs, name, wouldStart)
	}
	wg.Wait()
	for i, c := range found {
		// A service whose start or restart failed in this run is not
		// healthy, even when the supervisor has it up again for a moment
		// (a crash loop between two backoffs) before any check decided.
		if ev := eventOf(events, c.res.ID); ev != nil && ev.Status == Failed && out[i].Health == supervise.HealthUnknown {
			out[i].Health, out[i].Detail = supervise.HealthUnhealthy, clipDetail("the run failed it: "+ev.Error)
		}
	}
	return out
}

// readHealth reads a service's health as it is now. wouldStart: a noop run
// would start or change it, so that a service not running yet has no
// verdict rather than a failing one.
func readHealth(ctx context.Context, svcs resources.Services, name string, wouldStart bool) ServiceHealth {
	r, ok := svcs.(healthReader)
	if !ok {
		return ServiceHealth{Name: name, Health: supervise.HealthUnknown, Detail: "no supervisor runs to ask (a noop run reads only its records)"}
	}
	st, err := r.Status(ctx, name)
	known := err == nil
	if err != nil && !errors.Is(err, supervise.ErrUnknown) {
		return ServiceHealth{Name: name, Health: supervise.HealthUnknown, Detail: clipDetail("asking the supervisor: " + err.Error())}
	}
	if wouldStart && (!known || st.State != supervise.StateRunning) {
		return ServiceHealth{Name: name, Health: supervise.HealthUnknown, Detail: "not running yet: the run would start it (noop)"}
	}
	return healthOf(name, st, known)
}

// healthOf is the health a supervisor's status of a service says: a service
// that does not run is unhealthy whatever its last check said.
func healthOf(name string, st supervise.Status, known bool) ServiceHealth {
	h := ServiceHealth{Name: name, Health: supervise.HealthUnknown}
	switch {
	case !known:
		h.Health, h.Detail = supervise.HealthUnhealthy, "not running: the supervisor does not know it"
	case st.State != supervise.StateRunning:
		h.Health = supervise.HealthUnhealthy
		if p := supervise.Problem(st); p != "" {
			h.Detail = "not running: " + p
		} else {
			h.Detail = "not running (" + string(st.State) + ")"
		}
	case st.Health == supervise.HealthHealthy:
		h.Health = supervise.HealthHealthy
	case st.Health == supervise.HealthUnhealthy:
		h.Health, h.Detail = supervise.HealthUnhealthy, st.HealthError
	default:
		h.Detail = "no verdict from its health check yet"
	}
	h.Detail = clipDetail(h.Detail)
	return h
}

func clipDetail(s string) string {
	budget := maxHealthDetail
	return clip(s, &budget)
}

// eventOf finds the event of resource id in events sorted by id.
func eventOf(events []Event, id string) *Event {
	i, ok := slices.BinarySearchFunc(events, id, func(e Event, id string) int { return cmp.Compare(e.ID, id) })
	if !ok {
		return nil
	}
	return &events[i]
}
