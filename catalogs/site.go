package catalogs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync/atomic"
	"time"
)

// Site is a site directory loaded at one version: parsed, checked and ready
// to compile any number of nodes. It is immutable after Load, so Compile may
// be called from many goroutines at once.
type Site struct {
	Dir      string
	Version  string
	Settings Settings
	Tests    []SiteTest

	rules []*rule
	nodes *tomlDoc // nodes.toml, for positions in explanations
	roles map[string]*role
	// sizeHint is the most resources a compile of this site has made,
	// to size the next one's allocations.
	sizeHint atomic.Int64
	// defines are defines/<name>.toml, the site's own resource types.
	defines map[string]*definition
	data    map[string]*tomlDoc // "os/debian" → data/os/debian.toml
	render  *renderers          // every file under templates/ and every templated value
	files   map[string]FileRef  // "files/motd" → its digest and size
	// execs are the static files with an executable bit in the site, and
	// dirs the directories under files/: what a source directory copies
	// (recurse) keeps.
	execs map[string]bool
	dirs  map[string]bool
	// tree is every static file and directory under files/, sorted, for
	// source directories; built once at load.
	tree []string
	// policies are policies/**/*.rego, sorted by path.
	policies []SourceFile
	// blobs keeps static files by digest for a site whose directory is
	// gone (LoadRevision), for FileContent.
	blobs map[string][]byte
	// secretFiles are the files under secrets/, by NAME of NAME.age.
	secretFiles map[string]*secretRef
	// hasSecrets says some value of the site is a secret: compiles then
	// track what renders from one.
	hasSecrets bool
	// envSet: herd.toml names an environment.
	envSet bool
	// EnvironmentIgnored is herd.toml's `environment` when
	// LoadOptions.Environment overrode it ("" when they agree or herd.toml
	// names none), so that the caller can say so.
	EnvironmentIgnored string
}

// Settings are the site-wide settings of herd.toml.
type Settings struct {
	// Environment names the site's environment ("production" by default);
	// it is available to conditions and templates as environment.
	Environment string
	// Hierarchy lists the data levels, most specific first. Each is a path
	// under data/ without .toml and may interpolate {node}, {role},
	// {environment} and {facts.dotted.name}. The level "nodes.toml" stands
	// for the params of the classification rules.
	Hierarchy []string
	// Policy and Rollout are the [policy] and [rollout] tables.
	Policy  PolicySettings
	Rollout RolloutSettings
}

// DefaultHierarchy is used when herd.toml names none.
var DefaultHierarchy = []string{"nodes/{node}", "nodes.toml", "roles/{role}", "os/{facts.os.family}", "common"}

// LoadOptions tune Load.
type LoadOptions struct {
	// Version, when set, is used as the site version instead of the git
	// commit or content digest (tests pin it for golden catalogs).
	Version string
	// ContentVersion names the version by the content digest alone,
	// without asking git: for callers on a hot path (masterless apply)
	// that must not spawn processes.
	ContentVersion bool
	// Environment, when set, is the site's environment whatever herd.toml
	// says: a server serving environments loads each branch under the
	// branch's name (r10k's rule: the branch is the environment). A
	// herd.toml `environment` that differs is ignored, and said so in
	// Site.EnvironmentIgnored.
	Environment string
}

// Load reads and checks the site in dir. Every mistake found is returned at
// once as Diagnostics; a site with any diagnostic is not returned.
func Load(ctx context.Context, dir string, opts LoadOptions) (*Site, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("loading site: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("loading site: %s is not a directory", dir)
	}
	sd, closeDir, err := openSiteDir(dir)
	if err != nil {
		return nil, fmt.Errorf("loading site: %w", err)
	}
	defer closeDir()
	s, digest, err := loadFS(sd, opts, defaultLimits)
	if err != nil {
		return nil, err
	}
	s.Dir = dir
	switch {
	case s.Version != "":
	case opts.ContentVersion:
		s.Version = "sha256:" + digest
	default:
		s.Version = siteVersion(ctx, dir, digest)
	}
	return s, nil
}

