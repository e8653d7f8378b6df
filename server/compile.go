package server

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/herdcm/herd/catalogs"
	"github.com/herdcm/herd/facts"
	"github.com/herdcm/herd/policies"
	"github.com/herdcm/herd/server/store"
)

// siteState is the site version an environment serves.
type siteState struct {
	// env is the environment serving it.
	env     *environment
	site    *catalogs.Site
	version string
	loaded  time.Time
	// loadErr is the error of the newest load attempt, when it failed and
	// the previous version is still served; newest is the version that
	// attempt saw (its git commit, "" when it cannot be named), attempted
	// when.
	loadErr   string
	newest    string
	attempted time.Time
	// gate is the version's prepared policy gate; gateErr why its
	// policies do not load (then nothing of the version ships).
	gate    policyGate
	gateErr string
	// audit is the version's prepared audit controls (server/audit.go);
	// auditErr why they do not compile (then nothing is evaluated, and
	// the version ships all the same).
	audit    *policies.Audit
	auditErr string
}

// nodeCatalog is the catalog a node gets now. Its bytes stay in memory
// only until the node fetched them, or, for a node without a Watch stream,
// until the store has them: a fleet's catalogs are tens of kilobytes
// each, and a node fetches once per new catalog, so after that they live
// in the store and in a bounded cache of recent ones (Options.CatalogCache).
type nodeCatalog struct {
	etag      string
	version   string
	env       string // the catalog's environment
	signature []byte
	files     map[string]bool // digests the catalog ships
	// index locates the resources in bytes (catalogs.Index), for the
	// next version's diff; empty for a catalog read from the store.
	index catalogs.Index

	mu    sync.Mutex
	bytes []byte // nil once stored and no longer wanted in memory

	// stored and fetched decide when the bytes can go: once the store has
	// them and the node fetched them (or holds no Watch stream to fetch
	// soon). Whichever of the two happens last drops them.
	stored, fetched atomic.Bool
}

// catalogBytes returns the canonical bytes of nc.
func (s *Server) catalogBytes(ctx context.Context, nc *nodeCatalog) ([]byte, error) {
	nc.mu.Lock()
	b := nc.bytes
	nc.mu.Unlock()
	if b != nil {
		return b, nil
	}
	if b, ok := s.recent.get(nc.etag); ok {
		return b, nil
	}
	rec, ok, err := s.st.CatalogByEtag(ctx, nc.etag)
	if err != nil {
		return nil, fmt.Errorf("reading catalog %s: %w", nc.etag, err)
	}
	if !ok {
		return nil, fmt.Errorf("catalog %s is not in the store", nc.etag)
	}
	s.recent.put(nc.etag, rec.Catalog)
	return rec.Catalog, nil
}

// compileState holds every node's current catalog and compile error.
type compileState struct {
	mu       sync.RWMutex
	catalogs map[string]*nodeCatalog
	errors   map[string]string
	// per-node locks keep two compiles of one node (a check-in and a site
	// change) from racing each other's store writes.
	nodeMu sync.Map // name → *sync.Mutex
}

func (c *compileState) init() {
	c.catalogs = map[string]*nodeCatalog{}
	c.errors = map[string]string{}
}

func (c *compileState) get(node string) (*nodeCatalog, string) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.catalogs[node], c.errors[node]
}

func (c *compileState) lock(node string) func() {
	m, _ := c.nodeMu.LoadOrStore(node, &sync.Mutex{})
	mu := m.(*sync.Mutex)
	mu.Lock()
	return mu.Unlock
}

// factsCache holds each known node's facts and their digest, so that a
// check-in with unchanged facts and a site change need no store read.
type factsCache struct {
	mu sync.RWMutex
	m  map[string]cachedFacts
}

type cachedFacts struct {
	digest string
	facts  facts.Facts
}

func (f *factsCache) init() { f.m = map[string]cachedFacts{} }

func (f *factsCache) get(node string) (cachedFacts, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	c, ok := f.m[node]
	return c, ok
}

// digest returns node's facts digest.
func (f *factsCache) digest(node string) (string, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	c, ok := f.m[node]
	return c.digest, ok
}

