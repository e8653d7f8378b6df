package agent

import (
	"cmp"
	"context"
	"crypto/ecdh"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/herdcm/herd/agent/resources"
	"github.com/herdcm/herd/catalogs"
)

// ConvergeOptions tune one convergence.
type ConvergeOptions struct {
	// Noop checks only: nothing is applied and nothing refreshed.
	Noop bool
	// Parallel bounds how many resources are checked or applied at once
	// (default 4). Resources run in dependency order regardless.
	Parallel int
	// ResourceTimeout bounds one resource's check, apply and re-check
	// (default 10 minutes); its commands' process groups are killed then.
	ResourceTimeout time.Duration
	// Types maps a resource type to its implementation (default
	// resources.Types()).
	Types map[string]resources.Type
	// Emit receives every event as it happens (for a live terminal view);
	// may be nil.
	Emit func(Event)
	// NodeKey is the node's own X25519 key, which opens the catalog's
	// sealed values (catalogs.Sealed) in memory just before a resource is
	// checked. Nil: a resource with a sealed value fails, and nothing
	// else does.
	NodeKey *ecdh.PrivateKey

	timeout *resourceTimeout // the cause of every resource's deadline, made once a run
}

// node is one resource during a run. Only the goroutine that runs it
// writes ev; the scheduler reads it after that goroutine reported done.
type node struct {
	res        *catalogs.Resource
	deps       []*node
	dependents []*node
	notifiers  []*node // resources that refresh this one when they change
	waiting    int     // dependencies not finished yet
	ev         *Event  // this resource's slot in the run's events
	ctx        deadlineCtx
	pending    bool   // noop: this resource's change was not made
	blame      string // the failed resource that made this one skip
}

// Converge makes the host match cat and returns one event per resource,
// sorted by id. Cancelling ctx stops the run between resources: those not
// started are skipped with the cause "run interrupted".
func Converge(ctx context.Context, h *resources.Host, cat *catalogs.Catalog, opts ConvergeOptions) []Event {
	if opts.Parallel <= 0 {
		opts.Parallel = 4
	}
	if opts.ResourceTimeout <= 0 {
		opts.ResourceTimeout = 10 * time.Minute
	}
	if opts.Types == nil {
		opts.Types = resources.Types()
	}
	opts.timeout = &resourceTimeout{opts.ResourceTimeout}
	// The events are the run's only per-resource output: each node
	// writes its own slot, so that no copy of them is made at the end.
	events := make([]Event, len(cat.Resources))
	nodes := buildGraph(cat, events)

	var (
		mu    sync.Mutex
		ready []*node
		wg    sync.WaitGroup
		sem   = make(chan struct{}, opts.Parallel)
		done  = make(chan *node, len(nodes))
	)
	for i := range nodes {
		if n := &nodes[i]; n.waiting == 0 {
			ready = append(ready, n)
		}
	}
	finished, inflight := 0, 0
	for finished < len(nodes) {
		mu.Lock()
		batch := ready
		ready = nil
		mu.Unlock()
		for _, n := range batch {
			inflight++
			if ctx.Err() != nil {
				*n.ev = Event{ID: n.res.ID, Type: n.res.Type, Source: n.res.Source, Status: Skipped, Cause: "run interrupted"}
				done <- n
				continue
			}
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				converge(ctx, h, n, opts)
				done <- n
			}()
		}
		if inflight == 0 {
			// Nothing runs and nothing is ready: the rest wait on each
			// other. The compiler rejects cycles, so only a hand-made
			// catalog gets here; fail them rather than hang.
			failCycle(nodes)
			break
		}
		n := <-done
		inflight--
		finished++
		if opts.Emit != nil {
			opts.Emit(*n.ev)
		}
		for _, d := range n.dependents {
			d.waiting--
			if d.waiting == 0 {
				mu.Lock()
				ready = append(ready, d)
				mu.Unlock()
			}
		}
	}
	wg.Wait()
	// A canonical catalog is sorted by id already; a hand-made one may not be.
	if !slices.IsSortedFunc(events, func(a, b Event) int { return cmp.Compare(a.ID, b.ID) }) {
		slices.SortFunc(events, func(a, b Event) int { return cmp.Compare(a.ID, b.ID) })
	}
	return events
}