// loadFS loads a site through sd and returns it with its content digest.
func loadFS(sd siteDir, opts LoadOptions, limits siteLimits) (*Site, string, error) {
	l := &loader{
		site: &Site{
			roles:   map[string]*role{},
			defines: map[string]*definition{},
			data:    map[string]*tomlDoc{},
			files:   map[string]FileRef{},
			render:  newRenderers(),
			execs:   map[string]bool{},
			dirs:    map[string]bool{},
		},
		contents:  map[string][]byte{},
		inlinePos: map[string]Pos{},
		limits:    limits,
	}
	if err := l.readTree(sd); err != nil {
		return nil, "", err
	}
	slices.SortFunc(l.site.policies, func(a, b SourceFile) int { return strings.Compare(a.Path, b.Path) })
	for rel := range l.site.files {
		l.site.tree = append(l.site.tree, rel)
	}
	for rel := range l.site.dirs {
		l.site.tree = append(l.site.tree, rel)
	}
	slices.Sort(l.site.tree)
	// A file that could not be read would only cause confusing
	// follow-on mistakes ("a site needs nodes.toml").
	if err := l.diags.err(); err != nil {
		return nil, "", err
	}
	l.loadSettings()
	if opts.Environment != "" && opts.Environment != l.site.Settings.Environment {
		if l.site.envSet {
			l.site.EnvironmentIgnored = l.site.Settings.Environment
		}
		l.site.Settings.Environment = opts.Environment
	}
	l.loadDefines()
	l.loadRoles()
	l.loadNodes()
	l.loadData()
	l.loadSecrets()
	l.loadTemplates()
	l.loadTests()
	if err := l.diags.err(); err != nil {
		return nil, "", err
	}
	l.site.Version = opts.Version
	return l.site, l.contentDigest(), nil
}

type loader struct {
	site     *Site
	contents map[string][]byte // every site file but files/, by slash path
	digests  []string          // "path\x00sha256" of every file, for the version
	diags    Diagnostics
	limits   siteLimits
	// inlinePos is where each templated value was written, by its
	// template's name.
	inlinePos map[string]Pos
	// unparsed holds the site files that are not valid TOML: their one
	// diagnostic is the syntax error, and what refers to them (a rule's
	// roles, an include) does not add a false "no role" on top.
	unparsed map[string]bool
}