func (f *factsCache) put(node string, c cachedFacts) {
	f.mu.Lock()
	f.m[node] = c
	f.mu.Unlock()
}

func (f *factsCache) nodes() []string {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]string, 0, len(f.m))
	for n := range f.m {
		out = append(out, n)
	}
	return out
}

// warm fills the caches from the store, so that a restarted server
// answers check-ins from memory and recompiles every known node.
func (s *Server) warm(ctx context.Context) error {
	cats, err := s.st.CurrentCatalogs(ctx)
	if err != nil {
		return fmt.Errorf("starting the server: %w", err)
	}
	for node, rec := range cats {
		nc, err := newNodeCatalog(rec.Etag, rec.Version, rec.Catalog, rec.Signature)
		if err != nil {
			s.log.Warn("a stored catalog does not decode; the node will get a new one", "node", node, "err", err)
			continue
		}
		s.compiles.catalogs[node] = nc
	}
	// A node whose newest compile failed still fails until it compiles
	// again: a restart that resumes a rollout compiles nothing, and must
	// not make the error disappear from herd nodes and herd status.
	cerrs, err := s.st.CompileErrors(ctx)
	if err != nil {
		return fmt.Errorf("starting the server: %w", err)
	}
	for node, msg := range cerrs {
		s.compiles.errors[node] = msg
	}
	digests, err := s.st.FactsDigests(ctx)
	if err != nil {
		return fmt.Errorf("starting the server: %w", err)
	}
	for node := range digests {
		_, b, _, ok, err := s.st.Facts(ctx, node)
		if err != nil || !ok {
			continue
		}
		f, err := facts.FromJSON(b)
		if err != nil {
			continue
		}
		s.facts.put(node, cachedFacts{digest: digests[node], facts: f})
	}
	return nil
}

// newNodeCatalog describes a stored catalog. Only its file list is
// decoded: the rest is read back from the store when the node fetches it.
func newNodeCatalog(etag, version string, b, sig []byte) (*nodeCatalog, error) {
	env, files, err := catalogs.DecodeHead(b)
	if err != nil {
		return nil, err
	}
	nc := &nodeCatalog{etag: etag, version: version, env: env, signature: sig, files: make(map[string]bool, len(files))}
	for _, f := range files {
		nc.files[f.Digest] = true
	}
	return nc, nil
}

// reload loads every environment's current version (see reloadAll).
func (s *Server) reload(ctx context.Context) error {
	// A rotation writes the key before the re-encrypted site arrives.
	s.reloadSecretsKey()
	return s.reloadAll(ctx)
}

// reloadEnv loads e's current version (its branch at commit, "" for
// the branch's tip or the site as it is) and recompiles e's nodes. A
// version that fails to load keeps the previous one served; a load that
// finds the version already served changes nothing, so that a watcher
// event that moved no version costs no fleet recompile.
func (s *Server) reloadEnv(ctx context.Context, e *environment, commit string) error {
	e.reload.Lock()
	defer e.reload.Unlock()
	site, err := s.loadEnvSite(ctx, e, commit)
	prev := e.site.Load()
	now := time.Now()
	// The site_* metrics are the default environment's, as they were
	// the one site's.
	isDef := e.name == s.envs.def
	if err != nil {
		s.metrics.siteLoads.WithLabelValues("error").Inc()
		if prev == nil {
			return fmt.Errorf("loading the site: %w", err)
		}
		next := *prev
		next.loadErr = err.Error()
		next.newest = commit
		if e.ref == "" {
			next.newest = gitVersion(ctx, s.opts.Site)
		}
		next.attempted = now
		e.site.Store(&next)
		e.commit = commit
		if isDef {
			s.metrics.siteFailing.Set(1)
		}
		s.metrics.envFailing.WithLabelValues(e.name).Set(1)
		s.log.Error("the site's new version does not load; still serving the previous one", "environment", e.name, "version", prev.version, "newest", next.newest, "err", err)
		return nil
	}
	s.metrics.siteLoads.WithLabelValues("ok").Inc()
	if isDef {
		s.metrics.siteFailing.Set(0)
	}
	s.metrics.envFailing.WithLabelValues(e.name).Set(0)
	e.commit = commit
	if prev != nil && prev.version == site.Version {
		if prev.loadErr != "" {
			next := *prev
			next.loadErr, next.newest, next.attempted = "", prev.version, now
			e.site.Store(&next)
		}
		s.log.Debug("the site's version did not change", "environment", e.name, "version", site.Version)
		return nil
	}
	if err := s.storeFiles(site); err != nil {
		return err
	}
	next := &siteState{env: e, site: site, version: site.Version, loaded: now, newest: site.Version, attempted: now}
	// Prepared once per version; a broken policy blocks the version,
	// never lets it through.
	if next.gate, err = prepareGate(ctx, site.PolicyFiles(), site.Settings.Policy.Timeout); err != nil {
		next.gateErr = err.Error()
		s.log.Error("the site's policies do not load; the version is blocked", "version", site.Version, "err", err)
	}
	s.prepareAudit(ctx, next, site.PolicyFiles(), policies.Options{Timeout: site.Settings.Policy.Timeout})
	e.site.Store(next)
	s.audits.touchAll()
	if isDef {
		s.metrics.setServed(site.Version, now)
	}
	s.metrics.environments.DeletePartialMatch(prometheus.Labels{"environment": e.name})
	s.metrics.environments.WithLabelValues(e.name, site.Version).Set(1)
	s.log.Info("site loaded", "environment", e.name, "version", site.Version)
	return s.newVersion(ctx, next, prev == nil)
}