func failCycle(nodes []node) {
	var stuck []string
	for i := range nodes {
		if n := &nodes[i]; n.waiting > 0 {
			stuck = append(stuck, n.res.ID)
		}
	}
	slices.Sort(stuck)
	for i := range nodes {
		if n := &nodes[i]; n.waiting > 0 {
			*n.ev = Event{ID: n.res.ID, Type: n.res.Type, Source: n.res.Source, Status: Failed,
				Error: "dependency cycle among " + strings.Join(stuck, ", ")}
		}
	}
}

// buildGraph links the catalog's resources by their require edges, and
// makes every notify target wait for its notifier. The compiler already
// rejected missing references and cycles; an edge to an unknown id (a
// hand-made catalog) is ignored rather than deadlocking.
func buildGraph(cat *catalogs.Catalog, events []Event) []node {
	nodes := make([]node, len(cat.Resources))
	for i := range cat.Resources {
		nodes[i].res = &cat.Resources[i]
		nodes[i].ev = &events[i]
	}
	lookup := nodeLookup(cat, nodes)
	for i := range nodes {
		n := &nodes[i]
		for _, id := range n.res.Require {
			if d := lookup(id); d != nil && d != n {
				n.deps = append(n.deps, d)
				d.dependents = append(d.dependents, n)
				n.waiting++
			}
		}
		for _, id := range n.res.Notify {
			t := lookup(id)
			if t == nil || t == n {
				continue
			}
			t.notifiers = append(t.notifiers, n)
			// A refresh is decided after the notifier ran, so the target
			// waits for it. The compiler writes that edge as a require
			// too; the engine does not count on it.
			if !slices.Contains(t.res.Require, n.res.ID) {
				t.deps = append(t.deps, n)
				n.dependents = append(n.dependents, t)
				t.waiting++
			}
		}
	}
	return nodes
}

// nodeLookup finds a node by resource id: by binary search in a catalog
// sorted by id (every compiled one), which costs no memory per resource;
// through a map otherwise (a hand-made catalog).
func nodeLookup(cat *catalogs.Catalog, nodes []node) func(id string) *node {
	less := func(a, b catalogs.Resource) int { return cmp.Compare(a.ID, b.ID) }
	if slices.IsSortedFunc(cat.Resources, less) {
		return func(id string) *node {
			i, ok := slices.BinarySearchFunc(cat.Resources, id, func(r catalogs.Resource, id string) int { return cmp.Compare(r.ID, id) })
			if !ok {
				return nil
			}
			return &nodes[i]
		}
	}
	byID := make(map[string]*node, len(nodes))
	for i := range nodes {
		byID[nodes[i].res.ID] = &nodes[i]
	}
	return func(id string) *node { return byID[id] }
}

