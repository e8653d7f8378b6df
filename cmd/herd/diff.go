package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"runtime"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/herdcm/herd/catalogs"
	"github.com/herdcm/herd/cmd/nodecmd"
	"github.com/herdcm/herd/facts"
)

// maxFactsFile caps one --facts DIR file: facts are a host's description,
// not a data dump.
const maxFactsFile = 16 << 20

func newDiffCmd() *cobra.Command {
	var (
		site, from, to, node, factsDir, secretsKey string
		branch, against                            string
		all, jsonOut, exitCode                     bool
	)
	cmd := &cobra.Command{
		Use:   "diff --site DIR [--from REV] [--to REV] [--branch B [--against A]] [--node N | --all] [--facts DIR]",
		Short: "Show how a site change changes each node's catalog",
		Long: `Show which nodes' catalogs a site change changes, and how, locally and
without a server: resources added, removed and changed, each changed
attribute as "from → to", and unified diffs of file content. Each
resource change is grouped with the nodes that make it, so a package bump
on 800 nodes reads as one line even when each node's templated files change
differently too; past 20 one-node groups of the same resource change, the
rest are counted in one line. A resource that only moved in its role (its
source file:line) is not a change.

--from is a git revision of the site's repository (default HEAD); --to is
one too, or, by default, the work tree as it is now, uncommitted edits
included (like git diff). The nodes are those of the site's tests, with
their facts, and every NAME.json file of --facts DIR (facts as
'herd facts --json' prints them; the file's name is the node's). --node
keeps one of them. A node whose catalog fails to compile at either side is
listed as such.

A secret's value is never shown. Without --secrets-key every sensitive
value is a placeholder, so a changed secret is not seen; with it (a copy
of the server's DIR/secrets.key) the secrets are opened in memory and a
changed one reads "(sensitive) changed", by its keyed digest.

--branch B is for a server serving branches as environments: both sides
are compiled as environment B (the branch's name, as the server does), and
--from defaults to B's tip, what B's nodes run now; --to stays the work
tree by default, so that the diff is what pushing the edits to B does to
its nodes. --against A compares branch A, as environment A, to branch B, as
environment B: what A's nodes would get if B were promoted to A.

--json prints {"from", "to", "nodes": {NAME: change}, "failed": {NAME:
message}}, every node included (an unchanged one with an empty change).

Exit status: 0 (with --exit-code: 0 nothing changes, 1 something changes or
a node fails to compile), 1 the site cannot be loaded, 64 bad usage.`,
		Example: `  herd diff --site examples/site                     # HEAD → the work tree
  herd diff --site . --from v41 --to v42 --all
  herd diff --site . --from main~1 --to main --facts /srv/facts --json
  herd diff --site . --node web-01 --exit-code
  herd diff --site . --branch staging                # staging's tip → the work tree, as staging
  herd diff --site . --branch staging --against production`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch {
			case site == "":
				return nodecmd.UsageError(cmd, "--site is required")
			case node != "" && all:
				return nodecmd.UsageError(cmd, "--node and --all exclude each other")
			case node != "" && catalogs.ValidNodeName(node) != nil:
				return nodecmd.UsageError(cmd, fmt.Sprintf("--node: %v", catalogs.ValidNodeName(node)))
			case against != "" && branch == "":
				return nodecmd.UsageError(cmd, "--against needs --branch: it compares branch --against to branch --branch")
			case against != "" && (cmd.Flags().Changed("from") || cmd.Flags().Changed("to")):
				return nodecmd.UsageError(cmd, "--against compares two branches: --from and --to have no meaning with it")
			}
			ctx := cmd.Context()
			// Each side's environment: the branch's name with --branch,
			// herd.toml's without.
			fromEnv, toEnv := branch, branch
			// A branch, not a tag of the same name.
			if branch != "" && !cmd.Flags().Changed("from") {
				from = "refs/heads/" + branch
			}
			if against != "" {
				from, fromEnv, to = "refs/heads/"+against, against, "refs/heads/"+branch
			}
			prev, err := loadSide(ctx, site, from, fromEnv)
			if err != nil {
				return err
			}
			next, err := loadSide(ctx, site, to, toEnv)
			if err != nil {
				return err
			}
			noteEnvironment(cmd, prev, fromEnv)
			if toEnv != fromEnv || next.EnvironmentIgnored != prev.EnvironmentIgnored {
				noteEnvironment(cmd, next, toEnv)
			}
			nodes, err := diffNodes(prev, next, factsDir)
			if err != nil {
				return err
			}
			if node != "" {
				f, ok := nodes[node]
				if !ok {
					return nodecmd.UsageError(cmd, fmt.Sprintf("--node %s: no site test and no --facts file names it, so there are no facts to compile it with", node))
				}
				nodes = map[string]facts.Facts{node: f}
			}
			opts, err := localCompileOptions(secretsKey)
			if err != nil {
				return err
			}
			res := diffFleet(site, prev, next, nodes, opts)
			toLabel := "the work tree"
			if to != "" {
				toLabel = to
			}
			out := cmd.OutOrStdout()
			if jsonOut {
				err = res.writeJSON(out)
			} else {
				err = res.writeText(out, site, from, toLabel, colorOK(out))
			}
			if err != nil {
				return err
			}
			if exitCode && (len(res.failed) > 0 || slices.ContainsFunc(res.names, func(n string) bool { return !res.changes[n].Empty() })) {
				return &nodecmd.CodedError{Code: nodecmd.ExitError, Err: errors.New("")}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&site, "site", "", "the site directory, in a git work tree")
	cmd.Flags().StringVar(&from, "from", "HEAD", "the git revision to compare from")
	cmd.Flags().StringVar(&to, "to", "", "the git revision to compare to (default: the work tree, uncommitted edits included)")
	cmd.Flags().StringVar(&node, "node", "", "show only this node")
	cmd.Flags().BoolVar(&all, "all", false, "show every node (the default)")
	cmd.Flags().StringVar(&factsDir, "facts", "", "a directory of NAME.json facts files, one per node, as 'herd facts --json' prints them")
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print the changes as JSON")
	cmd.Flags().BoolVar(&exitCode, "exit-code", false, "exit 1 when any node's catalog changes or fails to compile")
	cmd.Flags().StringVar(&branch, "branch", "", "compile as the environment of this branch, from its tip (what its nodes run) unless --from says otherwise")
	cmd.Flags().StringVar(&against, "against", "", "with --branch: compare this branch (as its environment) to --branch (as its own)")
	cmd.Flags().StringVar(&secretsKey, "secrets-key", "", "the server's secrets key file, to tell a changed secret by its digest (default: placeholders)")
	return cmd
}

// loadSide loads the site at rev, or its work tree when rev is "", as
// environment env ("" as herd.toml says).
func loadSide(ctx context.Context, site, rev, env string) (*catalogs.Site, error) {
	if rev == "" {
		s, err := catalogs.Load(ctx, site, catalogs.LoadOptions{Environment: env})
		if err != nil {
			return nil, nodecmd.SiteError(site, err)
		}
		return s, nil
	}
	s, err := catalogs.LoadRevision(ctx, site, rev, catalogs.LoadOptions{Environment: env})
	if err != nil {
		var ds catalogs.Diagnostics
		if errors.As(err, &ds) {
			return nil, fmt.Errorf("at %s: %w", rev, nodecmd.SiteError(site, ds))
		}
		return nil, err
	}
	return s, nil
}

// noteEnvironment says on stderr that a branch's herd.toml names another
// environment than the branch's, which wins (the server's rule).
func noteEnvironment(cmd *cobra.Command, s *catalogs.Site, branch string) {
	if s.EnvironmentIgnored != "" {
		fmt.Fprintf(cmd.ErrOrStderr(), "note: herd.toml says environment = %q; the branch %s is compiled as environment %q, as a server serving branches does\n",
			nodecmd.Clean(s.EnvironmentIgnored), nodecmd.Clean(branch), nodecmd.Clean(branch))
	}
}

// loadBranch loads the site as committed on branch, as the environment
// of that name (the server's rule), or the work tree when branch is "".
func loadBranch(ctx context.Context, site, branch string) (*catalogs.Site, error) {
	if branch == "" {
		return loadSide(ctx, site, "", "")
	}
	if strings.HasPrefix(branch, "-") || strings.ContainsAny(branch, " \t\n:~^?*[\\") {
		return nil, fmt.Errorf("--branch %q: not a branch name", branch)
	}
	return loadSide(ctx, site, "refs/heads/"+branch, branch)
}

// diffNodes gathers the nodes to compile with their facts: the site tests
// of either side (the newer side's first, tests expecting a compile error
// left out), then the files of factsDir, which win.
func diffNodes(prev, next *catalogs.Site, factsDir string) (map[string]facts.Facts, error) {
	nodes := map[string]facts.Facts{}
	for _, s := range []*catalogs.Site{next, prev} {
		for _, t := range s.Tests {
			if _, seen := nodes[t.Node]; !seen && t.Error == "" {
				nodes[t.Node] = t.Facts
			}
		}
	}
	if factsDir == "" {
		return nodes, nil
	}
	root, err := os.OpenRoot(factsDir)
	if err != nil {
		return nil, fmt.Errorf("reading facts: %w", err)
	}
	defer root.Close()
	entries, err := fs.ReadDir(root.FS(), ".")
	if err != nil {
		return nil, fmt.Errorf("reading facts: %w", err)
	}
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok {
			continue
		}
		if err := catalogs.ValidNodeName(name); err != nil {
			return nil, fmt.Errorf("facts file %s/%s: %w", factsDir, e.Name(), err)
		}
		if !e.Type().IsRegular() {
			return nil, fmt.Errorf("facts file %s/%s: not a regular file", factsDir, e.Name())
		}
		b, err := readCapped(root, e.Name(), maxFactsFile)
		if err != nil {
			return nil, fmt.Errorf("facts file %s/%s: %w", factsDir, e.Name(), err)
		}
		f, err := facts.FromJSON(b)
		if err != nil {
			return nil, fmt.Errorf("facts file %s/%s: %w", factsDir, e.Name(), err)
		}
		nodes[name] = f
	}
	return nodes, nil
}

