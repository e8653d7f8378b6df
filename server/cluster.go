package server

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/herdcm/herd/server/ca"
	"github.com/herdcm/herd/server/store"
)

// Several servers on one PostgreSQL store tell each other what their
// memory holds and the store alone does not reach in time: revocations
// (channel "revoke") and catalogs released to nodes (channel "catalog"),
// so that a node's calls and its Watch stream on any server see them. On
// sqlite one server owns the store and none of this runs.

const (
	revokeChannel  = "revoke"
	catalogChannel = "catalog"
	auditChannel   = "audit"
	// revokeResync is how often the revoked serials are re-read, the
	// fallback for a notification that never came.
	revokeResync = 10 * time.Second
	// releaseBatch is how long released catalogs are gathered into one
	// notification.
	releaseBatch = 50 * time.Millisecond
)

// announceRevoked tells the other servers of a revocation this one made
// (ca.Options.Announce). Best effort: their per-call check reads the
// store anyway, this only ends the revoked node's streams there sooner.
func (s *Server) announceRevoked(name string, serials []string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.st.Notify(ctx, revokeChannel, strings.Join(serials, ",")); err != nil {
		s.log.Warn("telling the other servers of a revocation; they re-read the store within seconds", "name", name, "err", err)
	}
}

// hearRevocations keeps this server's view of the revoked certificates
// up to date with the other servers' until ctx ends.
func (s *Server) hearRevocations(ctx context.Context) {
	learn := func(serials []string) {
		lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := s.ca.Learn(lctx, serials); err != nil && ctx.Err() == nil {
			s.log.Warn("learning the other servers' revocations", "err", err)
		}
	}
	go func() {
		t := time.NewTicker(revokeResync)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				learn(nil)
			}
		}
	}()
	s.st.Listen(ctx, revokeChannel, func() { learn(nil) }, func(payload string) {
		if serials := parseSerials(payload); serials != nil {
			learn(serials)
		}
	})
}

// parseSerials reads a "revoke" payload: serials, comma-separated.
// Serials are hex; anything else is no serial of ours and is skipped.
func parseSerials(payload string) []string {
	var serials []string
	for p := range strings.SplitSeq(payload, ",") {
		if p != "" && len(p) <= 64 && strings.Trim(p, "0123456789abcdefABCDEF") == "" {
			serials = append(serials, p)
		}
	}
	return serials
}

// parseReleases reads a "catalog" (or "audit") payload: "node etag"
// lines. A line whose node is no valid name is skipped; in an "audit"
// payload the etag is empty.
func parseReleases(payload string) map[string]string {
	out := map[string]string{}
	for line := range strings.SplitSeq(payload, "\n") {
		node, etag, _ := strings.Cut(line, " ")
		if ca.CheckName(node) != nil || strings.ContainsAny(etag, " \n") {
			continue
		}
		out[node] = etag
	}
	return out
}

// releases gathers the catalogs this server released to nodes, to tell
// the other servers in batches.
type releases struct {
	mu      sync.Mutex
	pending map[string]string // node → etag
	wake    chan struct{}
}

func (r *releases) init() {
	r.pending = map[string]string{}
	r.wake = make(chan struct{}, 1)
}

// add queues node's release of etag (called by serve).
func (r *releases) add(node, etag string) {
	r.mu.Lock()
	r.pending[node] = etag
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *releases) take() map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.pending
	r.pending = map[string]string{}
	return p
}

// sendReleases tells the other servers, in notifications of at most
// store.MaxNotifyBytes ("node etag" lines), which catalogs this one
// released, until ctx ends.
func (s *Server) sendReleases(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.released.wake:
		}
		// Gather a burst (a stage's flush) into few notifications.
		select {
		case <-ctx.Done():
			return
		case <-time.After(releaseBatch):
		}
		for _, payload := range releasePayloads(s.released.take(), maxNotify) {
			nctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := s.st.Notify(nctx, catalogChannel, payload)
			cancel()
			if err != nil && ctx.Err() == nil {
				s.log.Warn("telling the other servers of released catalogs; their nodes get them at their next check-in", "err", err)
			}
		}
	}
}

