package catalogs

import (
	"cmp"
	"crypto/ecdh"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/herdcm/herd/facts"
)

// compileEnv is the context conditions and templates see.
func compileEnv(node, environment string, f facts.Facts, params map[string]any) map[string]any {
	if params == nil {
		params = map[string]any{}
	}
	fm := map[string]any(f)
	if fm == nil {
		fm = map[string]any{}
	}
	return map[string]any{"node": node, "environment": environment, "facts": fm, "params": params}
}

// built is a resource during compile, with what the catalog does not keep:
// where each edge was written.
type built struct {
	res Resource
	pos Pos
	// whereVia and elem say, with pos, where the declaration was made
	// for diagnostics (see where).
	whereVia, elem string
	edges          []edge
	// tainted names the attributes whose value depends on a secret: they
	// are sealed to the node.
	tainted []string
}

// where names the declaration of b for a diagnostic: its place, the uses
// of definitions it came through and its for_each element.
func (b *built) where() string { return b.whereVia + b.pos.String() + b.elem }

type edge struct {
	kind string // require, before, notify, subscribe, or "implicit: …"
	ref  string
	pos  Pos
}

// CompileOptions say how a compile treats the site's secrets and the
// attributes that are sensitive by nature (see secrets.go).
type CompileOptions struct {
	// Secrets opens the site's secrets. Without it a catalog that uses a
	// secret does not compile (unless Placeholders).
	Secrets *SecretKeys
	// Seal seals sensitive values; Secrets' SealKey when nil.
	Seal *SealKey
	// NodeKey is the node's X25519 public key, which sensitive values are
	// sealed to. A catalog with a sensitive value needs one.
	NodeKey *ecdh.PublicKey
	// Placeholders compiles without opening secrets or sealing: every
	// sensitive value is an empty Sealed. For herd check and herd
	// compile, which show a catalog's shape without any key.
	Placeholders bool
}

// Compile builds node's catalog from the site and the node's facts. It is
// pure and deterministic: the same site version, node and facts give the
// same bytes. Every mistake is returned at once as Diagnostics. It opens no
// secret: a catalog that needs one fails (see CompileWith).
func (s *Site) Compile(node string, f facts.Facts) (*Catalog, error) {
	return s.CompileWith(node, f, CompileOptions{})
}

// CompileWith is Compile with the keys that open the site's secrets and
// seal sensitive values to the node. Sealing is deterministic, so the
// catalog still is.
func (s *Site) CompileWith(node string, f facts.Facts, opts CompileOptions) (*Catalog, error) {
	cat, _, err := s.compile(node, f, opts, nil)
	return cat, err
}

// compile is CompileWith, recording why the catalog is what it is when p
// is not nil (Explain). It returns the compiler for Explain to read.
func (s *Site) compile(node string, f facts.Facts, opts CompileOptions, p *provRecorder) (*Catalog, *compiler, error) {
	if err := ValidNodeName(node); err != nil {
		return nil, nil, Diagnostics{{Msg: err.Error()}}
	}
	env := compileEnv(node, s.Settings.Environment, f, nil)
	cls, err := s.classify(node, env)
	if err != nil {
		return nil, nil, err
	}
	srcs := s.sources(node, cls, f)
	if p != nil {
		p.classified(s, node, cls)
		p.srcs = srcs
	}
	params := mergeParams(srcs)
	n := 0
	for _, name := range cls.roles {
		n += len(s.roles[name].decls)
	}
	if opts.Seal == nil && opts.Secrets != nil {
		opts.Seal = opts.Secrets.SealKey()
	}
	// for_each and definitions make more resources than declarations:
	// the largest catalog compiled from this site so far is the better
	// guess (nodes of a fleet are alike). It only sizes allocations.
	n = max(n, int(s.sizeHint.Load()))
	c := &compiler{
		site:  s,
		byID:  make(map[string]*built, n),
		files: map[string]FileRef{},
		// One allocation for every resource when the guess holds; past
		// it, new chunks (never a copy), so the pointers in byID stay
		// valid.
		pool:     make([]built, 0, n),
		opts:     opts,
		tracking: s.hasSecrets,
		prov:     p,
	}
	c.instances = map[string]*instance{}
	if c.tracking {
		plain, decoy, found := c.resolveSecrets("params", params)
		if found {
			params = plain.(map[string]any)
			c.decoyCtx = compileEnv(node, s.Settings.Environment, f, decoy.(map[string]any))
		}
	}
	c.ctx = compileEnv(node, s.Settings.Environment, f, params)
	for _, name := range cls.roles {
		if p != nil {
			p.role = name
		}
		for _, d := range s.roles[name].decls {
			c.run(d)
		}
	}
	if c.r != nil {
		c.r.b.secret = nil
		s.render.put(c.r)
	}
	c.link()
	if len(c.diags) == 0 {
		c.seal()
	}
	if len(c.diags) > 0 {
		c.scrubDiags()
		return nil, nil, c.diags.err()
	}
	s.noteSize(len(c.order))
	cat := &Catalog{
		Environment: s.Settings.Environment,
		Node:        node,
		Version:     s.Version,
		Resources:   make([]Resource, 0, len(c.order)),
		Files:       make([]FileRef, 0, len(c.files)),
	}
	// Sort pointers, not the resources: a Resource is large to swap.
	slices.SortFunc(c.order, func(a, b *built) int { return cmp.Compare(a.res.ID, b.res.ID) })
	for _, b := range c.order {
		cat.Resources = append(cat.Resources, b.res)
	}
	for _, fr := range c.files {
		cat.Files = append(cat.Files, fr)
	}
	slices.SortFunc(cat.Files, func(a, b FileRef) int { return cmp.Compare(a.Digest, b.Digest) })
	cat.Files = slices.CompactFunc(cat.Files, func(a, b FileRef) bool { return a.Digest == b.Digest })
	return cat, c, nil
}

