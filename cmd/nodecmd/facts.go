package nodecmd

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/herdcm/herd/api/herdv1"
	"github.com/herdcm/herd/facts"
)

func newFactsCmd() *cobra.Command {
	var (
		af       AdminFlags
		node     string
		all      bool
		where    string
		jsonOut  bool
		root     string
		factsDir string
		timeout  time.Duration
		// sandboxExec: facts.Options.SandboxExec.
		sandboxExec bool
	)
	cmd := &cobra.Command{
		Use:   "facts [NAME ...]",
		Short: "Print this host's facts",
		Long: `Print the facts the agent would report for this host: core facts (os, kernel,
processors, memory, mounts, networking, …) and external facts from the facts
directory (*.toml, *.json, and executables that print JSON or key=value lines).

With NAMEs (dotted paths such as os.family) only those facts are collected
and printed; a single NAME that is a value prints just the value.

A collector that fails is a warning on stderr; the other facts still print.

With --node, the facts NODE last reported to the server. With --all, one
fact of every node the server knows (or of those --where selects, an
expression as for herd nodes --where): a table of node and value, or
--json; a node without the fact shows as (missing).

Exit status: 0 facts printed (possibly with warnings); 1 a NAME does not
exist, or no fact could be collected; 64 bad usage.`,
		Example: `  herd facts                          # every fact, one "name = value" per line
  herd facts os.family                # debian
  herd facts --json os networking     # selected facts as JSON
  herd facts --root /srv/rehearsal    # describe a sandbox host from its files
  herd facts --node web-01 os.family  # what web-01 last reported to the server
  herd facts --all os.release.major --where 'os.family == "debian"'`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, names []string) error {
			if all {
				if len(names) != 1 || node != "" {
					return &CodedError{Code: ExitUsage, Err: errors.New("--all takes one fact NAME, and no --node")}
				}
				return fleetFacts(cmd, &af, names[0], where, jsonOut)
			}
			if where != "" {
				return &CodedError{Code: ExitUsage, Err: errors.New("--where selects nodes for --all")}
			}
			if node != "" {
				return serverFacts(cmd, &af, node, names, jsonOut)
			}
			f, err := facts.Collect(cmd.Context(), facts.Options{
				Root:         root,
				ExternalDir:  factsDir,
				SandboxExec:  sandboxExec,
				Timeout:      timeout,
				AgentVersion: Version(),
				Only:         names,
			})
			for _, e := range unjoin(err) {
				fmt.Fprintln(cmd.ErrOrStderr(), "herd: warning:", e)
			}
			if len(f) == 0 && err != nil {
				return &CodedError{Code: ExitError, Err: errors.New("no facts could be collected")}
			}
			w := bufio.NewWriter(cmd.OutOrStdout())
			missing := writeFacts(w, f, names, jsonOut)
			if err := w.Flush(); err != nil {
				return err
			}
			if len(missing) > 0 {
				return &CodedError{Code: ExitError, Err: fmt.Errorf("no fact named %s", strings.Join(missing, ", "))}
			}
			return nil
		},
	}
	fl := cmd.Flags()
	af.Register(cmd)
	fl.StringVar(&node, "node", "", "print the facts NODE last reported to the server (Admin service), instead of this host's")
	fl.BoolVar(&all, "all", false, "print one fact NAME of every node, from the server (Admin service)")
	fl.StringVar(&where, "where", "", "with --all, only the nodes for which `EXPR` is true (as herd nodes --where)")
	fl.BoolVar(&jsonOut, "json", false, "print JSON (indented, sorted keys)")
	fl.StringVar(&root, "root", "/", "describe the host whose root is `DIR` (a sandbox or captured tree)")
	fl.StringVar(&factsDir, "facts-dir", facts.DefaultExternalDir, "read external facts from `DIR` (under --root)")
	fl.BoolVar(&sandboxExec, "sandbox-facts-exec", false, "run the executables in a sandbox root's facts directory, as this user (under / they always run)")
	fl.DurationVar(&timeout, "timeout", facts.DefaultTimeout, "give each collector and each fact script at most `D`")
	return cmd
}

// writeFacts prints f, or the named facts of it, and returns the names
// that do not exist.
func writeFacts(w io.Writer, f facts.Facts, names []string, jsonOut bool) (missing []string) {
	if len(names) == 0 {
		if jsonOut {
			_ = WriteJSON(w, f) // plain data always encodes; write errors surface at Flush
		} else {
			writeLeaves(w, facts.Flatten("", f))
		}
		return nil
	}
	found := map[string]any{}
	var leaves []facts.Leaf
	for _, n := range names {
		v, ok := f.Lookup(n)
		if !ok {
			missing = append(missing, strconv.Quote(n))
			continue
		}
		found[n] = v
		leaves = append(leaves, facts.Flatten(n, v)...)
	}
	switch {
	case len(found) == 0:
	case jsonOut:
		// Keyed by the names asked for, as facter does, so that the output
		// says what each value is.
		_ = WriteJSON(w, found) // as above
	case len(names) == 1 && len(leaves) == 1 && leaves[0].Name == names[0]:
		// One value asked for: just the value, for scripts.
		fmt.Fprintln(w, formatValue(leaves[0].Value))
	default:
		writeLeaves(w, leaves)
	}
	return missing
}