// maxNotify is store.MaxNotifyBytes (a var for the batching test).
var maxNotify = store.MaxNotifyBytes

// releasePayloads splits node → etag into payloads of at most max bytes.
func releasePayloads(m map[string]string, max int) []string {
	lines := make([]string, 0, len(m))
	for node, etag := range m {
		lines = append(lines, node+" "+etag)
	}
	return linePayloads(lines, max)
}

// hearReleases takes the catalogs other servers released: each node's
// current catalog in the store becomes the one this server's check-ins
// answer and its Watch streams are told of, until ctx ends. The
// notification is only a hint: a late one (batches from two servers
// cross) must not put an older catalog back, so the store, which holds
// each approval before it is announced, says which is current.
func (s *Server) hearReleases(ctx context.Context) {
	s.st.Listen(ctx, catalogChannel, nil, func(payload string) { s.heardReleases(ctx, payload) })
}

// heardReleases takes one "catalog" payload: at once for the nodes that
// hold a Watch stream here, later (laterReleases) for the others.
func (s *Server) heardReleases(ctx context.Context, payload string) {
	// A few reads at once: each is a round trip to the store, and a
	// stage's flush announces thousands. Two reads of one node cannot
	// cross wrongly: each takes the store's current catalog, and one
	// that finds the node served since it looked gives way.
	sem := make(chan struct{}, takeReleaseReads)
	var wg sync.WaitGroup
	for node, etag := range parseReleases(payload) {
		if etag == "" {
			continue
		}
		before, _ := s.compiles.get(node)
		if before != nil && before.etag == etag {
			continue // ours, or heard already
		}
		if !s.watch.has(node) && !s.arrivals.waiting(node) {
			s.later.add(node, etag)
			continue
		}
		s.later.drop(node)
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := s.takeRelease(ctx, node, before); err != nil {
				s.log.Warn("taking a catalog another server released", "node", node, "err", err)
			}
		})
	}
	wg.Wait()
}

// takeReleaseReads is how many released catalogs a server reads from the
// store at once for its watching nodes; laterReleaseReads for the others.
const (
	takeReleaseReads  = 8
	laterReleaseReads = 2
)

// laterReleases takes, after the releases of this server's watching
// nodes, those of the nodes that hold no Watch stream here, until ctx
// ends. Every server hears every release, and reading each node's
// catalog from the store was most of a follower's work in a stage's
// release (10,000 reads for its 3,334 watching nodes, with three
// servers), while only its watching nodes wait on it. A node that calls
// this server meanwhile takes its own first (settleRelease).
func (s *Server) laterReleases(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for range laterReleaseReads {
		wg.Go(func() {
			for ctx.Err() == nil {
				node, etag, done, ok := s.later.pop()
				if !ok {
					select {
					case <-ctx.Done():
						return
					case <-s.later.wake:
						continue
					}
				}
				s.takeLater(ctx, node, etag)
				done()
			}
		})
	}
}

// settleRelease takes node's release now if it waits in laterReleases,
// or waits for the take under way: what node's check-in, Watch stream or
// file read on this server is answered from must be the store's current
// catalog.
func (s *Server) settleRelease(ctx context.Context, node string) {
	etag, done, wait := s.later.claim(node)
	switch {
	case done != nil:
		s.takeLater(ctx, node, etag)
		done()
	case wait != nil:
		select {
		case <-wait:
		case <-ctx.Done():
		}
	}
}

// takeLater takes node's release of etag, unless it is served already.
func (s *Server) takeLater(ctx context.Context, node, etag string) {
	before, _ := s.compiles.get(node)
	if before != nil && before.etag == etag {
		return
	}
	if err := s.takeRelease(ctx, node, before); err != nil && ctx.Err() == nil {
		s.log.Warn("taking a catalog another server released", "node", node, "err", err)
	}
}

// laterQueue holds the releases laterReleases takes: the heard ones
// waiting (releases' pending, node → etag heard; add queues one), and
// the ones being taken, which a node's own call waits for.
type laterQueue struct {
	releases                          // its mu guards taking too
	taking   map[string]chan struct{} // node → closed when its take ends
}