type compiler struct {
	site  *Site
	ctx   map[string]any
	byID  map[string]*built
	order []*built
	files map[string]FileRef
	diags Diagnostics
	buf   strings.Builder
	pool  []built
	r     *renderer // the templates bound to this compile's budget, once one renders
	frame
	instances  map[string]*instance // every use of a definition, by "vhost:shop"
	expansions int                  // declarations made, against MaxExpansions
	repos      []string             // the apt_repository ids, once aptRepos looked
	// trees maps the top of a source directory's tree to the ids of the
	// resources below it, and treeOf each of those to its top.
	trees  map[string][]string
	treeOf map[string]string

	opts CompileOptions
	// prov records why the catalog is what it is, for Explain; nil for
	// every other compile.
	prov *provRecorder
	// tracking says the site has secrets: renders that may read one run
	// a second time with decoys (decoyCtx, decoy), and what differs is
	// tainted.
	tracking bool
	decoyCtx map[string]any // nil when the node's params hold no secret
	// secretPaths are the dotted paths of the secrets in the context,
	// "params.db.password".
	secretPaths []string
	decoy       bool
	opened      int // secrets opened for plain renders so far
	// scrub are the plain values (secrets and what rendered from them)
	// that no diagnostic may carry: a check's message quotes the value
	// it refuses.
	scrub []string
}

// renderer returns the compile's templates, taking them on first use.
func (c *compiler) renderer() (*renderer, error) {
	if c.r == nil {
		r, err := c.site.render.get()
		if err != nil {
			return nil, err
		}
		r.b.secret = c.secretFile
		c.r = r
	}
	return c.r, nil
}