// readCapped reads a regular file of root, refusing one over limit bytes.
func readCapped(root *os.Root, name string, limit int64) ([]byte, error) {
	f, err := root.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, errors.New("not a regular file")
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("more than %d MiB", limit>>20)
	}
	return b, nil
}

// fleetDiff is every node's change between two versions of a site.
type fleetDiff struct {
	from, to string                     // the two site versions
	names    []string                   // every node, sorted
	changes  map[string]catalogs.Change // by node; absent when failed
	failed   map[string]string          // by node: why its compile failed
}

// diffFleet compiles every node at both versions with opts (placeholders,
// or the secrets opened and sealed to one throwaway key, so that an
// unchanged secret seals alike on both sides). A compile error's files
// are prefixed with the site directory, like every other diagnostic.
func diffFleet(site string, prev, next *catalogs.Site, nodes map[string]facts.Facts, opts catalogs.CompileOptions) *fleetDiff {
	d := &fleetDiff{from: prev.Version, to: next.Version, changes: map[string]catalogs.Change{}, failed: map[string]string{}}
	// A file's digest can come from either side.
	content := func(digest string) ([]byte, bool) {
		if b, ok := next.FileContent(digest); ok {
			return b, true
		}
		return prev.FileContent(digest)
	}
	for name := range nodes {
		d.names = append(d.names, name)
	}
	slices.Sort(d.names)
	// Sites are immutable once loaded: compile the nodes in parallel, one
	// worker per CPU, each writing only its own slots.
	changes := make([]catalogs.Change, len(d.names))
	failed := make([]string, len(d.names))
	var g errgroup.Group
	g.SetLimit(runtime.GOMAXPROCS(0))
	for i, name := range d.names {
		g.Go(func() error {
			a, errA := prev.CompileWith(name, nodes[name], opts)
			b, errB := next.CompileWith(name, nodes[name], opts)
			var why []string
			if errA != nil {
				why = append(why, "at "+shortVersion(prev.Version)+": "+errSummary(nodecmd.PrefixSite(site, errA)))
			}
			if errB != nil {
				why = append(why, "at "+shortVersion(next.Version)+": "+errSummary(nodecmd.PrefixSite(site, errB)))
			}
			if len(why) > 0 {
				failed[i] = strings.Join(why, "; ")
				return nil
			}
			changes[i] = catalogs.Diff(a, b, content)
			return nil
		})
	}
	_ = g.Wait() // the workers return no error
	for i, name := range d.names {
		if failed[i] != "" {
			d.failed[name] = failed[i]
		} else {
			d.changes[name] = changes[i]
		}
	}
	return d
}

