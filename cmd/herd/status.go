package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/herdcm/herd/api/herdv1"
	"github.com/herdcm/herd/cmd/nodecmd"
)

func newStatusCmd() *cobra.Command {
	var (
		af      nodecmd.AdminFlags
		jsonOut bool
	)
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the site version the server serves, the newest it saw, and why that one does not load",
		Long: `Show the server's site: the version it serves and since when, the newest
version it tried to load and, when that one failed, every error with its
file:line (the previous version stays served until the site is fixed), and
the nodes whose compile fails at the served version.

Exit codes: 0 the newest version is served, 1 it fails to load (or the
server cannot be reached).`,
		Example: `  herd status
  herd status --json | jq -r .loadError`,
		Args: cobra.NoArgs,
		RunE: nodecmd.WithAdmin(&af, func(cmd *cobra.Command, _ []string, c herdv1.AdminClient) error {
			st, err := c.SiteStatus(cmd.Context(), &herdv1.SiteStatusRequest{})
			if err != nil {
				return err
			}
			if jsonOut {
				if err := printProto(cmd, st); err != nil {
					return err
				}
			} else {
				printStatus(cmd.OutOrStdout(), st)
			}
			if st.LoadError != "" {
				return &nodecmd.CodedError{Code: nodecmd.ExitError, Err: fmt.Errorf("the site's newest version does not load")}
			}
			if failing := failingEnvironments(st); len(failing) > 0 {
				return &nodecmd.CodedError{Code: nodecmd.ExitError, Err: fmt.Errorf("the newest version of %s does not load", strings.Join(failing, ", "))}
			}
			return nil
		}),
	}
	af.Register(cmd)
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print as JSON")
	return cmd
}

// siteLine is the one line `herd nodes` prints above the fleet.
func siteLine(st *herdv1.SiteStatusResponse) string {
	line := fmt.Sprintf("site %s, loaded %s ago", nodecmd.Clean(nodecmd.ShortVersion(st.Version)), ago(st.LoadedUnixMs))
	if st.LoadError != "" {
		newest := "a newer version"
		if st.NewestVersion != "" {
			newest = nodecmd.Clean(nodecmd.ShortVersion(st.NewestVersion))
		}
		n := strings.Count(strings.TrimSpace(st.LoadError), "\n") + 1
		line += fmt.Sprintf("; %s does not load (%d error lines, see herd status): %s", newest, n, nodecmd.Clean(firstLine(st.LoadError)))
	}
	if n := len(st.CompileErrors); n > 0 {
		line += fmt.Sprintf("; %d nodes fail to compile", n)
	}
	return line
}

// printStatus writes the site status for people.
func printStatus(w io.Writer, st *herdv1.SiteStatusResponse) {
	fmt.Fprintf(w, "served:  %s (loaded %s, %s ago)\n", nodecmd.Clean(st.Version), stamp(st.LoadedUnixMs), ago(st.LoadedUnixMs))
	newest := st.NewestVersion
	if newest == "" {
		newest = "(not a git commit)"
	}
	fmt.Fprintf(w, "newest:  %s (tried %s)\n", nodecmd.Clean(newest), stamp(st.NewestAttemptUnixMs))
	if st.LoadError == "" {
		fmt.Fprintln(w, "loads:   ok")
	} else {
		fmt.Fprintln(w, "loads:   no; the served version stays until the site is fixed:")
		for _, l := range strings.Split(strings.TrimRight(st.LoadError, "\n"), "\n") {
			fmt.Fprintf(w, "  %s\n", nodecmd.Clean(l))
		}
	}
	if st.AuditError != "" {
		// The version ships all the same: only its audits wait.
		fmt.Fprintln(w, "audits:  the audit controls do not compile; results stay as last judged (see herd audit):")
		for _, l := range strings.Split(strings.TrimRight(st.AuditError, "\n"), "\n") {
			fmt.Fprintf(w, "  %s\n", nodecmd.Clean(l))
		}
	}
	printEnvironments(w, st)
	if len(st.CompileErrors) == 0 {
		return
	}
	fmt.Fprintf(w, "compile errors at the served version (%d nodes keep their last good catalog):\n", len(st.CompileErrors))
	nodes := make([]string, 0, len(st.CompileErrors))
	for n := range st.CompileErrors {
		nodes = append(nodes, n)
	}
	slices.Sort(nodes)
	for _, n := range nodes {
		fmt.Fprintf(w, "  %s: %s\n", nodecmd.Clean(n), nodecmd.Clean(firstLine(st.CompileErrors[n])))
	}
}

// printEnvironments lists each served environment (a server serving
// branches): its version, and whether its newest commit loads.
func printEnvironments(w io.Writer, st *herdv1.SiteStatusResponse) {
	if len(st.Environments) == 0 {
		return
	}
	fmt.Fprintln(w, "environments:")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, e := range st.Environments {
		loads := "loads ok"
		if e.LoadError != "" {
			loads = "does not load: " + firstLine(e.LoadError)
			if e.NewestVersion != "" {
				loads = nodecmd.ShortVersion(e.NewestVersion) + " " + loads
			}
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", nodecmd.Clean(e.Name), nodecmd.Clean(nodecmd.ShortVersion(e.Version)), nodecmd.Clean(loads))
	}
	tw.Flush()
}

// failingEnvironments names the environments whose newest commit does
// not load.
func failingEnvironments(st *herdv1.SiteStatusResponse) []string {
	var out []string
	for _, e := range st.Environments {
		if e.LoadError != "" {
			out = append(out, e.Name)
		}
	}
	return out
}

func stamp(unixMs int64) string {
	if unixMs == 0 {
		return "never"
	}
	return time.UnixMilli(unixMs).Local().Format(time.DateTime)
}