func (q *laterQueue) init() {
	q.releases.init()
	q.taking = map[string]chan struct{}{}
}

// drop forgets node's queued release: it is being taken at once.
func (q *laterQueue) drop(node string) {
	q.mu.Lock()
	delete(q.pending, node)
	q.mu.Unlock()
}

// pop takes one queued release, any, marking it taken until done.
func (q *laterQueue) pop() (node, etag string, done func(), ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for node, etag = range q.pending {
		return node, etag, q.start(node), true
	}
	return "", "", nil, false
}

// claim takes node's queued release for its own call (done set), or
// says which take under way to wait for (wait set); neither when there
// is none.
func (q *laterQueue) claim(node string) (etag string, done func(), wait chan struct{}) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if ch := q.taking[node]; ch != nil {
		return "", nil, ch
	}
	etag, ok := q.pending[node]
	if !ok {
		return "", nil, nil
	}
	return etag, q.start(node), nil
}

// start marks node's release taken (q.mu held) and returns what ends it.
func (q *laterQueue) start(node string) func() {
	delete(q.pending, node)
	ch := make(chan struct{})
	q.taking[node] = ch
	return func() {
		q.mu.Lock()
		delete(q.taking, node)
		q.mu.Unlock()
		close(ch)
	}
}

// takeRelease serves node's current catalog as the store has it, unless
// this server served node another catalog since it read before.
func (s *Server) takeRelease(ctx context.Context, node string, before *nodeCatalog) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	rec, ok, err := s.st.Catalog(ctx, node)
	if err != nil || !ok || (before != nil && rec.Etag == before.etag) {
		return err
	}
	nc, err := newNodeCatalog(rec.Etag, rec.Version, rec.Catalog, rec.Signature)
	if err != nil {
		return err
	}
	nc.stored.Store(true)
	s.compiles.mu.Lock()
	if s.compiles.catalogs[node] != before {
		// Served here meanwhile: newer than what was read, or its own
		// announcement follows.
		s.compiles.mu.Unlock()
		return nil
	}
	s.compiles.mu.Unlock()
	if s.watch.has(node) {
		// Its node is told now and fetches it within moments: kept
		// until then, as a catalog compiled here is, rather than read
		// from the store a second time (a fleet's catalogs overflow the
		// cache of recent ones).
		nc.bytes = rec.Catalog
	} else {
		s.recent.put(rec.Etag, rec.Catalog)
	}
	s.serveLocal(node, nc)
	return nil
}

// forwardAudits hands what this follower queued for audit to the server
// that leads the audits: the nodes whose reports, facts or catalogs
// changed here ("*": every node). Their reports are in the store already
// (reported runs after they are durable).
func (s *Server) forwardAudits(ctx context.Context) {
	a := &s.audits
	a.mu.Lock()
	all, dirty := a.all, a.dirty
	a.all, a.dirty = false, map[string]bool{}
	a.mu.Unlock()
	m := make(map[string]string, len(dirty))
	for n := range dirty {
		m[n] = ""
	}
	payloads := releasePayloads(m, maxNotify)
	if all {
		payloads = []string{"*"}
	}
	for _, p := range payloads {
		nctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := s.st.Notify(nctx, auditChannel, p)
		cancel()
		if err != nil && ctx.Err() == nil {
			s.log.Warn("handing nodes to the server that leads the audits; it judges them at its next pass over them", "err", err)
		}
	}
}

// hearAudits takes, while this server leads the audits, the nodes the
// other servers queued: each is read again from the store (its report
// came to another server) and judged.
func (s *Server) hearAudits(ctx context.Context) {
	s.st.Listen(ctx, auditChannel, nil, func(payload string) {
		if !s.auditLead.Leading() {
			return // the leader hears it; a new one judges every node
		}
		if payload == "*" {
			s.audits.touchAll()
			return
		}
		a := &s.audits
		for node := range parseReleases(payload) {
			a.mu.Lock()
			if n := a.nodes[node]; n != nil {
				n.loaded = false // its newest report is in the store only
			}
			a.mu.Unlock()
			a.touch(node)
		}
	})
}