// declare renders one declaration for this node and adds it.
func (c *compiler) declare(d *decl) {
	if ok, _ := c.when(d); !ok {
		return
	}
	s := d.schema
	before := len(c.diags)
	attrs := make(map[string]any, len(d.attrs)+2)
	if len(c.pool) == cap(c.pool) {
		c.pool = make([]built, 0, max(32, cap(c.pool)))
	}
	c.pool = append(c.pool, built{pos: d.pos})
	b := &c.pool[len(c.pool)-1]
	for _, a := range d.attrs {
		v := a.static
		if a.dyn {
			raw, tainted, err := c.tracked(c.attrMayRead(a), func() (any, error) { return c.renderRaw(a) })
			if err != nil {
				c.diags = append(c.diags, err.(Diagnostic))
				continue
			}
			if tainted {
				if !c.mayBeSecret(d, a) {
					continue
				}
				b.tainted = append(b.tainted, a.name)
			}
			if v, err = c.coerce(a, raw); err != nil {
				if tainted && c.opts.Placeholders {
					// A placeholder need not look like the value.
					v = raw
				} else {
					c.diags = append(c.diags, err.(Diagnostic))
					continue
				}
			}
		}
		if a.attr.Kind == KindRefs {
			for i, ref := range v.([]string) {
				pos := a.pos
				if i < len(a.elemAt) {
					pos = a.elemAt[i]
				}
				b.edges = append(b.edges, edge{kind: a.name, ref: ref, pos: pos})
			}
			continue
		}
		attrs[a.name] = v
	}
	if len(c.diags) > before {
		return
	}
	if !d.static() {
		s.check(attrs, func(attr, format string, args ...any) {
			c.diags.add(d.attrPos(attr), format, args...)
		})
	}
	if ig, ok := attrs["ignore"].([]string); ok && len(ig) > 0 && len(s.Ignorable) == 0 {
		c.diags.add(d.attrPos("ignore"), "ignore: every %s resource is converged whole: it has no attribute the agent could leave alone", s.Type)
	} else if ok {
		for _, name := range ig {
			if !slices.Contains(s.Ignorable, name) {
				c.diags.add(d.attrPos("ignore"), "ignore: %q is not an attribute the agent can leave alone for %s (want one of %s)", name, s.Type, strings.Join(s.Ignorable, ", "))
			}
		}
	}
	if audit, _ := attrs["audit"].(bool); audit && attrs["drift"] == "watch" {
		// watch puts a hand edit back at once; audit never changes the
		// resource. Which one was meant is the author's to say.
		c.diags.add(d.attrPos("drift"), "drift = \"watch\" changes the resource back at once, audit = true never changes it: give one")
	}
	name, _ := attrs[s.Key].(string)
	if s.Type == "exec" && name == "" {
		name = strings.Join(attrs["command"].([]string), " ")
		attrs["name"] = name
	}
	if name == "" && (s.Type == "line" || s.Type == "ini") {
		if t := slices.IndexFunc(b.tainted, func(n string) bool { return n != "value" }); t >= 0 {
			// The default name quotes the line or the match.
			c.diags.add(d.attrPos(b.tainted[t]), "%s comes from a secret, so it cannot name the resource: give %s a name", b.tainted[t], s.Type)
			return
		}
		name = defaultEditName(s.Type, attrs)
		attrs["name"] = name
	}
	if name == "" {
		c.diags.add(d.attrPos(s.Key), "%s: %s is empty", s.Type, s.Key)
	}
	treeSrc := ""
	if src, _ := attrs["source"].(string); s.Type == "file" && (attrs["recurse"] == true || strings.HasSuffix(src, "/")) {
		treeSrc = c.treeTop(attrs)
	}
	if c.resolveContent(d, attrs) {
		b.tainted = append(b.tainted, "content")
	}
	if len(c.diags) > before {
		return
	}
	c.addTags(d, attrs)
	if len(c.diags) > before {
		return
	}
	b.res = Resource{ID: s.Type + ":" + name, Type: s.Type, Name: name, Attrs: attrs, Source: c.via + d.source}
	b.whereVia, b.elem = c.whereVia, c.elem
	if prev, dup := c.byID[b.res.ID]; dup {
		if b.whereVia != "" || b.elem != "" {
			// From a for_each or a definition: name this place too.
			c.diags.add(d.pos, "duplicate resource %s from %s: already declared at %s", b.res.ID, b.where(), prev.where())
		} else {
			c.diags.add(d.pos, "duplicate resource %s: already declared at %s", b.res.ID, prev.where())
		}
		c.pool = c.pool[:len(c.pool)-1]
		return
	}
	b.edges = append(b.edges, c.useEdges...)
	for _, in := range c.insts {
		in.members = append(in.members, b)
	}
	c.byID[b.res.ID] = b
	c.order = append(c.order, b)
	if c.prov != nil {
		c.prov.declared(c, d, b)
	}
	if treeSrc != "" {
		c.expandTree(d, b, treeSrc)
	}
}

// treeTop turns a file resource whose source is a directory into the
// directory at the top of the tree and returns the source: its own mode
// is dir_mode's, and the files' mode stays in the attributes as
// "file_mode" only until expandTree has read it.
func (c *compiler) treeTop(attrs map[string]any) string {
	src, _ := attrs["source"].(string)
	delete(attrs, "source")
	attrs["recurse"] = true
	attrs["ensure"] = "directory"
	if m, ok := attrs["mode"]; ok {
		attrs["\x00file_mode"] = m
	}
	delete(attrs, "mode")
	if dm, ok := attrs["dir_mode"]; ok {
		attrs["mode"] = dm
	}
	return src
}