func (l *loader) contentDigest() string {
	slices.Sort(l.digests)
	h := sha256.New()
	for _, d := range l.digests {
		h.Write([]byte(d))
		h.Write([]byte{'\n'})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// parse parses one TOML file of the site, recording a syntax error.
func (l *loader) parse(rel string) *tomlDoc {
	doc, err := parseTOML(rel, l.contents[rel])
	if err != nil {
		var d Diagnostic
		if errors.As(err, &d) {
			l.diags = append(l.diags, d)
		} else {
			l.diags.add(Pos{File: rel}, "%v", err)
		}
		if l.unparsed == nil {
			l.unparsed = map[string]bool{}
		}
		l.unparsed[rel] = true
		return nil
	}
	return doc
}

// filesUnder returns the site's readable files under dir with the given
// suffix, sorted.
func (l *loader) filesUnder(dir, suffix string) []string {
	var out []string
	for rel := range l.contents {
		if strings.HasPrefix(rel, dir+"/") && strings.HasSuffix(rel, suffix) {
			out = append(out, rel)
		}
	}
	slices.Sort(out)
	return out
}

func (l *loader) loadSettings() {
	s := &l.site.Settings
	s.Environment = "production"
	s.Hierarchy = DefaultHierarchy
	s.Policy = PolicySettings{OnDeny: "block", Timeout: DefaultGateTimeout}
	if _, ok := l.contents["herd.toml"]; !ok {
		return
	}
	doc := l.parse("herd.toml")
	if doc == nil {
		return
	}
	r := reader{doc: doc, diags: &l.diags}
	r.known("", "environment", "hierarchy", "policy", "rollout")
	if env, ok := r.str("environment"); ok {
		if !validName(env) {
			r.bad("environment", "environment %q: want letters, digits, '-', '_' or '.'", env)
		}
		s.Environment = env
		l.site.envSet = true
	}
	if h, ok := r.strs("hierarchy"); ok {
		s.Hierarchy = h
		for i, level := range h {
			if err := checkLevel(level); err != nil {
				r.bad(fmt.Sprintf("hierarchy[%d]", i), "hierarchy level %q: %v", level, err)
			}
		}
	}
	l.loadPolicy(r)
	l.loadRollout(r)
}

// checkLevel validates a hierarchy level's interpolations.
func checkLevel(level string) error {
	if level == "nodes.toml" {
		return nil
	}
	if strings.HasPrefix(level, "/") || strings.Contains(level, "..") || strings.HasSuffix(level, ".toml") {
		return errors.New("want a path under data/ without .toml, like \"os/{facts.os.family}\"")
	}
	rest := level
	for {
		i := strings.IndexByte(rest, '{')
		if i < 0 {
			if strings.Contains(rest, "}") {
				return errors.New("unbalanced '}'")
			}
			return nil
		}
		j := strings.IndexByte(rest[i:], '}')
		if j < 0 {
			return errors.New("unbalanced '{'")
		}
		v := rest[i+1 : i+j]
		switch {
		case v == "node", v == "role", v == "environment":
		case strings.HasPrefix(v, "facts.") && len(v) > len("facts."):
		default:
			return fmt.Errorf("unknown variable {%s} (want {node}, {role}, {environment} or {facts.NAME})", v)
		}
		rest = rest[i+j+1:]
	}
}

// validName reports whether s is a plain identifier-ish name.
func validName(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// ValidNodeName reports whether name can be a node's name: a DNS-style
// name of letters, digits, '-', '_' and '.', at most 253 bytes, with no empty
// label. The server applies the same rule to certificate requests, so a node
// name is always safe in a path, a glob and a log line.
func ValidNodeName(name string) error {
	if name == "" {
		return errors.New("node name is empty")
	}
	if len(name) > 253 {
		return fmt.Errorf("node name is %d bytes long, want at most 253", len(name))
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("node name %q: character %q is not allowed (want letters, digits, '-', '_', '.')", name, c)
		}
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" {
			return fmt.Errorf("node name %q has an empty label (a leading, trailing or doubled '.')", name)
		}
		if label[0] == '-' {
			return fmt.Errorf("node name %q: a label starts with '-'", name)
		}
	}
	return nil
}

// GitVersion names the version of the site in dir whose content digest
// (hex, as Load computes it) is contentDigest, as Load does without
// LoadOptions.ContentVersion: the HEAD commit of the git work tree that
// holds dir, with "+dirty." and the digest's head when it has uncommitted
// changes, else "sha256:" and the digest. It runs git; callers on a hot
// path load with ContentVersion and call it only for a git tree.
func GitVersion(ctx context.Context, dir, contentDigest string) string {
	return siteVersion(ctx, dir, contentDigest)
}

// siteVersion names the site's version: the HEAD commit of the git work
// tree holding it (with "+dirty." and a content digest when it has
// uncommitted changes), otherwise "sha256:" and the content digest.
func siteVersion(ctx context.Context, dir, contentDigest string) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	head, err := exec.CommandContext(ctx, "git", "-C", dir, "rev-parse", "--verify", "-q", "HEAD").Output()
	if err != nil {
		return "sha256:" + contentDigest
	}
	commit := string(bytes.TrimSpace(head))
	status, err := exec.CommandContext(ctx, "git", "-C", dir, "status", "--porcelain", "--", ".").Output()
	if err != nil || len(bytes.TrimSpace(status)) > 0 {
		return commit + "+dirty." + contentDigest[:12]
	}
	return commit
}

// RoleCount returns how many roles the site defines.
func (s *Site) RoleCount() int { return len(s.roles) }

// Files returns every static file under the site's files/ directory, with
// its digest, sorted by path. The server copies them into its content
// store by digest when a version loads, so that a node can still fetch a
// file its catalog names after the site moved on.
func (s *Site) Files() []FileRef {
	out := make([]FileRef, 0, len(s.files))
	for _, f := range s.files {
		out = append(out, f)
	}
	slices.SortFunc(out, func(a, b FileRef) int { return strings.Compare(a.Path, b.Path) })
	return out
}

// PolicyFiles returns every policies/**/*.rego file of the site, policy
// tests included, sorted by path. They were read at Load through the same
// confined reader and caps as every other site file, and they are part of
// the site's content version, so a changed policy is a new version. The
// caller must not modify the data.
func (s *Site) PolicyFiles() []SourceFile { return slices.Clone(s.policies) }
