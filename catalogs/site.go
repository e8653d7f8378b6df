package catalogs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"slices"
	"strings"
	"text/template"
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
	Policies []string // .rego files, relative to the site root

	rules     []*rule
	nodes     *tomlDoc // nodes.toml, for positions in explanations
	roles     map[string]*role
	data      map[string]*tomlDoc // "os/debian" → data/os/debian.toml
	templates *template.Template  // every file under templates/, by relative name
	files     map[string]FileRef  // "files/motd" → its digest and size
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
	// PolicyMode is how policy denials act: enforce, warn or off.
	PolicyMode string
	// Stages are the rollout stages, in order.
	Stages []Stage
}

// Stage is one step of a rollout (carried for the rollout controller).
type Stage struct {
	Name      string
	Nodes     []string // globs on node names
	Percent   int64
	Bake      time.Duration
	MaxFailed int64
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
	s, digest, err := loadFS(os.DirFS(dir), opts)
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

// loadFS loads a site from fsys and returns it with its content digest.
func loadFS(fsys fs.FS, opts LoadOptions) (*Site, string, error) {
	l := &loader{
		site: &Site{
			roles: map[string]*role{},
			data:  map[string]*tomlDoc{},
			files: map[string]FileRef{},
		},
		contents: map[string][]byte{},
	}
	if err := l.readTree(fsys); err != nil {
		return nil, "", err
	}
	l.loadSettings()
	l.loadRoles()
	l.loadNodes()
	l.loadData()
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
}

// readTree reads every file of the site once. Files under files/ are only
// digested: they can be large and are served from disk by digest.
func (l *loader) readTree(fsys fs.FS) error {
	return fs.WalkDir(fsys, ".", func(rel string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("loading site: %w", err)
		}
		if rel == "." {
			return nil
		}
		if strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			return nil
		}
		b, err := fs.ReadFile(fsys, rel)
		if err != nil {
			return fmt.Errorf("loading site: %w", err)
		}
		sum := sha256.Sum256(b)
		hexsum := hex.EncodeToString(sum[:])
		l.digests = append(l.digests, rel+"\x00"+hexsum)
		switch {
		case strings.HasPrefix(rel, "files/"):
			l.site.files[rel] = FileRef{Digest: "sha256:" + hexsum, Path: rel, Size: int64(len(b))}
		case strings.HasPrefix(rel, "policies/") && strings.HasSuffix(rel, ".rego"):
			l.site.Policies = append(l.site.Policies, rel)
		default:
			l.contents[rel] = b
		}
		return nil
	})
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
	s.PolicyMode = "enforce"
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
	}
	if h, ok := r.strs("hierarchy"); ok {
		s.Hierarchy = h
		for i, level := range h {
			if err := checkLevel(level); err != nil {
				r.bad(fmt.Sprintf("hierarchy[%d]", i), "hierarchy level %q: %v", level, err)
			}
		}
	}
	if r.table("policy") {
		r.known("policy", "mode")
		if m, ok := r.str("policy.mode"); ok {
			if !slices.Contains([]string{"enforce", "warn", "off"}, m) {
				r.bad("policy.mode", "policy.mode %q: want enforce, warn or off", m)
			}
			s.PolicyMode = m
		}
	}
	if r.table("rollout") {
		r.known("rollout", "stage")
		for i := range r.tables("rollout.stage") {
			p := fmt.Sprintf("rollout.stage[%d]", i)
			r.known(p, "name", "nodes", "percent", "bake", "max_failed")
			var st Stage
			st.Name, _ = r.str(p + ".name")
			st.Nodes, _ = r.strs(p + ".nodes")
			for j, g := range st.Nodes {
				if _, err := path.Match(g, ""); err != nil {
					r.bad(fmt.Sprintf("%s.nodes[%d]", p, j), "bad glob %q: %v", g, err)
				}
			}
			if pc, ok := r.int(p + ".percent"); ok {
				if pc < 1 || pc > 100 {
					r.bad(p+".percent", "percent %d: want 1 to 100", pc)
				}
				st.Percent = pc
			}
			if b, ok := r.str(p + ".bake"); ok {
				d, err := time.ParseDuration(b)
				if err != nil || d < 0 {
					r.bad(p+".bake", "bake %q: want a duration like \"10m\"", b)
				}
				st.Bake = d
			}
			st.MaxFailed, _ = r.int(p + ".max_failed")
			if st.Name == "" {
				st.Name = fmt.Sprintf("stage-%d", i+1)
			}
			s.Stages = append(s.Stages, st)
		}
	}
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
