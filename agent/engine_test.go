package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/herdcm/herd/agent/resources"
	"github.com/herdcm/herd/catalogs"
)

// fakeType is a resource type over an in-memory host (a map), so that the
// engine's ordering, skipping, noop and refresh rules are tested apart from
// real types (which have their own conformance tests on real hosts).
// Attributes: value (the wanted value), fail_check, fail_apply,
// no_converge, converges (the change is marked Converges), panic, sleep_ms.
type fakeType struct {
	mu        sync.Mutex
	host      map[string]string
	applied   []string
	refreshed []string
	order     []string // check order
	running   atomic.Int32
	maxRun    atomic.Int32
}

func newFake() *fakeType { return &fakeType{host: map[string]string{}} }

func (f *fakeType) Check(_ context.Context, _ *resources.Host, r *catalogs.Resource) (*resources.Plan, error) {
	n := f.running.Add(1)
	defer f.running.Add(-1)
	for {
		m := f.maxRun.Load()
		if n <= m || f.maxRun.CompareAndSwap(m, n) {
			break
		}
	}
	if ms, ok := r.Int("sleep_ms"); ok {
		time.Sleep(time.Duration(ms) * time.Millisecond)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.order = append(f.order, r.ID)
	if r.Bool("panic") {
		panic("boom")
	}
	if r.Bool("fail_check") {
		return nil, errors.New("cannot read")
	}
	want := r.String("value")
	if got := f.host[r.ID]; got != want {
		return &resources.Plan{Resource: r, Changes: []resources.Change{{Attr: "value", From: f.host[r.ID], To: want, Action: resources.Update, Sensitive: r.Bool("secret"), Converges: r.Bool("converges")}}}, nil
	}
	return &resources.Plan{Resource: r}, nil
}

func (f *fakeType) Apply(_ context.Context, _ *resources.Host, p *resources.Plan) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applied = append(f.applied, p.Resource.ID)
	if p.Resource.Bool("fail_apply") {
		p.Output = "it broke"
		return errors.New("exit status 1")
	}
	if !p.Resource.Bool("no_converge") {
		f.host[p.Resource.ID] = p.Resource.String("value")
	}
	return nil
}

func (f *fakeType) Refresh(_ context.Context, _ *resources.Host, r *catalogs.Resource) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refreshed = append(f.refreshed, r.ID)
	return nil
}

// fakeCatalog builds a catalog of fake resources: each spec is
// "id attr=value ... require=a,b notify=c".
func fakeCatalog(specs ...string) *catalogs.Catalog {
	cat := &catalogs.Catalog{Node: "test"}
	for _, spec := range specs {
		fields := strings.Fields(spec)
		r := catalogs.Resource{ID: "fake:" + fields[0], Type: "fake", Name: fields[0], Attrs: map[string]any{"value": "v"}}
		for _, f := range fields[1:] {
			k, v, _ := strings.Cut(f, "=")
			switch k {
			case "require", "notify":
				var ids []string
				for _, id := range strings.Split(v, ",") {
					ids = append(ids, "fake:"+id)
				}
				if k == "require" {
					r.Require = append(r.Require, ids...)
				} else {
					r.Notify = append(r.Notify, ids...)
				}
			case "value":
				r.Attrs[k] = v
			case "sleep_ms":
				r.Attrs[k] = int64(len(v))
			default:
				r.Attrs[k] = true
			}
		}
		cat.Resources = append(cat.Resources, r)
	}
	// A notify is left without the require the compiler adds beside it:
	// the engine makes the target wait by itself.
	slices.SortFunc(cat.Resources, func(a, b catalogs.Resource) int { return strings.Compare(a.ID, b.ID) })
	return cat
}

func statuses(events []Event) map[string]string {
	m := map[string]string{}
	for _, e := range events {
		s := string(e.Status)
		if e.Refresh != "" {
			s += "+" + e.Refresh
		}
		m[strings.TrimPrefix(e.ID, "fake:")] = s
	}
	return m
}

