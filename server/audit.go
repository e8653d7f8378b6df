package server

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"maps"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/herdcm/herd/api/herdv1"
	"github.com/herdcm/herd/catalogs"
	"github.com/herdcm/herd/policies"
	"github.com/herdcm/herd/server/store"
)

// DefaultAuditStale is how long a node may go without a report before
// every control says no-data of it (Options.AuditStale).
const DefaultAuditStale = 2 * time.Hour

// auditBatch is how many nodes' results one store write carries during a
// whole-fleet evaluation.
const auditBatch = 500

// auditor evaluates the served version's audit controls per node, in the
// background, when something a node's input is made of changes: its
// facts, a report, its approved catalog, or the site version (then every
// node). It is never a timer over the fleet: the only periodic work is a
// sweep of the in-memory report times, which queues the nodes that
// became stale (no-data).
type auditor struct {
	mu    sync.Mutex
	dirty map[string]bool
	all   bool
	wake  chan struct{}
	nodes map[string]*auditNode
	// gone holds the nodes purged since they were last queued: an
	// evaluation under way when its node was purged stores nothing.
	gone map[string]bool
	// done is closed and replaced after each pass, for tests that await
	// one (awaitAudits).
	done chan struct{}
	// passes counts the passes that finished.
	passes int
}

// auditNode is what the auditor keeps of one node between evaluations:
// the parts of its input drawn from reports (read from the store once,
// then kept from each report received) and the digest of the results it
// last stored.
type auditNode struct {
	loaded bool
	report *policies.RunReport // last real run
	drift  []policies.Drift    // of the newest report that checked the host
	// checked is the start of that report, ordering late ones;
	// received the newest receipt of either, for staleness.
	checked  time.Time
	received time.Time
	digest   [32]byte
	stale    bool // judged no-data at the last evaluation
}

func (a *auditor) init() {
	a.dirty = map[string]bool{}
	a.wake = make(chan struct{}, 1)
	a.nodes = map[string]*auditNode{}
	a.gone = map[string]bool{}
	a.done = make(chan struct{})
}

// touch queues node for evaluation.
func (a *auditor) touch(node string) {
	a.mu.Lock()
	a.dirty[node] = true
	delete(a.gone, node)
	a.mu.Unlock()
	a.poke()
}

// touchAll queues every node: the site's version changed.
func (a *auditor) touchAll() {
	a.mu.Lock()
	a.all = true
	a.mu.Unlock()
	a.poke()
}

func (a *auditor) poke() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// node returns node's record, made if missing. Callers hold a.mu.
func (a *auditor) node(node string) *auditNode {
	n := a.nodes[node]
	if n == nil {
		n = &auditNode{}
		a.nodes[node] = n
	}
	return n
}

// forget drops node's record (a purged node).
func (a *auditor) forget(node string) {
	a.mu.Lock()
	delete(a.nodes, node)
	delete(a.dirty, node)
	a.gone[node] = true
	a.mu.Unlock()
}

// reported takes in a report the server stored, keeping the parts of it
// the controls read, and queues the node.
func (a *auditor) reported(node string, r store.Report) {
	a.mu.Lock()
	// Folded in even before the store's reports are read: applyReport
	// orders by start, so a read that began before this report was
	// stored cannot put an older run over it.
	applyReport(a.node(node), r)
	a.mu.Unlock()
	a.touch(node)
}

// applyReport folds r into n: a real run that started no earlier than
// the last run is the last run; a real or audit run that started no
// earlier than the last check gives the drift. Callers hold the
// auditor's lock.
func applyReport(n *auditNode, r store.Report) {
	if r.Partial {
		// Some resources only: neither the node's last run nor its
		// drift.
		return
	}
	if r.Received.After(n.received) && (r.Audit || !r.Noop) {
		n.received = r.Received
	}
	if !r.Noop && (n.report == nil || r.Started.UnixMilli() >= n.report.StartedUnixMS) {
		n.report = runReport(r)
	}
	if (r.Audit || !r.Noop) && !r.Started.Before(n.checked) {
		n.checked = r.Started
		n.drift = driftOf(r)
	}
}