// treeCopied are the attributes every resource of a source directory's
// tree takes from the declaration.
var treeCopied = []string{"owner", "group", "backup", "drift", "audit", "ignore"}

// expandTree adds a file resource for every file and directory under the
// source directory src of top (a directory resource), below top's path:
// each file by digest like any source, so the catalog lists every file it
// ships and the agent fetches each as it does one. Files take mode, or the
// site's executable bit (0755, else 0644); directories dir_mode, and purge.
// The site never holds a symbolic link (Load refuses one, naming it), so
// nothing a link in the site points at can be shipped.
func (c *compiler) expandTree(d *decl, top *built, src string) {
	a := top.res.Attrs
	fileMode, hasFileMode := a["\x00file_mode"]
	delete(a, "\x00file_mode")
	rel := path.Clean("files/" + strings.TrimPrefix(src, "files/"))
	if !strings.HasPrefix(rel, "files/") || !c.site.dirs[rel] {
		if _, isFile := c.site.files[rel]; isFile {
			c.diags.add(d.attrPos("source"), "source %q is a file: a source directory (recurse) names a directory under files/", src)
		} else {
			c.diags.add(d.attrPos("source"), "source %q: no such directory under files/", src)
		}
		return
	}
	prefix := rel + "/"
	if c.trees == nil {
		c.trees = map[string][]string{}
		c.treeOf = map[string]string{}
	}
	tree := c.site.tree
	for i, _ := slices.BinarySearch(tree, prefix); i < len(tree) && strings.HasPrefix(tree[i], prefix); i++ {
		p := top.res.Name + "/" + tree[i][len(prefix):]
		attrs := map[string]any{"path": p}
		for _, k := range treeCopied {
			if v, ok := a[k]; ok {
				attrs[k] = v
			}
		}
		if c.site.dirs[tree[i]] {
			attrs["ensure"] = "directory"
			if dm, ok := a["dir_mode"]; ok {
				attrs["mode"] = dm
			}
			if a["purge"] == true {
				attrs["purge"] = true
			}
		} else {
			fr := c.site.files[tree[i]]
			attrs["source"], attrs["digest"] = tree[i], fr.Digest
			c.files[fr.Digest] = fr
			switch {
			case hasFileMode:
				attrs["mode"] = fileMode
			case c.site.execs[tree[i]]:
				attrs["mode"] = "0755"
			default:
				attrs["mode"] = "0644"
			}
		}
		id := "file:" + p
		if prev, dup := c.byID[id]; dup {
			c.diags.add(d.attrPos("source"), "duplicate resource %s: already declared at %s, and %s holds it too", id, prev.pos, tree[i])
			continue
		}
		nb := &built{pos: d.pos, res: Resource{ID: id, Type: "file", Name: p, Attrs: attrs, Source: d.source}}
		for _, e := range top.edges {
			if e.kind == "notify" {
				nb.edges = append(nb.edges, e)
			}
		}
		c.byID[id] = nb
		c.order = append(c.order, nb)
		if c.prov != nil {
			c.prov.treeMember(d, top, nb)
		}
		c.trees[top.res.ID] = append(c.trees[top.res.ID], id)
		c.treeOf[id] = top.res.ID
	}
	delete(a, "dir_mode") // the top's own mode now; its directories have theirs
}

// defaultEditName names a line or ini resource that was given no name
// by what it edits: "/etc/app.conf: allow all" (the line, or the match
// between slashes), "/etc/app.ini: [server] port".
func defaultEditName(typ string, a map[string]any) string {
	str := func(k string) string { s, _ := a[k].(string); return s }
	if typ == "ini" {
		if sec := str("section"); sec != "" {
			return str("path") + ": [" + sec + "] " + strings.TrimSpace(str("setting"))
		}
		return str("path") + ": " + strings.TrimSpace(str("setting"))
	}
	if _, ok := a["line"]; ok {
		return str("path") + ": " + str("line")
	}
	return str("path") + ": /" + str("match") + "/"
}