// gitVersion names the commit checked out in the site, for a version that
// failed to load ("" when the site is not a git work tree). Optional
// locks are off: the server's own git must not write into .git, which it
// watches.
func gitVersion(ctx context.Context, dir string) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "git", "-C", dir, "rev-parse", "--verify", "-q", "HEAD")
	cmd.Env = append(os.Environ(), "GIT_OPTIONAL_LOCKS=0")
	out, err := cmd.Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// storeFiles copies the site's static files into the content store by
// digest, so that a node can fetch what its catalog names even after the
// site moved on. It reads through the site's confined reader
// (Site.ReadFile): a file swapped after the load for a link (to the CA key,
// /dev/zero) or a FIFO is refused, never followed or blocked on.
func (s *Server) storeFiles(site *catalogs.Site) error {
	for _, f := range site.Files() {
		dst := filepath.Join(s.files, strings.TrimPrefix(f.Digest, "sha256:"))
		if _, err := os.Stat(dst); err == nil {
			continue
		}
		b, err := site.ReadFile(f)
		if err != nil {
			return fmt.Errorf("storing: %w", err)
		}
		if err := writeStored(b, dst); err != nil {
			return fmt.Errorf("storing %s: %w", f.Path, err)
		}
	}
	return nil
}

// writeStored writes b to dst whole (temp file, fsync, rename), so that a
// crash never leaves a short file under a digest.
func writeStored(b []byte, dst string) error {
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".incoming-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dst)
}

// openFile opens a stored file by digest.
func (s *Server) openFile(digest string) (io.ReadCloser, error) {
	hex, ok := strings.CutPrefix(digest, "sha256:")
	if !ok || len(hex) != 64 || strings.Trim(hex, "0123456789abcdef") != "" {
		return nil, fmt.Errorf("bad digest %q", digest)
	}
	return os.Open(filepath.Join(s.files, hex))
}

// newVersion plans the rollout of st's version and hands it to the
// controller. A server restarted on the version of its newest rollout
// resumes that rollout instead (the controller loaded it): the
// candidates are in the store already.
func (s *Server) newVersion(ctx context.Context, st *siteState, restarted bool) error {
	if !s.leadsRollouts() {
		// The server that leads the rollouts plans it, when it loads
		// the version (or takes the lease with it loaded).
		s.log.Info("the server that leads the rollouts plans this version", "environment", st.env.name, "version", st.version)
		return nil
	}
	var newest store.Rollout
	ctl := st.env.ctl
	if err := ctl.do(ctx, func(c *controller) error {
		if c.cur != nil {
			newest = c.cur.rec
		}
		return nil
	}); err != nil {
		return err
	}
	if restarted && newest.ID != 0 && newest.Version == st.version {
		s.log.Info("the site's version is the newest rollout's; resuming it", "rollout", newest.ID, "state", newest.State)
		return nil
	}
	previous := newest.Version
	if newest.State == rolloutBlocked || newest.State == rolloutAborted {
		// Nothing of a blocked or aborted version runs anywhere: the
		// fleet is on the version before it.
		previous = newest.PreviousVersion
	}
	if previous == "" {
		// A store from before rollouts: the version the fleet runs.
		previous = s.approvedVersion(st.env.name)
	}
	p, err := s.planRollout(ctx, st, previous)
	if err != nil {
		return fmt.Errorf("planning the rollout of %s: %w", st.version, err)
	}
	return ctl.do(ctx, func(c *controller) error { return c.begin(ctx, p) })
}