// runReport is r as input.report.
func runReport(r store.Report) *policies.RunReport {
	out := &policies.RunReport{RunID: r.RunID, Version: r.Version, CatalogDigest: r.CatalogDigest, StartedUnixMS: r.Started.UnixMilli(),
		Summary: policies.RunSummary{Resources: r.Summary.Resources, InSync: r.Summary.InSync, Changed: r.Summary.Changed,
			Failed: r.Summary.Failed, Skipped: r.Summary.Skipped, Unknown: r.Summary.Unknown, Refreshed: r.Summary.Refreshed}}
	for _, e := range r.Events {
		if e.Status == store.StatusInSync {
			continue
		}
		out.Events = append(out.Events, policies.RunEvent{ID: e.ID, Type: e.Type, Status: e.Status, Error: e.Error, Cause: e.Cause})
	}
	return out
}

// driftOf is the drift a report that checked the host found: its drift
// events, and in an audit run those that would change.
func driftOf(r store.Report) []policies.Drift {
	var out []policies.Drift
	for _, e := range r.Events {
		if e.Status != "drift" && !(r.Noop && e.Status == "changed") {
			continue
		}
		d := policies.Drift{ID: e.ID, Attrs: []policies.DriftAttr{}}
		var changes []*herdv1.Change
		if len(e.ChangesJSON) > 0 && json.Unmarshal(e.ChangesJSON, &changes) == nil {
			for _, c := range changes {
				d.Attrs = append(d.Attrs, policies.DriftAttr{Name: c.GetAttr(), From: c.GetFrom(), To: c.GetTo()})
			}
		}
		out = append(out, d)
	}
	return out
}

// runAudits evaluates the queued nodes until ctx ends.
func (s *Server) runAudits(ctx context.Context) {
	tick := time.NewTicker(min(s.opts.AuditStale/8+time.Second, time.Minute))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.audits.wake:
		case <-s.auditLead.won:
			// What the other servers queued while none led, or before
			// this one heard of it, is not known here: every node.
			s.audits.touchAll()
			continue
		case <-tick.C:
			s.queueStale(time.Now())
			continue
		}
		if !s.auditLead.Leading() {
			s.forwardAudits(ctx)
			continue
		}
		s.auditPass(ctx)
	}
}

// queueStale queues the nodes whose last report grew older than
// AuditStale since they were judged: they turn no-data.
func (s *Server) queueStale(now time.Time) {
	a := &s.audits
	a.mu.Lock()
	var stale []string
	for name, n := range a.nodes {
		if n.loaded && !n.stale && now.Sub(n.received) > s.opts.AuditStale {
			stale = append(stale, name)
		}
	}
	a.mu.Unlock()
	for _, name := range stale {
		a.touch(name)
	}
}

// auditPass evaluates what is queued: every known node after a site
// change, else the dirty ones, on GOMAXPROCS workers, and stores the
// results that changed.
func (s *Server) auditPass(ctx context.Context) {
	a := &s.audits
	a.mu.Lock()
	all, dirty := a.all, a.dirty
	a.all, a.dirty = false, map[string]bool{}
	a.mu.Unlock()
	if all {
		for _, n := range s.facts.nodes() {
			dirty[n] = true
		}
		s.compiles.mu.RLock()
		for n := range s.compiles.catalogs {
			dirty[n] = true
		}
		s.compiles.mu.RUnlock()
	}
	if len(dirty) > 0 {
		s.auditNodes(ctx, slices.Sorted(maps.Keys(dirty)))
	}
	a.mu.Lock()
	a.passes++
	close(a.done)
	a.done = make(chan struct{})
	a.mu.Unlock()
}

// auditNodes evaluates nodes, each by its environment's controls, and
// stores the result sets that changed, in batches. A node whose
// environment is not served keeps its results as last judged.
func (s *Server) auditNodes(ctx context.Context, nodes []string) {
	byEnv := map[*siteState][]string{}
	for _, node := range nodes {
		if st := s.envSite(node); st != nil {
			byEnv[st] = append(byEnv[st], node)
		}
	}
	for st, nodes := range byEnv {
		s.auditNodesAt(ctx, st, nodes)
	}
}