// noteSize raises the site's size hint to n.
func (s *Site) noteSize(n int) {
	for {
		hint := s.sizeHint.Load()
		if int64(n) <= hint || s.sizeHint.CompareAndSwap(hint, int64(n)) {
			return
		}
	}
}

// renderRaw executes a declAttr's templates (and opens its secrets); the
// result is not coerced yet.
func (c *compiler) renderRaw(a *declAttr) (any, error) {
	switch {
	case a.list != nil:
		out := make([]string, len(a.list))
		for i, ts := range a.list {
			s, err := c.renderString(ts, a.pos)
			if err != nil {
				return nil, err
			}
			out[i] = s
		}
		return out, nil
	case a.table != nil:
		out := make(map[string]string, len(a.table))
		for k, ts := range a.table {
			s, err := c.renderString(ts, a.pos)
			if err != nil {
				return nil, err
			}
			out[k] = s
		}
		return out, nil
	}
	return c.renderString(a.value, a.pos)
}

func (c *compiler) coerce(a *declAttr, v any) (any, error) {
	out, err := coerce(a.attr, v, true)
	if err != nil {
		return nil, Diagnostic{Pos: a.pos, Msg: fmt.Sprintf("%s: %v (after rendering its template)", a.name, err)}
	}
	return out, nil
}

// resolveContent renders template files into content and turns source
// paths into digests of the site's files. It reports whether the content
// depends on a secret.
func (c *compiler) resolveContent(d *decl, attrs map[string]any) (tainted bool) {
	if name, ok := attrs["template"].(string); ok {
		delete(attrs, "template")
		if name == "" || c.site.render.files.Lookup(name) == nil {
			c.diags.add(d.attrPos("template"), "template %q: no such file under templates/", name)
			return
		}
		r, err := c.renderer()
		if err != nil {
			c.diags.add(d.attrPos("template"), "template %q: %v", name, err)
			return
		}
		var at Pos
		content, t, err := c.tracked(c.mayRead(c.site.render.fileRefs, name), func() (any, error) {
			var err error
			at, err = c.site.render.execute(r, r.files, c.site.render.fileWeights[name], name, c.ctx, &c.buf)
			return c.buf.String(), err
		})
		if err != nil {
			diag := Diagnostic{Pos: at, Msg: "template: " + err.Error()}
			if !errors.Is(err, errBudget) {
				diag = templateFilePos("templates/"+name, err)
			} else if diag.File == "" {
				diag.Pos = Pos{File: "templates/" + name}
			}
			diag.Msg += fmt.Sprintf(" (rendering for %s)", d.attrPos("template"))
			c.diags = append(c.diags, diag)
			return
		}
		attrs["content"] = content
		tainted = t
	}
	if key, ok := attrs["key"].(string); ok && d.schema.Type == "apt_repository" {
		rel := path.Clean("files/" + strings.TrimPrefix(key, "files/"))
		fr, ok := c.site.files[rel]
		if !ok || !strings.HasPrefix(rel, "files/") {
			c.diags.add(d.attrPos("key"), "key %q: no such file under files/", key)
			return
		}
		attrs["key"] = rel
		attrs["key_digest"] = fr.Digest
		c.files[fr.Digest] = fr
	}
	if src, ok := attrs["source"].(string); ok {
		rel := path.Clean("files/" + strings.TrimPrefix(src, "files/"))
		fr, ok := c.site.files[rel]
		if !ok || !strings.HasPrefix(rel, "files/") {
			c.diags.add(d.attrPos("source"), "source %q: no such file under files/", src)
			return
		}
		attrs["source"] = rel
		attrs["digest"] = fr.Digest
		c.files[fr.Digest] = fr
	}
	return
}

