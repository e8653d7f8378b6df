package nodecmd

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/herdcm/herd/agent"
	"github.com/herdcm/herd/agent/sandbox"
	"github.com/herdcm/herd/catalogs"
)

func newApplyCmd() *cobra.Command {
	var (
		o                      agent.ApplyOptions
		jsonOut, diff, verbose bool
		yes                    bool
		tags, only             []string
	)
	cmd := &cobra.Command{
		Use:   "apply --site DIR [--node NAME] [--root DIR] [--noop]",
		Short: "Compile a site for this host and converge it (masterless)",
		Long: `Compile the site for this host and make the host match it, like puppet apply.

Every resource is checked; changes are applied in dependency order, with
independent resources in parallel; a failed resource skips only its
dependents. After applying a change the resource is checked again: a change
that does not stick is a failure, not a success. Replaced file contents are
kept (see herd backups). One run happens at a time: a second run declines
at once, naming the first, unless --wait is given.

--noop checks only and reports what would change; nothing is written: no
sandbox layout, no state database, no history row, no saved content. A
resource whose state depends on a change noop did not make is reported as
unknown, naming the change it waits for.

--tags TAG,… and --only TYPE:NAME (repeatable) make a partial run, like
Puppet's --tags: only the resources carrying one of the tags (their own
tags, the role that declares them, the definitions they came from) or
named by --only are converged, with every resource they require. A tag no
resource carries, or an --only resource the catalog lacks, is an error.

--root DIR converges a sandbox: every path is under DIR, packages are
installed with dpkg --root, accounts with useradd --prefix, and commands
run with HERD_ROOT=DIR. What a minimal Debian host has and DIR lacks (an
empty dpkg database, passwd and group, login.defs, os-release…) is laid out
first (not with --noop: a root not laid out yet is refused); files that
exist are left alone. State lives in DIR/var/lib/herd.

Exit status (Puppet's --detailed-exitcodes): 0 in sync, 2 changed (with
--noop: would change; or a resource marked audit = true differs: drift,
which is never a failure), 4 failures, 6 changes and failures, 1 the run
could not start (a site error, the lock held), 64 bad usage.

On the real root (/) from a terminal, herd apply first checks (as
--noop) and says which node and catalog it is about to apply and how many
resources would change; when stdin is a terminal and this host never
applied that node before, it stops there and asks for --yes: a typo in
--node would otherwise converge the host as a node it is not.`,
		Example: `  herd apply --site examples/site --root /tmp/sandbox --node web-01
  herd apply --site /srv/site --noop --diff
  herd apply --site /srv/site --tags nginx,tls --only user:alice
  herd apply --site . --json | jq '.events[] | select(.status == "failed")'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Site == "" {
				return UsageError(cmd, "--site is required")
			}
			sel, err := catalogs.ParseSelection(tags, only)
			if err != nil {
				return UsageError(cmd, err.Error())
			}
			o.Select = sel
			level := slog.LevelWarn
			if verbose {
				level = slog.LevelInfo
			}
			o.Log = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level}))
			if err := prepareSandbox(o.Root, o.Noop); err != nil {
				return err
			}
			o.AgentVersion = Version()
			if err := confirmRealRoot(cmd, o, yes); err != nil {
				return err
			}
			o.Services = supervisorFor(o.Root, o.Log)
			out := cmd.OutOrStdout()
			if !jsonOut {
				o.Emit = func(e agent.Event) { WriteEvent(out, e, diff, verbose) }
			}
			r, err := agent.Apply(cmd.Context(), o)
			if r == nil && err != nil {
				var ds catalogs.Diagnostics
				if errors.As(err, &ds) {
					return SiteError(o.Site, err)
				}
				return err
			}
			if jsonOut {
				if err := WriteJSON(out, r); err != nil {
					return err
				}
			} else {
				WriteSummary(out, r)
			}
			if err != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), "herd: warning:", err)
			}
			if code := r.ExitCode(); code != 0 {
				return &CodedError{Code: code}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Site, "site", "", "the site directory")
	f.StringVar(&o.Node, "node", "", "the node name (default: this host's fqdn, else its hostname)")
	f.StringVar(&o.Root, "root", "/", "the host root; a directory other than / is a sandbox")
	f.StringVar(&o.StateDir, "state-dir", "", "the agent's state directory (default ROOT/var/lib/herd)")
	f.BoolVar(&o.Noop, "noop", false, "check only: report what would change and change nothing")
	f.IntVar(&o.Parallel, "parallel", 4, "resources converged at once, at most")
	f.DurationVar(&o.ResourceTimeout, "resource-timeout", 10*time.Minute, "how long one resource may take")
	f.DurationVar(&o.RunTimeout, "timeout", time.Hour, "how long the whole run may take")
	f.DurationVar(&o.LockWait, "wait", 0, "wait this long for another run to finish instead of declining")
	f.StringVar(&o.FactsDir, "facts-dir", "", "external facts directory (default ROOT/etc/herd/facts.d)")
	f.BoolVar(&o.SandboxFactsExec, "sandbox-facts-exec", false, "run the executables in a sandbox root's facts directory, as this user (under / they always run)")
	f.StringVar(&o.SecretsKey, "secrets-key", "", "a copy of the server's secrets key (DIR/secrets.key), to open the site's secrets")
	selectionFlags(cmd, &tags, &only)
	f.BoolVar(&jsonOut, "json", false, "print the report as JSON")
	f.BoolVar(&diff, "diff", false, "show content diffs of changed files")
	f.BoolVar(&verbose, "verbose", false, "list in-sync resources too, and log more")
	f.BoolVar(&yes, "yes", false, "on the real root from a terminal, apply a node this host never applied without asking")
	return cmd
}

// isTerminalFile reports whether r is a file that is a terminal.
func isTerminalFile(r any) bool {
	f, ok := r.(interface{ Fd() uintptr })
	return ok && isTerminalFd(f.Fd())
}

// confirmRealRoot is herd apply's look before it converges the real host
// (root /) for a person at a terminal: a noop run of the same catalog
// says which node and catalog are about to be applied and how much would
// change, and when stdin is a terminal and this host never applied that
// node, the run stops there unless --yes was given. Pipelines (no
// terminal), sandboxes (--root DIR) and --noop are not asked.
func confirmRealRoot(cmd *cobra.Command, o agent.ApplyOptions, yes bool) error {
	if o.Noop || filepath.Clean(o.Root) != "/" {
		return nil
	}
	stdin := isTerminalFile(cmd.InOrStdin())
	if !stdin && !isTerminalFile(cmd.OutOrStdout()) {
		return nil
	}
	preview := o
	preview.Noop, preview.Emit = true, nil
	r, err := agent.Apply(cmd.Context(), preview)
	if err != nil {
		var ds catalogs.Diagnostics
		if errors.As(err, &ds) {
			return SiteError(o.Site, err)
		}
		return err
	}
	w := cmd.ErrOrStderr()
	fmt.Fprintf(w, "about to apply node %s to this host (/): site %s, catalog %s; %d of %d resources would change\n",
		Clean(r.Node), Clean(ShortVersion(r.Version)), Clean(ShortVersion(r.CatalogDigest)), r.Summary.Changed, r.Summary.Resources)
	if yes || !stdin {
		return nil
	}
	applied, err := agent.NodeApplied(cmd.Context(), agent.StateDirOr(o.StateDir, o.Root), r.Node)
	if err != nil {
		return err
	}
	if applied {
		return nil
	}
	return &CodedError{Code: ExitError, Err: fmt.Errorf("this host never applied node %s: check --node (the node's name picks its roles), then run again with --yes", Clean(r.Node))}
}

// selectionFlags adds --tags and --only, a partial run's selection.
func selectionFlags(cmd *cobra.Command, tags, only *[]string) {
	f := cmd.Flags()
	f.StringArrayVar(tags, "tags", nil, "a partial run: only resources with one of these tags (comma separated, repeatable) and what they require")
	f.StringArrayVar(only, "only", nil, "a partial run: only this resource (type:name, repeatable) and what it requires")
}

// WriteEvent prints one resource's outcome as it happens: terse, aligned,
// in-sync resources only with --verbose.
func WriteEvent(w io.Writer, e agent.Event, diff, verbose bool) {
	if e.Status == agent.InSync && e.Refresh == "" && !verbose {
		return
	}
	status := string(e.Status)
	if e.Noop && e.Status == agent.Changed {
		status = "would change"
	}
	var detail []string
	for _, c := range e.Changes {
		switch {
		case c.Sensitive && e.Status == agent.Drift:
			detail = append(detail, c.Attr+" (sensitive) differs")
		case c.Sensitive:
			detail = append(detail, c.Attr+" (sensitive) changed")
		case c.Diff != "" && e.Status == agent.Drift:
			// Drift was found, not made.
			detail = append(detail, c.Attr+" differs")
		case c.Diff != "":
			detail = append(detail, c.Attr+" changed")
		case c.From != "" || c.To != "":
			detail = append(detail, fmt.Sprintf("%s %s → %s", c.Attr, orNone(c.From), orNone(c.To)))
		default:
			detail = append(detail, c.Attr)
		}
	}
	if e.Refresh != "" {
		detail = append(detail, e.Refresh)
	}
	if e.Cause != "" {
		detail = append(detail, e.Cause)
	}
	if e.Error != "" {
		detail = append(detail, e.Error)
	}
	// Trimmed: an event with nothing more to say ends at its id, not in
	// the padding of an empty column.
	fmt.Fprintln(w, strings.TrimRight(fmt.Sprintf("%-12s %-40s %s", status, e.ID, strings.Join(detail, "; ")), " "))
	if diff {
		for _, c := range e.Changes {
			if c.Diff != "" && !c.Sensitive {
				fmt.Fprint(w, indent(c.Diff, "    "))
			}
		}
	}
	if e.Status == agent.Failed && e.Output != "" {
		fmt.Fprint(w, indent(e.Output, "    | "))
	}
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func indent(s, prefix string) string {
	s = strings.TrimRight(s, "\n")
	return prefix + strings.ReplaceAll(s, "\n", "\n"+prefix) + "\n"
}

// ShortVersion abbreviates a content-digest site version for a terminal.
func ShortVersion(v string) string {
	if strings.HasPrefix(v, "sha256:") && len(v) > 19 {
		return v[:19]
	}
	return v
}

// prepareSandbox lays out a sandbox root (anything but "/") as a minimal
// Debian host where it lacks the files dpkg, useradd and facts need, so
// that `--root DIR` works on an empty directory. In noop it writes
// nothing: a root that is not laid out yet is refused, naming the fix.
func prepareSandbox(root string, noop bool) error {
	if root == "" || root == "/" {
		return nil
	}
	if noop {
		if err := sandbox.Check(root); err != nil {
			return err
		}
		if sandbox.NeedsLayout(root) {
			return fmt.Errorf("%s is not laid out; run without --noop first (noop writes nothing, the layout included)", root)
		}
		return nil
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return fmt.Errorf("preparing sandbox %s: %w", root, err)
	}
	if !sandbox.NeedsLayout(root) {
		// Laid out already (NeedsLayout reads through os.Root): the run
		// itself checks the root (sandbox.Check) before it reads any of it.
		return nil
	}
	return sandbox.Init(root)
}