func TestConverge(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		specs []string
		noop  bool
		pre   map[string]string // host state before the run
		want  map[string]string
	}{
		{
			name:  "changes then in sync",
			specs: []string{"a", "b require=a"},
			pre:   map[string]string{"fake:b": "v"},
			want:  map[string]string{"a": "changed", "b": "in-sync"},
		},
		{
			name:  "a failure skips its dependents and nothing else",
			specs: []string{"a fail_apply", "b require=a", "c require=b", "d"},
			want:  map[string]string{"a": "failed", "b": "skipped", "c": "skipped", "d": "changed"},
		},
		{
			name:  "a check failure fails the resource",
			specs: []string{"a fail_check", "b"},
			want:  map[string]string{"a": "failed", "b": "changed"},
		},
		{
			name:  "did not converge is a failure",
			specs: []string{"a no_converge"},
			want:  map[string]string{"a": "failed"},
		},
		{
			name:  "a change whose Apply is convergence is not held against the resource",
			specs: []string{"a no_converge converges", "b require=a"},
			want:  map[string]string{"a": "changed", "b": "changed"},
		},
		{
			name:  "a notify alone makes the target wait and refresh",
			specs: []string{"svc", "z-conf notify=svc"},
			pre:   map[string]string{"fake:svc": "v"},
			want:  map[string]string{"svc": "in-sync+refreshed", "z-conf": "changed"},
		},
		{
			name:  "a panic fails one resource",
			specs: []string{"a panic", "b"},
			want:  map[string]string{"a": "failed", "b": "changed"},
		},
		{
			name:  "refresh reaches an in-sync target once, after it converged",
			specs: []string{"conf notify=svc", "conf2 notify=svc", "svc"},
			pre:   map[string]string{"fake:svc": "v"},
			want:  map[string]string{"conf": "changed", "conf2": "changed", "svc": "in-sync+refreshed"},
		},
		{
			name:  "no refresh for a target that changed itself",
			specs: []string{"conf notify=svc", "svc"},
			want:  map[string]string{"conf": "changed", "svc": "changed"},
		},
		{
			name:  "no refresh when the source did not change",
			specs: []string{"conf notify=svc", "svc"},
			pre:   map[string]string{"fake:svc": "v", "fake:conf": "v"},
			want:  map[string]string{"conf": "in-sync", "svc": "in-sync"},
		},
		{
			name:  "an audit resource in sync is in sync",
			specs: []string{"a audit"},
			pre:   map[string]string{"fake:a": "v"},
			want:  map[string]string{"a": "in-sync"},
		},
		{
			name:  "a drifted audit resource is drift; it notifies nothing and its dependents run",
			specs: []string{"a audit notify=svc", "b require=a", "svc"},
			pre:   map[string]string{"fake:a": "hand", "fake:svc": "v"},
			want:  map[string]string{"a": "drift", "b": "changed", "svc": "in-sync"},
		},
		{
			name:  "a notified audit resource is never refreshed",
			specs: []string{"conf notify=svc", "svc audit"},
			pre:   map[string]string{"fake:svc": "v"},
			want:  map[string]string{"conf": "changed", "svc": "in-sync"},
		},
		{
			name:  "noop: a drifted audit resource is drift, and its dependents are not unknown because of it",
			specs: []string{"a audit", "b require=a"},
			noop:  true,
			pre:   map[string]string{"fake:a": "hand", "fake:b": "v"},
			want:  map[string]string{"a": "drift", "b": "in-sync"},
		},
		{
			name:  "an audit resource whose check fails is a failure",
			specs: []string{"a audit fail_check", "b require=a"},
			want:  map[string]string{"a": "failed", "b": "skipped"},
		},
		{
			name:  "noop reports would-change, unknown for dependents, would refresh",
			specs: []string{"dir", "file require=dir notify=svc", "svc", "other"},
			noop:  true,
			pre:   map[string]string{"fake:svc": "v", "fake:other": "v"},
			want:  map[string]string{"dir": "changed", "file": "unknown", "svc": "unknown+would refresh", "other": "in-sync"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFake()
			for k, v := range tt.pre {
				f.host[k] = v
			}
			before := len(f.host)
			events := Converge(context.Background(), &resources.Host{Root: t.TempDir()}, fakeCatalog(tt.specs...),
				ConvergeOptions{Noop: tt.noop, Types: map[string]resources.Type{"fake": f}})
			if diff := cmp.Diff(tt.want, statuses(events)); diff != "" {
				t.Errorf("statuses (-want +got):\n%s", diff)
			}
			if tt.noop && (len(f.applied) > 0 || len(f.refreshed) > 0 || len(f.host) != before) {
				t.Errorf("noop applied %v, refreshed %v", f.applied, f.refreshed)
			}
			for _, id := range append(f.applied, f.refreshed...) {
				if strings.Contains(strings.Join(tt.specs, "\n"), strings.TrimPrefix(id, "fake:")+" audit") {
					t.Errorf("the audit resource %s was applied or refreshed (applied %v, refreshed %v)", id, f.applied, f.refreshed)
				}
			}
			for _, e := range events {
				if e.Status == Drift && (len(e.Changes) == 0 || e.Changes[0].From != tt.pre[e.ID] || e.Noop) {
					t.Errorf("drift event %+v: want the changes that say what differs, not noop", e)
				}
			}
			for _, e := range events {
				if e.Status == Skipped && !strings.Contains(e.Cause, "fake:a failed") {
					t.Errorf("%s skipped with cause %q, want it to name fake:a", e.ID, e.Cause)
				}
				if e.Status == Failed && e.Error == "" {
					t.Errorf("%s failed without an error", e.ID)
				}
			}
		})
	}
}