// link resolves every edge, adds the implicit ones and checks the graph.
func (c *compiler) link() {
	c.expandInstances()
	for _, b := range c.order {
		c.implicit(b)
		c.editConflict(b)
	}
	for _, b := range c.order {
		self := b.res.ID
		for _, e := range b.edges {
			t, ok := c.byID[e.ref]
			if !ok {
				if !strings.HasPrefix(e.kind, "implicit") {
					c.diags.add(e.pos, "%s: no resource %s in the catalog of node %s", e.kind, e.ref, c.ctx["node"])
				}
				continue
			}
			// A source directory's tree stands for all of it: what waits
			// for the top, or is before it, or subscribes to it, does so
			// for every file below too (the tree's own resources aside,
			// which wait for their directories).
			kids := c.trees[e.ref]
			if c.treeOf[self] == e.ref {
				kids = nil
			}
			switch e.kind {
			case "before":
				t.res.Require = append(t.res.Require, self)
				t.res.Require = append(t.res.Require, c.trees[self]...)
			case "notify":
				t.res.Require = append(t.res.Require, self)
				b.res.Notify = append(b.res.Notify, e.ref)
			case "subscribe":
				b.res.Require = append(b.res.Require, e.ref)
				t.res.Notify = append(t.res.Notify, self)
				for _, k := range kids {
					b.res.Require = append(b.res.Require, k)
					c.byID[k].res.Notify = append(c.byID[k].res.Notify, self)
				}
			default: // require, implicit
				b.res.Require = append(b.res.Require, e.ref)
				b.res.Require = append(b.res.Require, kids...)
			}
		}
	}
	for _, b := range c.order {
		b.res.Require = sortedSet(b.res.Require)
		b.res.Notify = sortedSet(b.res.Notify)
	}
	c.findCycles()
}

// sortedSet sorts ids and drops duplicates, in place.
func sortedSet(ids []string) []string {
	if len(ids) == 0 {
		return nil
	}
	slices.Sort(ids)
	return slices.Compact(ids)
}

// implicit adds the edges an operator should not have to write: a file
// waits for its managed parent directory, owner and group; an exec or a
// service for its user; a user for its groups; an authorized key for its
// user; a package installed by name for every apt_repository; a cron job,
// a sysctl and an apt source for the managed directory they write in.
func (c *compiler) implicit(b *built) {
	a := b.res.Attrs
	add := func(kind, ref string) {
		if _, ok := c.byID[ref]; ok && ref != b.res.ID {
			b.edges = append(b.edges, edge{kind: "implicit " + kind, ref: ref, pos: b.pos})
		}
	}
	str := func(k string) string { s, _ := a[k].(string); return s }
	switch b.res.Type {
	case "file":
		for dir := path.Dir(b.res.Name); dir != "/" && dir != "."; dir = path.Dir(dir) {
			if pb, ok := c.byID["file:"+dir]; ok {
				if e, _ := pb.res.Attrs["ensure"].(string); e == "directory" {
					add("parent directory", "file:"+dir)
				}
				break
			}
		}
		if o := str("owner"); o != "" {
			add("owner", "user:"+o)
		}
		if g := str("group"); g != "" {
			add("group", "group:"+g)
		}
	case "exec":
		if u := str("user"); u != "" {
			add("user", "user:"+u)
		}
		if d := str("cwd"); d != "" {
			add("cwd", "file:"+d)
		}
	case "service":
		if u := str("user"); u != "" {
			add("user", "user:"+u)
		}
		if g := str("group"); g != "" {
			add("group", "group:"+g)
		}
		if d := str("dir"); d != "" {
			add("dir", "file:"+d)
		}
	case "line", "ini":
		// An edit waits for the file resource that manages the same
		// path's mode or owner (editConflict refuses one that manages its
		// content), and for the directory it is in.
		p := str("path")
		add("file", "file:"+p)
		for dir := path.Dir(p); dir != "/" && dir != "."; dir = path.Dir(dir) {
			if _, ok := c.byID["file:"+dir]; ok {
				add("parent directory", "file:"+dir)
				break
			}
		}
	case "cron":
		if u := str("user"); u != "" {
			add("user", "user:"+u)
		}
		// The job's file lives in /etc/cron.d: a site that manages the
		// directory (a purge, say) makes it first.
		add("directory", "file:/etc/cron.d")
	case "sysctl":
		add("directory", "file:/etc/sysctl.d")
	case "apt_repository":
		add("directory", "file:/etc/apt/sources.list.d")
		add("directory", "file:/etc/apt/keyrings")
	case "mount":
		add("mount point", "file:"+b.res.Name)
	case "authorized_key":
		if u := str("user"); u != "" {
			add("user", "user:"+u)
		}
	case "package":
		// An install by name needs the catalog's sources in place first
		// (the agent refreshes apt's lists once, before the first such
		// install); a package from a site .deb needs none.
		if str("source") == "" {
			for _, r := range c.aptRepos() {
				add("apt source", r)
			}
		}
	case "user":
		if g := str("gid"); g != "" {
			add("primary group", "group:"+g)
		}
		for _, g := range b.res.Strings("groups") {
			add("group", "group:"+g)
		}
	}
}