func (d *fleetDiff) writeJSON(w io.Writer) error {
	doc := struct {
		From   string                     `json:"from"`
		To     string                     `json:"to"`
		Nodes  map[string]catalogs.Change `json:"nodes"`
		Failed map[string]string          `json:"failed,omitempty"`
	}{d.from, d.to, d.changes, d.failed}
	return nodecmd.WriteJSON(w, doc)
}

func (d *fleetDiff) writeText(w io.Writer, site, from, to string, color bool) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "site %s: %s (%s) → %s (%s)\n", site, from, shortVersion(d.from), to, shortVersion(d.to))
	groups := catalogs.GroupChanges(d.changes)
	var same []string
	for _, n := range d.names {
		if ch, ok := d.changes[n]; ok && ch.Empty() {
			same = append(same, n)
		}
	}
	switch {
	case len(d.names) == 0:
		fmt.Fprintln(bw, "no nodes to compile: the site has no tests; give --facts DIR")
	case len(groups) == 0 && len(d.failed) == 0:
		fmt.Fprintf(bw, "no catalog changes (%s compiled)\n", plural(len(d.names), "node"))
	}
	if len(groups) > 0 {
		bw.WriteByte('\n')
		if err := catalogs.WriteChanges(bw, groups, catalogs.WriteOptions{Color: color}); err != nil {
			return err
		}
	}
	if len(same) > 0 && len(groups) > 0 {
		fmt.Fprintf(bw, "\n%s unchanged: %s\n", plural(len(same), "node"), strings.Join(same, ", "))
	}
	if len(d.failed) > 0 {
		fmt.Fprintf(bw, "\n%s failed to compile:\n", plural(len(d.failed), "node"))
		for _, n := range d.names {
			if why, ok := d.failed[n]; ok {
				fmt.Fprintf(bw, "  %s: %s\n", n, why)
			}
		}
	}
	return bw.Flush()
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// errSummary keeps an error's first line and says how many more it had.
func errSummary(err error) string {
	first, rest, more := strings.Cut(err.Error(), "\n")
	if !more {
		return first
	}
	return fmt.Sprintf("%s (and %d more)", first, strings.Count(rest, "\n")+1)
}

// shortVersion abbreviates a commit id (keeping a +dirty suffix).
func shortVersion(v string) string {
	commit, dirty, isDirty := strings.Cut(v, "+")
	if len(commit) == 40 {
		commit = commit[:12]
	}
	if isDirty {
		return commit + "+" + dirty
	}
	return commit
}

// colorOK reports whether w is a terminal that wants color.
func colorOK(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok || os.Getenv("NO_COLOR") != "" || os.Getenv("TERM") == "dumb" {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