func TestConvergeOrderAndParallelism(t *testing.T) {
	t.Parallel()
	// A chain must run in order; eight independent resources may overlap
	// but never beyond the bound.
	specs := []string{"c1", "c2 require=c1", "c3 require=c2"}
	for _, id := range []string{"p1", "p2", "p3", "p4", "p5", "p6", "p7", "p8"} {
		specs = append(specs, id+" sleep_ms=xxxxxxxxxxxxxxxxxxxx") // 20 ms each
	}
	f := newFake()
	Converge(context.Background(), &resources.Host{}, fakeCatalog(specs...), ConvergeOptions{Parallel: 3, Types: map[string]resources.Type{"fake": f}})
	var chain []string
	for _, id := range f.order {
		if strings.HasPrefix(id, "fake:c") {
			chain = append(chain, id)
		}
	}
	// Each chain link is checked twice (check, re-check after apply).
	if want := []string{"fake:c1", "fake:c1", "fake:c2", "fake:c2", "fake:c3", "fake:c3"}; !cmp.Equal(chain, want) {
		t.Errorf("chain order = %v, want %v", chain, want)
	}
	if m := f.maxRun.Load(); m > 3 {
		t.Errorf("%d resources ran at once, bound is 3", m)
	}
}

func TestConvergeSecondRunNeverApplies(t *testing.T) {
	t.Parallel()
	f := newFake()
	cat := fakeCatalog("a", "b require=a notify=c", "c")
	Converge(context.Background(), &resources.Host{}, cat, ConvergeOptions{Types: map[string]resources.Type{"fake": f}})
	f.applied, f.refreshed = nil, nil
	events := Converge(context.Background(), &resources.Host{}, cat, ConvergeOptions{Types: map[string]resources.Type{"fake": f}})
	for _, e := range events {
		if e.Status != InSync || e.Refresh != "" {
			t.Errorf("second run: %s is %s %s", e.ID, e.Status, e.Refresh)
		}
	}
	if len(f.applied)+len(f.refreshed) > 0 {
		t.Errorf("second run applied %v and refreshed %v", f.applied, f.refreshed)
	}
}