// auditNodesAt evaluates nodes by st's controls.
func (s *Server) auditNodesAt(ctx context.Context, st *siteState, nodes []string) {
	if st == nil || st.auditErr != "" {
		// Controls that do not compile judge nothing: the results stay
		// as last judged (their version says when), and herd audit and
		// herd status show the error.
		return
	}
	now := time.Now()
	// A full batch is written by the worker that filled it, outside the
	// lock, so that the other workers go on evaluating meanwhile.
	var mu sync.Mutex
	batch := map[string][]store.AuditRecord{}
	digests := map[string][32]byte{}
	write := func(batch map[string][]store.AuditRecord, digests map[string][32]byte) {
		s.audits.mu.Lock()
		for node := range batch {
			if s.audits.gone[node] {
				delete(batch, node)
			}
		}
		s.audits.mu.Unlock()
		if len(batch) == 0 {
			return
		}
		if _, err := s.st.SaveAudit(ctx, st.version, now, batch); err != nil {
			s.log.Error("storing audit results", "nodes", len(batch), "err", err)
			return
		}
		s.audits.mu.Lock()
		for node, d := range digests {
			if n := s.audits.nodes[node]; n != nil {
				n.digest = d
			}
		}
		s.audits.mu.Unlock()
	}
	flush := func() {
		mu.Lock()
		b, d := batch, digests
		batch, digests = map[string][]store.AuditRecord{}, map[string][32]byte{}
		mu.Unlock()
		write(b, d)
	}
	one := func(node string, pre map[string][]byte) {
		recs, digest, changed := s.auditNode(ctx, st, node, now, pre)
		if !changed {
			return
		}
		mu.Lock()
		batch[node], digests[node] = recs, digest
		if len(batch) < auditBatch {
			mu.Unlock()
			return
		}
		b, d := batch, digests
		batch, digests = map[string][]store.AuditRecord{}, map[string][32]byte{}
		mu.Unlock()
		write(b, d)
	}
	if len(nodes) == 1 {
		// A change to one node: on this goroutine, whose stack has
		// grown already.
		if !s.inactive.has(nodes[0]) {
			one(nodes[0], nil)
		}
		flush()
		return
	}
	// Long-lived workers rather than a goroutine per node: OPA's
	// evaluation recurses deeply, and a new goroutine grows its stack
	// again for every node. Each takes a chunk of nodes at a time and
	// reads the catalogs the chunk needs in one query.
	work := make(chan []string)
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(nodes)) {
		wg.Go(func() {
			for chunk := range work {
				pre := s.prefetchCatalogs(ctx, st, chunk)
				for _, node := range chunk {
					one(node, pre)
				}
			}
		})
	}
	active := make([]string, 0, len(nodes))
	for _, node := range nodes {
		if !s.inactive.has(node) {
			active = append(active, node)
		}
	}
	for chunk := range slices.Chunk(active, auditChunk) {
		select {
		case work <- chunk:
		case <-ctx.Done():
		}
	}
	close(work)
	wg.Wait()
	flush()
}

// auditChunk is how many nodes a worker of a fleet's audit takes at once,
// reading their catalogs in one query.
const auditChunk = 32

// prefetchCatalogs reads the approved catalogs of nodes that are neither
// in memory nor in the recent cache, in one query, by etag. They are not
// kept in the cache: a fleet's audit reads each once, and would push out
// the catalogs that nodes fetch. A catalog it cannot read is left out,
// and read alone (or reported) when its node is audited.
func (s *Server) prefetchCatalogs(ctx context.Context, st *siteState, nodes []string) map[string][]byte {
	if !st.audit.Reads("catalog") {
		return nil
	}
	var etags []string
	for _, node := range nodes {
		cur, _ := s.compiles.get(node)
		if cur == nil {
			continue
		}
		cur.mu.Lock()
		held := cur.bytes != nil
		cur.mu.Unlock()
		if held {
			continue
		}
		if _, ok := s.recent.get(cur.etag); !ok {
			etags = append(etags, cur.etag)
		}
	}
	if len(etags) == 0 {
		return nil
	}
	pre, err := s.st.CatalogsByEtag(ctx, etags)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Error("reading approved catalogs for their nodes' audits", "catalogs", len(etags), "err", err)
		}
		return nil
	}
	return pre
}

// auditNode evaluates st's controls on node, and says whether the
// results differ from those stored last.
func (s *Server) auditNode(ctx context.Context, st *siteState, node string, now time.Time, pre map[string][]byte) ([]store.AuditRecord, [32]byte, bool) {
	in, fresh, ok := s.auditInput(ctx, st, node, now, pre)
	if !ok {
		return nil, [32]byte{}, false
	}
	var results []policies.Result
	if !fresh {
		for _, c := range st.audit.Controls() {
			results = append(results, policies.Result{Control: c.ID, State: policies.StateNoData})
		}
	} else {
		var err error
		results, err = st.audit.Evaluate(ctx, in)
		if err != nil {
			// Evaluate fails when ctx ends (the server stops) or the
			// node's catalog does not decode: its results stay as
			// stored last.
			if ctx.Err() == nil {
				s.log.Error("auditing a node", "node", node, "err", err)
			}
			return nil, [32]byte{}, false
		}
	}
	recs := make([]store.AuditRecord, len(results))
	h := sha256.New()
	for i, r := range results {
		recs[i] = store.AuditRecord{Control: r.Control, State: string(r.State), Evidence: evidenceJSON(r)}
		h.Write([]byte(r.Control + "\x00" + string(r.State) + "\x00"))
		h.Write(recs[i].Evidence)
		h.Write([]byte{0})
	}
	var digest [32]byte
	h.Sum(digest[:0])
	s.audits.mu.Lock()
	n := s.audits.node(node)
	n.stale = !fresh
	same := n.digest == digest
	s.audits.mu.Unlock()
	return recs, digest, !same
}