// writeLeaves prints "name = value" lines with the "=" aligned. Names
// longer than maxAlign (deep mount points, interface addresses) are not
// padded to, so that one of them does not push every line far right.
func writeLeaves(w io.Writer, leaves []facts.Leaf) {
	const maxAlign = 40
	width := 0
	for _, l := range leaves {
		if len(l.Name) <= maxAlign {
			width = max(width, len(l.Name))
		}
	}
	for _, l := range leaves {
		fmt.Fprintf(w, "%-*s = %s\n", width, Clean(l.Name), formatValue(l.Value))
	}
}

// formatValue writes a leaf for people: strings bare unless that would be
// ambiguous (empty, padded, or holding a line break), everything else as JSON.
func formatValue(v any) string {
	if s, ok := v.(string); ok {
		// clean quotes a value holding a line break, a control
		// sequence or anything else unprintable: a node's facts must
		// not drive the operator's terminal.
		if s == "" || strings.TrimSpace(s) != s || Clean(s) != s {
			return strconv.Quote(s)
		}
		return s
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// unjoin splits an errors.Join error into its parts, one warning each.
func unjoin(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// serverFacts prints the facts a node last reported, from the server.
func serverFacts(cmd *cobra.Command, af *AdminFlags, node string, names []string, jsonOut bool) error {
	return WithAdmin(af, func(cmd *cobra.Command, _ []string, c herdv1.AdminClient) error {
		resp, err := c.GetFacts(cmd.Context(), &herdv1.GetFactsRequest{Node: node})
		if err != nil {
			return err
		}
		f, err := facts.FromJSON(resp.FactsJson)
		if err != nil {
			return err
		}
		w := bufio.NewWriter(cmd.OutOrStdout())
		missing := writeFacts(w, f, names, jsonOut)
		if err := w.Flush(); err != nil {
			return err
		}
		if len(missing) > 0 {
			return &CodedError{Code: ExitError, Err: fmt.Errorf("node %s reported no fact named %s", node, strings.Join(missing, ", "))}
		}
		return nil
	})(cmd, nil)
}

// fleetFacts prints one fact of every node the server knows that where
// selects, page by page as the server gives them.
func fleetFacts(cmd *cobra.Command, af *AdminFlags, name, where string, jsonOut bool) error {
	return WithAdmin(af, func(cmd *cobra.Command, _ []string, c herdv1.AdminClient) error {
		type row struct {
			Node    string          `json:"node"`
			Value   json.RawMessage `json:"value,omitempty"`
			Missing bool            `json:"missing,omitempty"`
		}
		var rows []row
		for token := ""; ; {
			// A filtered page may come back short, even empty, with a
			// token: the server bounds the nodes one call reads.
			resp, err := c.FleetFacts(cmd.Context(), &herdv1.FleetFactsRequest{Fact: name, Where: where, PageToken: token})
			if err != nil {
				return err
			}
			for _, f := range resp.Facts {
				r := row{Node: f.Node, Missing: len(f.ValueJson) == 0}
				if !r.Missing {
					if !json.Valid(f.ValueJson) {
						return fmt.Errorf("the server sent %s of %s as invalid JSON", name, Clean(f.Node))
					}
					r.Value = f.ValueJson
				}
				rows = append(rows, r)
			}
			if token = resp.NextPageToken; token == "" {
				break
			}
		}
		w := bufio.NewWriter(cmd.OutOrStdout())
		if jsonOut {
			if rows == nil {
				rows = []row{}
			}
			_ = WriteJSON(w, map[string]any{"fact": name, "nodes": rows}) // write errors surface at Flush
			return w.Flush()
		}
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintf(tw, "NODE\t%s\n", strings.ToUpper(Clean(name)))
		for _, r := range rows {
			v := "(missing)"
			if !r.Missing {
				var x any
				if err := json.Unmarshal(r.Value, &x); err != nil {
					return fmt.Errorf("decoding %s of %s: %w", name, Clean(r.Node), err)
				}
				// A string that reads as the marker is quoted.
				if v = formatValue(x); v == "(missing)" {
					v = strconv.Quote(v)
				}
			}
			fmt.Fprintf(tw, "%s\t%s\n", Clean(r.Node), v)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		return w.Flush()
	})(cmd, nil)
}
