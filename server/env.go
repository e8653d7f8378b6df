package server

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/herdcm/herd/catalogs"
	"github.com/herdcm/herd/facts"
)

// DefaultEnvironment is the environment of a node that neither
// classification nor its agent places, and, without environments, the
// name of the one environment the whole site is.
const DefaultEnvironment = "production"

// environment is one environment the server serves: a branch of the site
// (or, without Options.Environments, the site directory as it is), the
// version of it being served, and its own rollout controller. Everything
// else a version brings (its policy gate, its audit controls) is in its
// siteState.
type environment struct {
	name string
	// ref is the branch it loads ("refs/heads/<name>"); "" loads the site
	// directory as it is, today's single-site server.
	ref  string
	site atomic.Pointer[siteState]
	ctl  *controller
	// reload serializes this environment's loads: the watcher and a
	// restart never load one environment twice at once.
	reload sync.Mutex
	// commit is the branch's commit as last listed, so that a watcher
	// event reloads only the environments whose branch moved.
	commit string
}

// environments is the set of environments served, by name.
type environments struct {
	mu sync.RWMutex
	m  map[string]*environment
	// def names the default environment; branches is set when the
	// environments are branches (Options.Environments).
	def      string
	branches bool
	patterns []string
}

func (es *environments) get(name string) *environment {
	es.mu.RLock()
	defer es.mu.RUnlock()
	return es.m[name]
}

// defaultEnv is the default environment (nil only before the first load).
func (es *environments) defaultEnv() *environment { return es.get(es.def) }

// all lists the environments, sorted by name.
func (es *environments) all() []*environment {
	es.mu.RLock()
	defer es.mu.RUnlock()
	out := make([]*environment, 0, len(es.m))
	for _, e := range es.m {
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b *environment) int { return strings.Compare(a.name, b.name) })
	return out
}

// names lists the served environments' names, sorted, for messages.
func (es *environments) names() []string {
	var out []string
	for _, e := range es.all() {
		if e.site.Load() != nil {
			out = append(out, e.name)
		}
	}
	return out
}

// CheckEnvironments checks environment patterns (server.toml
// `environments`, --environments): each a branch name or a glob over
// branch names (path.Match syntax: *, ?, [a-z]; '/' is not matched by
// '*'), and the default environment's name, which has no meaning
// without patterns (the site is then the one environment).
func CheckEnvironments(patterns []string, def string) error {
	if def != "" && len(patterns) == 0 {
		return fmt.Errorf("default_environment %q needs environments: without them the site as it is is the one environment", def)
	}
	for i, p := range patterns {
		if err := checkEnvPattern(p); err != nil {
			return fmt.Errorf("environments[%d]: %w", i, err)
		}
	}
	if def != "" && !validEnvName(def) {
		return fmt.Errorf("default_environment %q: want a branch name of letters, digits, '-', '_', '.' and '/'", def)
	}
	return nil
}

func checkEnvPattern(p string) error {
	if p == "" {
		return errors.New("an empty pattern matches no branch")
	}
	if len(p) > 255 {
		return fmt.Errorf("pattern %.40q…: longer than 255 bytes", p)
	}
	for _, r := range p {
		if r < 0x20 || r == 0x7f || r == ' ' || r == '\\' || r == ':' || r == '~' || r == '^' {
			return fmt.Errorf("pattern %q: %q cannot be in a branch name", p, r)
		}
	}
	if _, err := path.Match(p, ""); err != nil {
		return fmt.Errorf("pattern %q: %w", p, err)
	}
	return nil
}

// validEnvName reports whether name can be an environment: a branch name
// git would accept, in the characters a catalog's environment allows
// ('/' too, for branches like team/web), and no more than 255 bytes.
func validEnvName(name string) bool {
	if name == "" || len(name) > 255 || strings.HasPrefix(name, "/") || strings.HasSuffix(name, "/") ||
		strings.HasPrefix(name, "-") || strings.HasPrefix(name, ".") || strings.Contains(name, "..") ||
		strings.Contains(name, "//") || strings.HasSuffix(name, ".lock") {
		return false
	}
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.', r == '/':
		default:
			return false
		}
	}
	return true
}