// converge runs one resource: skip, check, apply, re-check, refresh.
func converge(ctx context.Context, h *resources.Host, n *node, opts ConvergeOptions) {
	start := time.Now()
	*n.ev = Event{ID: n.res.ID, Type: n.res.Type, Source: n.res.Source}
	var sc *secrets // set when the resource is sensitive
	defer func() {
		if p := recover(); p != nil {
			// A bug in one type fails that resource, not the run.
			n.ev.Status = Failed
			n.ev.Error = fmt.Sprintf("panic: %v\n%s", p, firstFrames(debug.Stack()))
		}
		if sc != nil {
			// Last, whatever path made the event: a panic's message
			// may quote a value too.
			sc.redactEvent(n.ev)
		}
		n.ev.Duration = time.Since(start)
	}()
	for _, d := range n.deps {
		if d.ev.Status == Failed || d.ev.Status == Skipped {
			n.ev.Status = Skipped
			n.blame = d.res.ID
			if d.blame != "" {
				n.blame = d.blame
			}
			n.ev.Cause = "dependency " + n.blame + " failed"
			return
		}
	}
	typ, ok := opts.Types[n.res.Type]
	if !ok {
		fail(ctx, n, fmt.Errorf("no implementation of resource type %q in this agent", n.res.Type))
		return
	}
	if err := checkIgnore(n.res); err != nil {
		fail(ctx, n, err)
		return
	}
	// Types see plain values and never know: the sealed ones are opened
	// here, into a copy that lives for this resource's turn.
	res, sc, err := openSealed(n.res, opts.NodeKey)
	if err != nil {
		fail(ctx, n, err)
		return
	}
	if sc != nil {
		rh := *h
		rh.Log = sc.logger(h.Log)
		h = &rh
	}
	n.ctx = deadlineCtx{Context: ctx, deadline: time.Now().Add(opts.ResourceTimeout), cause: opts.timeout}
	defer n.ctx.release()
	ctx = &n.ctx

	var pendingDep string
	if opts.Noop {
		for _, d := range n.deps {
			if d.pending {
				pendingDep = d.res.ID
				break
			}
		}
	}
	plan, err := typ.Check(ctx, h, res)
	switch {
	case err != nil && pendingDep != "":
		n.ev.Status, n.pending = Unknown, true
		n.ev.Cause = fmt.Sprintf("depends on %s, which would change first (check said: %v)", pendingDep, err)
		return
	case err != nil:
		fail(ctx, n, fmt.Errorf("check: %w", err))
		return
	}
	if sc != nil {
		sc.markChanges(plan.Changes)
	}
	n.ev.Changes = redact(plan.Changes)
	if res.Bool("audit") {
		// Audit versus enforce: an audit resource is checked in every
		// run and never applied or refreshed. Its drift is no change, so
		// it notifies nothing, and it is no failure, so its dependents
		// run; nor is it pending in noop: nothing will change it.
		if !plan.InSync() {
			n.ev.Status = Drift
		} else {
			n.ev.Status = InSync
		}
		return
	}
	if opts.Noop {
		switch {
		case pendingDep != "":
			n.ev.Status, n.pending = Unknown, true
			n.ev.Cause = "depends on " + pendingDep + ", which would change first"
			n.ev.Noop = !plan.InSync()
		case !plan.InSync():
			n.ev.Status, n.ev.Noop, n.pending = Changed, true, true
		default:
			n.ev.Status = InSync
		}
		if notifier := changedNotifier(n); notifier != "" {
			if _, ok := typ.(resources.Refresher); ok {
				n.ev.Refresh = "would refresh"
				n.ev.Cause = strings.TrimPrefix(n.ev.Cause+"; ", "; ") + "notified by " + notifier
			}
		}
		return
	}
	if plan.InSync() {
		n.ev.Status = InSync
	} else {
		err := typ.Apply(ctx, h, plan)
		n.ev.Output = plan.Output
		if err != nil {
			fail(ctx, n, fmt.Errorf("apply: %w", err))
			return
		}
		again, err := typ.Check(ctx, h, res)
		if err != nil {
			fail(ctx, n, fmt.Errorf("check after apply: %w", err))
			return
		}
		if sc != nil {
			sc.markChanges(again.Changes)
		}
		if left := notConverged(again.Changes); len(left) > 0 {
			fail(ctx, n, fmt.Errorf("did not converge: still %s after apply", describe(left)))
			return
		}
		n.ev.Status = Changed
	}
	// A refresh reaches a resource once, after it converged, and only when
	// it did not change itself: a service just started or restarted for a
	// new spec needs no second restart.
	if notifier := changedNotifier(n); notifier != "" && n.ev.Status == InSync {
		if r, ok := typ.(resources.Refresher); ok {
			if err := r.Refresh(ctx, h, res); err != nil {
				fail(ctx, n, fmt.Errorf("refresh (notified by %s): %w", notifier, err))
				return
			}
			n.ev.Refresh = "refreshed"
			n.ev.Cause = "notified by " + notifier
		}
	}
}

// changedNotifier names a resource that changed and notifies n, if any.
func changedNotifier(n *node) string {
	var ids []string
	for _, s := range n.notifiers {
		// In noop, an unknown notifier whose check saw changes would
		// most likely change too.
		if s.ev.Status == Changed || (s.ev.Status == Unknown && s.ev.Noop) {
			ids = append(ids, s.res.ID)
		}
	}
	slices.Sort(ids)
	return strings.Join(ids, ", ")
}

// fail marks n failed with err. When the resource's own timeout ended
// it and err does not say so (a type that returned ctx.Err()), the
// message adds it, quoting that limit and no other.
func fail(ctx context.Context, n *node, err error) {
	n.ev.Status = Failed
	n.ev.Error = err.Error()
	var rt *resourceTimeout
	if !errors.As(err, &rt) && errors.As(causeOf(ctx), &rt) {
		n.ev.Error += " (" + rt.Error() + ")"
	}
}

// resourceTimeout is the cause of a resource's context ending at
// ConvergeOptions.ResourceTimeout. Commands quote it when it kills them.
type resourceTimeout struct{ after time.Duration }

func (e *resourceTimeout) Error() string {
	return "the resource timed out after " + e.after.String()
}
func (e *resourceTimeout) Timeout() bool        { return true }
func (e *resourceTimeout) Is(target error) bool { return target == context.DeadlineExceeded }

