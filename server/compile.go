package server

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/herdcm/herd/catalogs"
	"github.com/herdcm/herd/facts"
)

// siteState is the site version being served.
type siteState struct {
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
}

// nodeCatalog is the catalog a node gets now. Its bytes stay in memory
// only until the node fetched them, or, for a node without a Watch stream,
// until the store has them: a fleet's catalogs are tens of kilobytes
// each, and a node fetches once per new catalog, so after that they live
// in the store and in a bounded cache of recent ones (Options.CatalogCache).
type nodeCatalog struct {
	etag      string
	version   string
	signature []byte
	files     map[string]bool // digests the catalog ships

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
	var files struct {
		Files []catalogs.FileRef `json:"files"`
	}
	if err := json.Unmarshal(b, &files); err != nil {
		return nil, err
	}
	nc := &nodeCatalog{etag: etag, version: version, signature: sig, files: make(map[string]bool, len(files.Files))}
	for _, f := range files.Files {
		nc.files[f.Digest] = true
	}
	return nc, nil
}

// reload loads the site's current version and recompiles every known
// node. A site that fails to load keeps the previous version served; a
// load that finds the version already served changes nothing, so that a
// watcher event that moved no version costs no fleet recompile.
func (s *Server) reload(ctx context.Context) error {
	site, err := catalogs.Load(ctx, s.opts.Site, catalogs.LoadOptions{})
	prev := s.site.Load()
	now := time.Now()
	if err != nil {
		s.metrics.siteLoads.WithLabelValues("error").Inc()
		if prev == nil {
			return fmt.Errorf("loading the site: %w", err)
		}
		next := *prev
		next.loadErr = err.Error()
		next.newest = gitVersion(ctx, s.opts.Site)
		next.attempted = now
		s.site.Store(&next)
		s.metrics.siteFailing.Set(1)
		s.log.Error("the site's new version does not load; still serving the previous one", "version", prev.version, "newest", next.newest, "err", err)
		return nil
	}
	s.metrics.siteLoads.WithLabelValues("ok").Inc()
	s.metrics.siteFailing.Set(0)
	if prev != nil && prev.version == site.Version {
		if prev.loadErr != "" {
			next := *prev
			next.loadErr, next.newest, next.attempted = "", prev.version, now
			s.site.Store(&next)
		}
		s.log.Debug("the site's version did not change", "version", site.Version)
		return nil
	}
	if err := s.storeFiles(site); err != nil {
		return err
	}
	s.site.Store(&siteState{site: site, version: site.Version, loaded: now, newest: site.Version, attempted: now})
	s.metrics.setServed(site.Version, now)
	s.log.Info("site loaded", "version", site.Version)
	return s.recompileAll(ctx)
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

// recompileAll compiles every node with known facts, in parallel.
func (s *Server) recompileAll(ctx context.Context) error {
	nodes := s.facts.nodes()
	workers := s.opts.CompileWorkers
	if workers <= 0 {
		// More than the cores: each worker also waits for its catalog's
		// durable write, and the store commits the writes of waiting
		// workers together.
		workers = 8 * runtime.GOMAXPROCS(0)
	}
	start := time.Now()
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(workers)
	for _, n := range nodes {
		g.Go(func() error {
			s.compileNode(ctx, n)
			return nil
		})
	}
	err := g.Wait()
	s.log.Info("fleet recompiled", "nodes", len(nodes), "took", time.Since(start).Round(time.Millisecond))
	return err
}

// compileNode compiles node's catalog from the served site and its cached
// facts; a new catalog is signed, stored and announced to the node's
// Watch streams. A failed compile keeps the last good catalog.
func (s *Server) compileNode(ctx context.Context, node string) *nodeCatalog {
	unlock := s.compiles.lock(node)
	defer unlock()
	st := s.site.Load()
	cf, ok := s.facts.get(node)
	if !ok || st == nil {
		cur, _ := s.compiles.get(node)
		return cur
	}
	start := time.Now()
	s.metrics.compiles.Inc()
	cat, err := st.site.Compile(node, cf.facts)
	var enc []byte
	if err == nil {
		enc, err = cat.Encode()
	}
	if err != nil {
		s.metrics.compileErrors.Inc()
		msg := err.Error()
		s.compiles.mu.Lock()
		s.compiles.errors[node] = msg
		cur := s.compiles.catalogs[node]
		s.compiles.mu.Unlock()
		if serr := s.st.SetCompileError(ctx, node, st.version, msg); serr != nil {
			s.log.Error("recording a compile error", "node", node, "err", serr)
		}
		s.log.Warn("compile failed; the node keeps its last good catalog", "node", node, "version", st.version, "err", msg)
		return cur
	}
	etag := catalogs.Digest(enc)
	cur, hadErr := s.compiles.get(node)
	if hadErr != "" {
		s.compiles.mu.Lock()
		delete(s.compiles.errors, node)
		s.compiles.mu.Unlock()
		s.st.SetCompileError(ctx, node, st.version, "")
	}
	if cur != nil && cur.etag == etag {
		return cur
	}
	sig := ed25519.Sign(s.signer, enc)
	nc := &nodeCatalog{etag: etag, version: st.version, bytes: enc, signature: sig, files: make(map[string]bool, len(cat.Files))}
	for _, f := range cat.Files {
		nc.files[f.Digest] = true
	}
	// Serve and announce it before the store has it: compile is
	// deterministic, so a crash before the write only means the next start
	// compiles the same catalog again. The fleet converges without waiting
	// for a durable write per node.
	s.compiles.mu.Lock()
	s.compiles.catalogs[node] = nc
	s.compiles.mu.Unlock()
	s.metrics.compileTime.Observe(time.Since(start).Seconds())
	s.watch.notify(node, etag, st.version)
	s.saveCatalog(node, nc, enc)
	return nc
}

// saveCatalog writes a node's new catalog to the store in the background,
// so that compiling the fleet runs at the speed of the CPU rather than of
// the store's writer (which commits the waiting writes together). At most
// maxPendingSaves are outstanding; a save of a catalog that a newer one
// already replaced is skipped, and saves of one node never overtake each
// other.
func (s *Server) saveCatalog(node string, nc *nodeCatalog, enc []byte) {
	s.saves.sem <- struct{}{}
	s.saves.wg.Add(1)
	go func() {
		defer s.saves.wg.Done()
		defer func() { <-s.saves.sem }()
		m, _ := s.saves.nodeMu.LoadOrStore(node, &sync.Mutex{})
		mu := m.(*sync.Mutex)
		mu.Lock()
		defer mu.Unlock()
		if cur, _ := s.compiles.get(node); cur != nc {
			return // replaced before it was written; the newer one will be
		}
		// Not the request's context: the write must finish even when the
		// check-in that compiled it is gone.
		if err := s.st.SaveCatalog(context.Background(), node, nc.etag, nc.version, enc, nc.signature); err != nil {
			s.log.Error("storing a catalog; it is served from memory until the next compile", "node", node, "err", err)
			return
		}
		// A node holding a Watch stream fetches its new catalog at once:
		// keep the bytes for that fetch. Others will fetch at their next
		// check-in, from the cache of recent catalogs or the store.
		nc.stored.Store(true)
		if nc.fetched.Load() || !s.watch.has(node) {
			s.recent.put(nc.etag, enc)
			nc.dropBytes()
		}
	}()
}

// maxPendingSaves bounds the catalogs compiled but not yet stored.
const maxPendingSaves = 512

// pendingSaves tracks background catalog writes.
type pendingSaves struct {
	sem    chan struct{}
	wg     sync.WaitGroup
	nodeMu sync.Map // node → *sync.Mutex
}

// dropBytes lets the catalog's bytes go: they are in the store.
func (nc *nodeCatalog) dropBytes() {
	nc.mu.Lock()
	nc.bytes = nil
	nc.mu.Unlock()
}