// evidenceJSON is what the store keeps of r: its violations as JSON, or
// its error.
func evidenceJSON(r policies.Result) []byte {
	switch {
	case r.Error != "":
		return []byte(r.Error)
	case len(r.Evidence) > 0:
		b, _ := json.Marshal(r.Evidence)
		return b
	}
	return nil
}

// auditInput builds node's input from what the server holds. fresh is
// false for a node without a report within AuditStale (no-data); ok false
// when the node cannot be judged now (its reports do not read). pre
// holds catalogs read ahead, by etag (prefetchCatalogs).
func (s *Server) auditInput(ctx context.Context, st *siteState, node string, now time.Time, pre map[string][]byte) (in policies.AuditInput, fresh, ok bool) {
	a := &s.audits
	a.mu.Lock()
	n := a.node(node)
	loaded := n.loaded
	a.mu.Unlock()
	if !loaded {
		last, check, err := s.st.AuditReports(ctx, node)
		if err != nil {
			s.log.Error("reading a node's reports for its audit", "node", node, "err", err)
			return in, false, false
		}
		a.mu.Lock()
		if !n.loaded {
			n.loaded = true
			if last != nil {
				applyReport(n, *last)
			}
			if check != nil {
				applyReport(n, *check)
			}
		}
		a.mu.Unlock()
	}
	a.mu.Lock()
	in = policies.AuditInput{Node: node, Report: n.report, Drift: n.drift}
	fresh = !n.received.IsZero() && now.Sub(n.received) <= s.opts.AuditStale
	a.mu.Unlock()
	if !fresh {
		return in, false, true
	}
	if cf, ok := s.facts.get(node); ok {
		in.Facts = cf.facts
	}
	if st.audit.Reads("catalog") {
		if cur, _ := s.compiles.get(node); cur != nil {
			// The bytes, not a decoded catalog: the controls' input is
			// converted from them directly (policies.AuditInput).
			b, err := pre[cur.etag], error(nil)
			if b == nil {
				b, err = s.catalogBytes(ctx, cur)
			}
			if err != nil {
				s.log.Error("reading a node's approved catalog for its audit", "node", node, "err", err)
				return in, false, false
			}
			in.CatalogJSON = b
		}
	}
	return in, true, true
}

// prepareAudit prepares the version's audit controls beside its gate and
// records their metadata. A broken control never blocks the version: its
// error is the version's audit error.
func (s *Server) prepareAudit(ctx context.Context, st *siteState, files []catalogs.SourceFile, opts policies.Options) {
	a, err := policies.PrepareAudit(ctx, files, opts)
	if err != nil {
		st.auditErr = err.Error()
		s.log.Error("the site's audit controls do not compile; audits are not evaluated at this version (it ships all the same)", "version", st.version, "err", err)
		return
	}
	st.audit = a
	meta := map[string][]byte{}
	for _, c := range a.Controls() {
		b, _ := json.Marshal(c)
		meta[c.ID] = b
	}
	if len(meta) > 0 {
		if err := s.st.PutAuditControls(ctx, meta); err != nil {
			s.log.Error("storing the audit controls' metadata", "err", err)
		}
	}
}

// awaitAudits waits until the auditor has finished a pass that began
// after the call (tests).
func (s *Server) awaitAudits(ctx context.Context) error {
	a := &s.audits
	a.mu.Lock()
	first := a.done
	a.mu.Unlock()
	a.poke()
	// The pass running now may have begun before the call: wait for the
	// next one too.
	for range 2 {
		select {
		case <-first:
		case <-ctx.Done():
			return ctx.Err()
		}
		a.mu.Lock()
		first = a.done
		a.mu.Unlock()
		a.poke()
	}
	return nil
}