// notConverged returns the changes of a re-check after Apply that count
// against the resource: all but those whose successful Apply is
// convergence.
func notConverged(cs []resources.Change) []resources.Change {
	var left []resources.Change
	for _, c := range cs {
		if !c.Converges {
			left = append(left, c)
		}
	}
	return left
}

// describe summarises changes for an error message.
func describe(cs []resources.Change) string {
	var parts []string
	for _, c := range cs {
		switch {
		case c.Sensitive:
			parts = append(parts, c.Attr+" (sensitive)")
		case c.From != "" || c.To != "":
			parts = append(parts, fmt.Sprintf("%s %s → %s", c.Attr, c.From, c.To))
		default:
			parts = append(parts, c.Attr)
		}
	}
	return strings.Join(parts, ", ")
}

// firstFrames keeps the top of a stack trace: enough to find the bug,
// short enough for a report.
func firstFrames(stack []byte) string {
	lines := strings.Split(string(stack), "\n")
	if len(lines) > 16 {
		lines = lines[:16]
	}
	return strings.Join(lines, "\n")
}

// deadlineCtx is a resource's context: its parent with the resource's
// deadline, whose timer and cancel context are made only when something
// waits on Done (a command, a type blocking on I/O). Most checks only
// read files and never wait, so that a no-change run of 20,000 files
// makes no timer at all. It lives in the resource's node: no allocation
// either.
type deadlineCtx struct {
	context.Context // the run's
	deadline        time.Time
	cause           error

	mu       sync.Mutex
	inner    context.Context // made by the first Done
	cancel   context.CancelFunc
	released bool // the resource is done: a later Done is closed at once
}

// Deadline is the sooner of the parent's and the resource's.
func (c *deadlineCtx) Deadline() (time.Time, bool) {
	if d, ok := c.Context.Deadline(); ok && d.Before(c.deadline) {
		return d, true
	}
	return c.deadline, true
}

// Done arms the deadline: from then on the inner context answers.
func (c *deadlineCtx) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.inner == nil {
		c.inner, c.cancel = context.WithDeadlineCause(c.Context, c.deadline, c.cause)
		if c.released {
			c.cancel()
		}
	}
	return c.inner.Done()
}

func (c *deadlineCtx) armed() context.Context {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.inner
}

// Err is the inner context's once armed; before, the parent's, or
// DeadlineExceeded past the deadline.
func (c *deadlineCtx) Err() error {
	if in := c.armed(); in != nil {
		return in.Err()
	}
	if err := c.Context.Err(); err != nil {
		return err
	}
	if !time.Now().Before(c.deadline) {
		return context.DeadlineExceeded
	}
	return nil
}

// Value answers from the inner context once armed, so that a context
// derived from this one (a command's timeout) finds its cancel chain and
// context.Cause finds the resource timeout.
func (c *deadlineCtx) Value(key any) any {
	if in := c.armed(); in != nil {
		return in.Value(key)
	}
	return c.Context.Value(key)
}

// release stops the timer, if one was made.
func (c *deadlineCtx) release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.released = true
	if c.cancel != nil {
		c.cancel()
	}
}

// causeOf is context.Cause, also for a deadlineCtx whose deadline passed
// while nothing waited on it.
func causeOf(ctx context.Context) error {
	if c, ok := ctx.(*deadlineCtx); ok && c.armed() == nil {
		if err := c.Err(); err == context.DeadlineExceeded && c.Context.Err() == nil {
			return c.cause
		}
	}
	return context.Cause(ctx)
}

// checkIgnore refuses an ignore the resource's type cannot honour. The
// compiler refuses it too; a hand-made catalog must not have the setting
// silently dropped.
func checkIgnore(r *catalogs.Resource) error {
	ig := r.Strings("ignore")
	if len(ig) == 0 {
		return nil
	}
	s, ok := catalogs.Schemas[r.Type]
	if !ok {
		return nil
	}
	for _, a := range ig {
		if !slices.Contains(s.Ignorable, a) {
			if len(s.Ignorable) == 0 {
				return fmt.Errorf("ignore %q: every %s resource is converged whole: it has no attribute the agent could leave alone", ig, r.Type)
			}
			return fmt.Errorf("ignore %q: the agent cannot leave %s alone for %s (it can: %s)", ig, a, r.Type, strings.Join(s.Ignorable, ", "))
		}
	}
	return nil
}