// editConflict refuses a line or ini resource on a path whose whole
// content a file resource manages: each run would put back the other's
// work, and neither would ever be in sync.
func (c *compiler) editConflict(b *built) {
	if b.res.Type != "line" && b.res.Type != "ini" {
		return
	}
	p, _ := b.res.Attrs["path"].(string)
	f, ok := c.byID["file:"+p]
	if !ok {
		return
	}
	a := f.res.Attrs
	ensure, _ := a["ensure"].(string)
	_, content := a["content"]
	_, source := a["source"]
	if content || source || (ensure != "" && ensure != "file") {
		what := "content"
		if !content && !source {
			what = fmt.Sprintf("ensure = %q", ensure)
		}
		c.diags.add(b.pos, "%s edits %s, whose %s file:%s (declared at %s) manages: give the whole file to one of them", b.res.ID, p, what, p, f.pos)
	}
}

// aptRepos returns the ids of the catalog's apt_repository resources,
// found once per compile.
func (c *compiler) aptRepos() []string {
	if c.repos == nil {
		c.repos = []string{}
		for _, b := range c.order {
			if b.res.Type == "apt_repository" {
				c.repos = append(c.repos, b.res.ID)
			}
		}
	}
	return c.repos
}

// findCycles reports every dependency cycle, spelled out with where each
// of its edges was written.
func (c *compiler) findCycles() {
	const (
		unseen = iota
		onPath
		done
	)
	state := make(map[string]int8, len(c.order))
	var stack []string
	var visit func(id string)
	visit = func(id string) {
		state[id] = onPath
		stack = append(stack, id)
		for _, dep := range c.byID[id].res.Require {
			switch state[dep] {
			case unseen:
				visit(dep)
			case onPath:
				start := slices.Index(stack, dep)
				c.reportCycle(append(slices.Clone(stack[start:]), dep))
			}
		}
		stack = stack[:len(stack)-1]
		state[id] = done
	}
	// Visit in ID order so that the same cycle is reported the same way
	// on every compile.
	ids := make([]string, 0, len(c.order))
	for _, b := range c.order {
		ids = append(ids, b.res.ID)
	}
	slices.Sort(ids)
	for _, id := range ids {
		if state[id] == unseen {
			visit(id)
		}
	}
}

// reportCycle describes cycle (a path whose last element is its first),
// where each element waits for the next.
func (c *compiler) reportCycle(cycle []string) {
	var why []string
	for i := 0; i+1 < len(cycle); i++ {
		from, to := c.byID[cycle[i]], c.byID[cycle[i+1]]
		why = append(why, edgeWhy(from, to))
	}
	c.diags.add(c.byID[cycle[0]].pos, "dependency cycle: %s (%s)", strings.Join(cycle, " → "), strings.Join(why, "; "))
}

// edgeWhy says which declaration makes from wait for to.
func edgeWhy(from, to *built) string {
	for _, e := range from.edges {
		if e.ref != to.res.ID {
			continue
		}
		switch {
		case e.kind == "require":
			return fmt.Sprintf("%s requires %s at %s", from.res.ID, to.res.ID, e.pos)
		case e.kind == "subscribe":
			return fmt.Sprintf("%s subscribes to %s at %s", from.res.ID, to.res.ID, e.pos)
		case strings.HasPrefix(e.kind, "implicit "):
			return fmt.Sprintf("%s needs %s (its %s, implicitly)", from.res.ID, to.res.ID, strings.TrimPrefix(e.kind, "implicit "))
		}
	}
	for _, e := range to.edges {
		if e.ref != from.res.ID {
			continue
		}
		switch e.kind {
		case "before":
			return fmt.Sprintf("%s is before %s at %s", to.res.ID, from.res.ID, e.pos)
		case "notify":
			return fmt.Sprintf("%s notifies %s at %s", to.res.ID, from.res.ID, e.pos)
		}
	}
	return fmt.Sprintf("%s waits for %s", from.res.ID, to.res.ID)
}