func TestConvergeRedactsSensitiveChanges(t *testing.T) {
	t.Parallel()
	f := newFake()
	cat := fakeCatalog("a secret value=hunter2")
	for _, noop := range []bool{true, false} {
		var emitted []Event
		events := Converge(context.Background(), &resources.Host{}, cat, ConvergeOptions{Noop: noop, Types: map[string]resources.Type{"fake": f},
			Emit: func(e Event) { emitted = append(emitted, e) }})
		for _, e := range append(events, emitted...) {
			for _, c := range e.Changes {
				if strings.Contains(c.From+c.To+c.Diff, "hunter2") {
					t.Errorf("noop=%v: a sensitive value reached an event: %+v", noop, c)
				}
			}
		}
	}
}

func TestConvergeInterrupted(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	f := newFake()
	events := Converge(ctx, &resources.Host{}, fakeCatalog("a", "b require=a"), ConvergeOptions{Types: map[string]resources.Type{"fake": f}})
	for _, e := range events {
		if e.Status != Skipped || e.Cause != "run interrupted" {
			t.Errorf("%s: %s %q, want skipped: run interrupted", e.ID, e.Status, e.Cause)
		}
	}
	if len(f.applied) > 0 {
		t.Errorf("an interrupted run applied %v", f.applied)
	}
}