// matchBranches returns the branches that patterns select (each branch
// once, sorted), leaving out names that cannot be an environment.
func matchBranches(patterns, branches []string) []string {
	var out []string
	for _, b := range branches {
		if !validEnvName(b) {
			continue
		}
		for _, p := range patterns {
			if ok, _ := path.Match(p, b); ok {
				out = append(out, b)
				break
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// listBranches lists the site repository's local branches and their
// commits. Optional locks are off: the server's own git must not write
// into .git, which it watches.
func listBranches(ctx context.Context, dir string) (map[string]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "git", "-C", dir, "for-each-ref", "--format=%(objectname) %(refname:lstrip=2)", "refs/heads/")
	cmd.Env = append(os.Environ(), "GIT_OPTIONAL_LOCKS=0")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("listing the branches of %s: %w: %s", dir, err, strings.TrimSpace(stderr.String()))
	}
	m := map[string]string{}
	for line := range strings.Lines(string(out)) {
		commit, name, ok := strings.Cut(strings.TrimSpace(line), " ")
		if ok {
			m[name] = commit
		}
	}
	return m, nil
}

// placeNode decides node's environment: a nodes.toml rule's
// `environment` in the default environment's site wins (classification,
// like Puppet's ENC); else what its agent asked for (agent.toml
// `environment`, --environment) at its newest check-in; else, before the
// node checked in since the server started, the environment of the
// catalog it holds; else the default. It records the placement, and takes
// a node that moved out of its previous environment's rollout. It
// returns the environment, or nil and why the node cannot be compiled
// (an environment that is not served).
func (s *Server) placeNode(node string, f facts.Facts) (*environment, string) {
	name, why := s.envName(node, f)
	if why != "" {
		return nil, why
	}
	if old, loaded := s.placed.Swap(node, name); loaded && old.(string) != name {
		if oe := s.envs.get(old.(string)); oe != nil {
			// Its stage must not wait for it, nor release the old
			// environment's catalog to it.
			oe.ctl.post(func(c *controller) error { c.leave(node, false); return nil })
		}
		s.log.Info("the node changed environment", "node", node, "from", old, "to", name)
	}
	e := s.envs.get(name)
	if e == nil || e.site.Load() == nil {
		return nil, fmt.Sprintf("environment %q is not served by this server (it serves: %s); the node keeps its last catalog",
			name, strings.Join(s.envs.names(), ", "))
	}
	return e, ""
}

// envName is the name of the environment node belongs in (see placeNode).
func (s *Server) envName(node string, f facts.Facts) (string, string) {
	if !s.envs.branches {
		return s.envs.def, ""
	}
	if def := s.envs.defaultEnv(); def != nil {
		if st := def.site.Load(); st != nil {
			env, err := st.site.NodeEnvironment(node, f)
			if err != nil {
				return "", fmt.Sprintf("placing the node in an environment (nodes.toml of %s): %v", s.envs.def, err)
			}
			if env != "" {
				return env, ""
			}
		}
	}
	if a, ok := s.asked.Load(node); ok {
		if a.(string) != "" {
			return a.(string), ""
		}
		return s.envs.def, ""
	}
	if cur, _ := s.compiles.get(node); cur != nil && cur.env != "" {
		return cur.env, ""
	}
	return s.envs.def, ""
}

// nodeEnv is the environment node was last placed in ("" before that).
func (s *Server) nodeEnv(node string) string {
	if v, ok := s.placed.Load(node); ok {
		return v.(string)
	}
	if !s.envs.branches {
		return s.envs.def
	}
	if cur, _ := s.compiles.get(node); cur != nil {
		return cur.env
	}
	return ""
}

// ask records the environment node's agent asks for and reports whether
// it changed.
func (s *Server) ask(node, env string) bool {
	// A load first: nearly every check-in asks for what it asked for
	// last, and a Swap allocates on every call.
	if old, ok := s.asked.Load(node); ok && old.(string) == env {
		return false
	}
	old, loaded := s.asked.Swap(node, env)
	return !loaded || old.(string) != env
}

// reloadAll brings the served environments in line with the site: each
// branch that matches Options.Environments is one, loaded (or reloaded
// when its branch moved); one whose branch is gone stops being served.
// Without environments it reloads the one environment. A branch that
// fails to load keeps its last good version served.
func (s *Server) reloadAll(ctx context.Context) error {
	if !s.envs.branches {
		return s.reloadEnv(ctx, s.envs.defaultEnv(), "")
	}
	branches, err := listBranches(ctx, s.opts.Site)
	if err != nil {
		if s.envs.defaultEnv() == nil {
			return fmt.Errorf("loading the environments: %w", err)
		}
		s.log.Error("listing the site's branches; the environments stay as they are", "err", err)
		return nil
	}
	names := make([]string, 0, len(branches))
	for b := range branches {
		names = append(names, b)
	}
	want := matchBranches(s.envs.patterns, names)
	// The default environment first: its nodes.toml places the nodes
	// the others plan for.
	slices.SortStableFunc(want, func(a, b string) int {
		switch {
		case a == s.envs.def:
			return -1
		case b == s.envs.def:
			return 1
		}
		return 0
	})
	if !slices.Contains(want, s.envs.def) {
		if s.envs.defaultEnv() == nil {
			return fmt.Errorf("loading the environments: the default environment %q is not a branch of %s that environments = %q selects (branches: %s)",
				s.envs.def, s.opts.Site, s.envs.patterns, strings.Join(slices.Sorted(func(yield func(string) bool) {
					for _, n := range names {
						if !yield(n) {
							return
						}
					}
				}), ", "))
		}
		// The default environment places every node: it is never
		// dropped while the server runs.
		s.log.Error("the default environment's branch is gone; still serving its last version", "environment", s.envs.def)
		want = append(want, s.envs.def)
	}
	// Gone: no longer served. Its nodes keep their approved catalogs and
	// get a compile error naming what is served; its rollout stays where
	// it is in the store, and resumes should the branch come back.
	for _, e := range s.envs.all() {
		if slices.Contains(want, e.name) {
			continue
		}
		s.envs.mu.Lock()
		delete(s.envs.m, e.name)
		s.envs.mu.Unlock()
		e.ctl.close()
		s.metrics.environments.DeletePartialMatch(prometheus.Labels{"environment": e.name})
		s.metrics.envFailing.DeleteLabelValues(e.name)
		s.log.Warn("an environment's branch is gone; it is no longer served", "environment", e.name)
	}
	var errs []error
	for _, name := range want {
		e := s.envs.get(name)
		if e == nil {
			e = &environment{name: name, ref: "refs/heads/" + name}
			e.ctl = newController(s, e)
			if err := e.ctl.load(ctx); err != nil {
				errs = append(errs, fmt.Errorf("environment %s: resuming its newest rollout: %w", name, err))
				continue
			}
			e.ctl.start()
			s.envs.mu.Lock()
			s.envs.m[name] = e
			s.envs.mu.Unlock()
			s.log.Info("serving a new environment", "environment", name, "commit", branches[name])
		}
		commit, ok := branches[name]
		if ok && commit == e.commit {
			continue
		}
		if err := s.reloadEnv(ctx, e, commit); err != nil {
			errs = append(errs, fmt.Errorf("environment %s: %w", name, err))
		}
	}
	// Classification may have moved nodes: a new nodes.toml in the
	// default environment, or an environment that came or went.
	s.replace(ctx)
	return errors.Join(errs...)
}

// replace compiles each node whose placement changed in its new
// environment, so that a node moved by classification gets its new
// environment's catalog without waiting for new facts; a node whose
// environment is not served gets its compile error (and keeps its
// catalog).
func (s *Server) replace(ctx context.Context) {
	if !s.leadsRollouts() {
		return // the leader compiles the nodes that moved
	}
	for _, node := range s.facts.nodes() {
		if s.inactive.has(node) {
			continue
		}
		cf, ok := s.facts.get(node)
		if !ok {
			continue
		}
		name, _ := s.envName(node, cf.facts)
		if old, ok := s.placed.Load(node); ok && old.(string) == name && s.envs.get(name) != nil {
			continue
		}
		s.compileNode(ctx, node)
	}
}

// loadEnvSite loads e's site: the branch at commit (as it is, when e is
// the site directory), named for e.
func (s *Server) loadEnvSite(ctx context.Context, e *environment, commit string) (*catalogs.Site, error) {
	if e.ref == "" {
		return catalogs.Load(ctx, s.opts.Site, catalogs.LoadOptions{})
	}
	rev := commit
	if rev == "" {
		rev = e.ref
	}
	site, err := catalogs.LoadRevision(ctx, s.opts.Site, rev, catalogs.LoadOptions{Environment: e.name})
	if err != nil {
		return nil, fmt.Errorf("branch %s: %w", e.name, err)
	}
	if site.EnvironmentIgnored != "" {
		s.log.Warn("the branch's herd.toml names another environment; the branch's name wins",
			"environment", e.name, "herd.toml", site.EnvironmentIgnored, "version", site.Version)
	}
	return site, nil
}

// defaultSite is the default environment's served version (nil before
// the first load).
func (s *Server) defaultSite() *siteState {
	if e := s.envs.defaultEnv(); e != nil {
		return e.site.Load()
	}
	return nil
}

// envSite is the served version of node's environment, nil when it has
// none (not placed yet, or not served).
func (s *Server) envSite(node string) *siteState {
	if e := s.envs.get(s.nodeEnv(node)); e != nil {
		return e.site.Load()
	}
	return nil
}

// eachController runs fn on every environment's controller, without
// waiting: a report or a node's leaving concerns whichever rollout has
// the node, and a controller ignores nodes its rollout does not have.
func (s *Server) eachController(fn func(c *controller) error) {
	for _, e := range s.envs.all() {
		e.ctl.post(fn)
	}
}

// eachControllerDo runs fn on every environment's controller and waits
// until what it changed is durable.
func (s *Server) eachControllerDo(ctx context.Context, fn func(c *controller) error) error {
	var errs []error
	for _, e := range s.envs.all() {
		if err := e.ctl.do(ctx, fn); err != nil {
			errs = append(errs, fmt.Errorf("environment %s: %w", e.name, err))
		}
	}
	return errors.Join(errs...)
}

// envControllerDo runs fn on the controller of node's environment, if
// it is served, and waits until what it changed is durable.
func (s *Server) envControllerDo(ctx context.Context, node string, fn func(c *controller) error) error {
	if e := s.envs.get(s.nodeEnv(node)); e != nil {
		return e.ctl.do(ctx, fn)
	}
	return nil
}

// shownEnv is node's environment as operators and its agent are told: its
// placement with environments; without, the one site's environment as
// herd.toml names it (its catalogs say the same), so that what the node
// is told never contradicts its catalog.
func (s *Server) shownEnv(node string) string {
	if !s.envs.branches {
		if st := s.defaultSite(); st != nil {
			return st.site.Settings.Environment
		}
	}
	return s.nodeEnv(node)
}