// approvedVersion is the site version most of env's nodes are approved
// at.
func (s *Server) approvedVersion(env string) string {
	s.compiles.mu.RLock()
	defer s.compiles.mu.RUnlock()
	count := map[string]int{}
	best := ""
	for node, nc := range s.compiles.catalogs {
		// Not nodeEnv: it takes this read lock again, which a waiting
		// writer would deadlock.
		in := nc.env
		if v, ok := s.placed.Load(node); ok {
			in = v.(string)
		}
		if s.envs.branches && in != env {
			continue
		}
		count[nc.version]++
		if count[nc.version] > count[best] {
			best = nc.version
		}
	}
	return best
}

// compileNode compiles node at the served version, for a check-in that
// brought new facts or a node without a catalog. The candidate is gated
// and handed to the controller, which approves it at once or keeps it
// for the node's rollout stage. It returns the node's approved catalog.
// A failed compile keeps the last good catalog.
func (s *Server) compileNode(ctx context.Context, node string) *nodeCatalog {
	if !s.leadsRollouts() {
		// Compiled once, by the leader, whose controller decides what
		// ships.
		return s.forwardCompile(ctx, node)
	}
	unlock := s.compiles.lock(node)
	defer unlock()
	cf, ok := s.facts.get(node)
	cur, _ := s.compiles.get(node)
	if !ok {
		return cur
	}
	e, why := s.placeNode(node, cf.facts)
	if e == nil {
		s.setCompileError(ctx, node, "", why)
		return cur
	}
	st := e.site.Load()
	if st == nil {
		return cur
	}
	cat, nc, err := s.compileAt(ctx, st, node, cf.facts)
	if err != nil || (cur != nil && cur.etag == nc.etag) {
		return cur
	}
	c := candidate{node: node, facts: cf.facts, nc: nc, cat: cat}
	if cur != nil {
		c.prevEtag, c.prevVer = cur.etag, cur.version
		c.prev = s.decodeApproved(ctx, node, cur)
		if st.gate != nil {
			c.judged = s.judgedBefore(cur.version, st.gate.Digest())
		}
	}
	c.change = catalogs.DiffBrief(c.prev, cat)
	var fleet *policies.Fleet
	e.ctl.do(ctx, func(ctl *controller) error {
		if ctl.cur != nil && ctl.cur.rec.Version == st.version {
			fleet = ctl.cur.fleet
		}
		return nil
	})
	if fleet == nil {
		fleet = summarize(st.version, "", 1, map[string]catalogs.Change{node: c.change})
	}
	d := s.gateCandidate(ctx, st, &c, fleet)
	s.gatedVersion(st)
	if err := s.st.PutCatalogs(ctx, []store.CatalogRecord{{Etag: nc.etag, Version: nc.version, Catalog: nc.bytes, Signature: nc.signature}}); err != nil {
		s.log.Error("storing a catalog; the node keeps its approved one", "node", node, "err", err)
		return cur
	}
	nc.stored.Store(true)
	if err := e.ctl.do(ctx, func(ctl *controller) error { ctl.recompiled(node, cur, nc, d); return nil }); err != nil {
		s.log.Error("handing a recompiled catalog to the rollout controller", "node", node, "err", err)
	}
	cur, _ = s.compiles.get(node)
	return cur
}

// dropBytes lets the catalog's bytes go: they are in the store.
func (nc *nodeCatalog) dropBytes() {
	nc.mu.Lock()
	nc.bytes = nil
	nc.mu.Unlock()
}