func TestConvergeCycleInHandMadeCatalog(t *testing.T) {
	t.Parallel()
	cat := fakeCatalog("a require=b", "b require=a", "c")
	done := make(chan []Event)
	go func() {
		done <- Converge(context.Background(), &resources.Host{}, cat, ConvergeOptions{Types: map[string]resources.Type{"fake": newFake()}})
	}()
	select {
	case events := <-done:
		if got := statuses(events); got["a"] != "failed" || got["b"] != "failed" || got["c"] != "changed" {
			t.Errorf("statuses = %v", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Converge hung on a cycle")
	}
}

func TestUnknownTypeFails(t *testing.T) {
	t.Parallel()
	cat := &catalogs.Catalog{Resources: []catalogs.Resource{{ID: "widget:x", Type: "widget", Name: "x"}}}
	events := Converge(context.Background(), &resources.Host{}, cat, ConvergeOptions{Types: map[string]resources.Type{}})
	if events[0].Status != Failed || !strings.Contains(events[0].Error, "widget") {
		t.Errorf("event = %+v", events[0])
	}
}

// TestIgnoreTheTypeCannotHonour: a hand-made catalog's ignore that the
// type would not act on fails the resource instead of being dropped; one
// it honours passes through to the type.
func TestIgnoreTheTypeCannotHonour(t *testing.T) {
	t.Parallel()
	res := func(typ, name string, ignore ...string) catalogs.Resource {
		return catalogs.Resource{ID: typ + ":" + name, Type: typ, Name: name, Attrs: map[string]any{"ignore": ignore}}
	}
	cat := &catalogs.Catalog{Resources: []catalogs.Resource{
		res("exec", "migrate", "command"),
		res("package", "nginx", "ensure"),
		res("service", "app", "restart"),
		// The types converged whole (an edit, a job, a parameter, an
		// fstab entry) have nothing ignore could name.
		res("line", "l", "line"),
		res("ini", "i", "value"),
		res("cron", "c", "user"),
		res("sysctl", "vm.swappiness", "value"),
		res("mount", "/srv", "options"),
	}}
	fake := newFake()
	events := Converge(context.Background(), &resources.Host{}, cat, ConvergeOptions{Types: map[string]resources.Type{"exec": fake, "package": fake, "service": fake, "line": fake, "ini": fake, "cron": fake, "sysctl": fake, "mount": fake}})
	got := map[string]Event{}
	for _, e := range events {
		got[e.ID] = e
	}
	for id, want := range map[string]string{
		"exec:migrate": "converged whole", "service:app": "cannot leave restart alone",
		"line:l": "converged whole", "ini:i": "converged whole", "cron:c": "converged whole",
		"sysctl:vm.swappiness": "converged whole", "mount:/srv": "converged whole",
	} {
		if e := got[id]; e.Status != Failed || !strings.Contains(e.Error, want) {
			t.Errorf("%s: %s %q, want failed with %q", id, e.Status, e.Error, want)
		}
	}
	if e := got["package:nginx"]; e.Status == Failed {
		t.Errorf("package:nginx with ignore = [ensure] failed: %s", e.Error)
	}
}

func TestExitCode(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		s    Summary
		want int
	}{
		{Summary{InSync: 3}, 0},
		{Summary{Changed: 1}, 2},
		{Summary{Failed: 1}, 4},
		{Summary{Changed: 1, Skipped: 1}, 6},
		{Summary{Refreshed: 1}, 2},
		// Drift is a difference, as a noop would-change is, never a failure.
		{Summary{Drift: 1, InSync: 2}, 2},
	} {
		r := Report{Summary: tt.s}
		if got := r.ExitCode(); got != tt.want {
			t.Errorf("ExitCode(%+v) = %d, want %d", tt.s, got, tt.want)
		}
	}
}

// blockType's Check waits for its context and returns its error, as a
// type blocked on something other than a command would.
type blockType struct{}

func (blockType) Check(ctx context.Context, _ *resources.Host, _ *catalogs.Resource) (*resources.Plan, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func (blockType) Apply(context.Context, *resources.Host, *resources.Plan) error { return nil }

// pollType's Check polls its context's Err until it fails, never
// calling Done, as a type reading many files in a loop would.
type pollType struct{}

func (pollType) Check(ctx context.Context, _ *resources.Host, _ *catalogs.Resource) (*resources.Plan, error) {
	for ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	return nil, ctx.Err()
}

func (pollType) Apply(context.Context, *resources.Host, *resources.Plan) error { return nil }

// TestDeadlineCtx: a resource's context without a timer ends like one
// with: at its deadline, or with its parent, and never outlives it.
func TestDeadlineCtx(t *testing.T) {
	t.Parallel()
	cause := &resourceTimeout{time.Minute}
	parent, cancel := context.WithCancel(context.Background())
	c := &deadlineCtx{Context: parent, deadline: time.Now().Add(time.Hour), cause: cause}
	if err := c.Err(); err != nil {
		t.Fatalf("Err() = %v before anything ended", err)
	}
	if d, ok := c.Deadline(); !ok || time.Until(d) < 59*time.Minute {
		t.Errorf("Deadline() = %v, %v; want in an hour", d, ok)
	}
	cancel()
	if err := c.Err(); err != context.Canceled {
		t.Errorf("Err() after the parent ended = %v, want Canceled", err)
	}
	<-c.Done() // armed after the parent ended: closed at once

	past := &deadlineCtx{Context: context.Background(), deadline: time.Now().Add(-time.Second), cause: cause}
	if err := past.Err(); err != context.DeadlineExceeded {
		t.Errorf("Err() past the deadline = %v, want DeadlineExceeded", err)
	}
	if got := causeOf(past); got != cause {
		t.Errorf("causeOf past the deadline, unarmed = %v, want the resource timeout", got)
	}
	<-past.Done()
	if got := context.Cause(past); got != cause {
		t.Errorf("context.Cause past the deadline, armed = %v, want the resource timeout", got)
	}

	released := &deadlineCtx{Context: context.Background(), deadline: time.Now().Add(time.Hour), cause: cause}
	released.release()
	<-released.Done() // a goroutine left behind by a type is not kept for an hour
}

// TestConvergeTimeoutMessages: a timeout's message quotes the limit that
// fired (the resource's or the command's own), once.
func TestConvergeTimeoutMessages(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name            string
		res             catalogs.Resource
		resourceTimeout time.Duration
		want            string
	}{{
		name: "the resource timeout ends a command with a longer one",
		res: catalogs.Resource{ID: "exec:slow", Type: "exec", Name: "slow",
			Attrs: map[string]any{"command": []string{"/bin/sleep", "60"}, "timeout": "15m"}},
		resourceTimeout: 200 * time.Millisecond,
		want:            "apply: exec slow: running /bin/sleep: the resource timed out after 200ms; killed its process group",
	}, {
		name: "the command's own timeout",
		res: catalogs.Resource{ID: "exec:slow", Type: "exec", Name: "slow",
			Attrs: map[string]any{"command": []string{"/bin/sleep", "60"}, "timeout": "200ms"}},
		resourceTimeout: time.Hour,
		want:            "apply: exec slow: running /bin/sleep: timed out after 200ms; killed its process group",
	}, {
		name:            "a type that polls its context's error and never waits on Done",
		res:             catalogs.Resource{ID: "poll:x", Type: "poll", Name: "x"},
		resourceTimeout: 200 * time.Millisecond,
		want:            "check: context deadline exceeded (the resource timed out after 200ms)",
	}, {
		name: "a type that returns its context's error",
		res:  catalogs.Resource{ID: "block:x", Type: "block", Name: "x"},

		resourceTimeout: 200 * time.Millisecond,
		want:            "check: context deadline exceeded (the resource timed out after 200ms)",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			root := t.TempDir()
			h := &resources.Host{Root: root, Run: func(ctx context.Context, c resources.Cmd) (resources.Result, error) {
				return resources.RunCommand(ctx, root, c)
			}}
			types := resources.Types()
			types["block"] = blockType{}
			types["poll"] = pollType{}
			cat := &catalogs.Catalog{Node: "test", Resources: []catalogs.Resource{tt.res}}
			evs := Converge(context.Background(), h, cat, ConvergeOptions{ResourceTimeout: tt.resourceTimeout, Types: types})
			if len(evs) != 1 || evs[0].Status != Failed || evs[0].Error != tt.want {
				t.Errorf("Converge = %+v\nwant failed with %q", evs, tt.want)
			}
		})
	}
}

// BenchmarkConvergeNoChange20k converges 20,000 in-sync files (content
// and mode) in a temporary root: the memory a run holds per resource (the
// engine's graph and events, each Check's plan) is the cost measured.
func BenchmarkConvergeNoChange20k(b *testing.B) {
	root := b.TempDir()
	const n, dirs = 20000, 100
	var rs []catalogs.Resource
	for d := range dirs {
		if err := os.MkdirAll(filepath.Join(root, fmt.Sprintf("srv/d%03d", d)), 0o755); err != nil {
			b.Fatal(err)
		}
	}
	for i := range n {
		p := fmt.Sprintf("/srv/d%03d/f%05d.conf", i%dirs, i)
		content := fmt.Sprintf("setting = %d\n", i)
		if err := os.WriteFile(filepath.Join(root, p), []byte(content), 0o644); err != nil {
			b.Fatal(err)
		}
		rs = append(rs, catalogs.Resource{ID: "file:" + p, Type: "file", Name: p, Source: "roles/test.toml:1",
			Attrs: map[string]any{"path": p, "content": content, "mode": "0644"}})
	}
	cat := &catalogs.Catalog{Node: "test", Resources: rs}
	slices.SortFunc(cat.Resources, func(a, b catalogs.Resource) int { return strings.Compare(a.ID, b.ID) })
	h := &resources.Host{Root: root, Catalog: cat}
	b.ReportAllocs()
	for b.Loop() {
		evs := Converge(context.Background(), h, cat, ConvergeOptions{})
		if len(evs) != n || evs[0].Status != InSync || evs[n-1].Status != InSync {
			b.Fatalf("Converge: %d events, first %+v", len(evs), evs[0])
		}
	}
}
