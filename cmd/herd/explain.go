package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/herdcm/herd/api/herdv1"
	"github.com/herdcm/herd/catalogs"
	"github.com/herdcm/herd/cmd/nodecmd"
)

func newExplainCmd() *cobra.Command {
	var (
		af              nodecmd.AdminFlags
		site, factsFile string
		secretsKey      string
		jsonOut         bool
	)
	cmd := &cobra.Command{
		Use:   "explain NODE [RESOURCE] [--site DIR [--facts FILE|-]]",
		Short: "Say why a node's catalog is what it is",
		Long: `Explain a node's catalog: which rules of nodes.toml matched, where each
role came from, where the node's params are read from and, for one
resource (type:name, as references write it): where it was declared and
through which use of a definition and for_each element, where each
attribute's value came from (the data level, role default, use parameter
or fact its templates read, with file:line), and its ordering edges,
explicit (with where they were written) and implicit (with why).

Masterless, with --site: the site is compiled here, with --facts (a JSON or
TOML file, or - for JSON on stdin) or this host's facts. Without --site the
server explains: it compiles with the site it serves and the node's stored
facts, and adds where the node stands in the rollout (the version it is
approved at, the version it waits for, its stage and state).

A sensitive value never shows: it is (sensitive), with where it came from.

Exit status: 0 explained, 1 the site or node has errors or the resource is
not in the catalog (the nearest ones are named), 64 bad usage.`,
		Example: `  herd explain web-01 --site examples/site --facts examples/site/tests/facts/debian12.json
  herd explain web-01 'file:/etc/herd-demo-web/app.conf' --site examples/site --facts f.json
  herd explain web-01 service:demo-web
  herd explain web-01 --json`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 1 || len(args) > 2 {
				return nodecmd.UsageError(cmd, "want NODE and at most one RESOURCE (type:name)")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			node, resource := args[0], ""
			if len(args) == 2 {
				resource = args[1]
				if typ, name, ok := catalogs.SplitID(resource); !ok || typ == "" || name == "" {
					return nodecmd.UsageError(cmd, fmt.Sprintf("resource %q: want type:name, like package:nginx", resource))
				}
			}
			if site == "" && (factsFile != "" || secretsKey != "") {
				return nodecmd.UsageError(cmd, "--facts and --secrets-key go with --site (the server uses the node's stored facts)")
			}
			var ex *catalogs.Explanation
			if site != "" {
				s, f, err := siteAndFacts(cmd, site, node, factsFile)
				if err != nil {
					return err
				}
				opts, err := localCompileOptions(secretsKey)
				if err != nil {
					return err
				}
				ex, _, err = s.Explain(node, f, opts, resource)
				if err != nil {
					var unknown *catalogs.UnknownResourceError
					if errors.As(err, &unknown) {
						return &nodecmd.CodedError{Code: nodecmd.ExitError, Err: err}
					}
					return nodecmd.SiteError(site, err)
				}
			} else {
				c, closeConn, err := af.Dial(cmd.Context())
				if err != nil {
					return err
				}
				defer closeConn()
				resp, err := c.Explain(cmd.Context(), &herdv1.ExplainRequest{Node: node, Resource: resource})
				if err != nil {
					if s, ok := status.FromError(err); ok && s.Code() == codes.NotFound {
						return &nodecmd.CodedError{Code: nodecmd.ExitError, Err: errors.New(s.Message())}
					}
					return nodecmd.RPCError(af.Server(), af.Dir, err)
				}
				ex = &catalogs.Explanation{}
				if err := json.Unmarshal(resp.ExplanationJson, ex); err != nil {
					return fmt.Errorf("reading the server's explanation: %w", err)
				}
			}
			if jsonOut {
				return nodecmd.WriteJSON(cmd.OutOrStdout(), ex)
			}
			writeExplanation(cmd.OutOrStdout(), ex)
			return nil
		},
	}
	af.Register(cmd)
	cmd.Flags().StringVar(&site, "site", "", "explain a compile of this site directory here (default: ask the server)")
	cmd.Flags().StringVar(&factsFile, "facts", "", "with --site: facts as a JSON or TOML file, or - for JSON on stdin (default: this host's facts)")
	cmd.Flags().StringVar(&secretsKey, "secrets-key", "", "with --site: the server's secrets key file, to open the site's secrets (default: placeholders)")
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print the explanation as JSON")
	return cmd
}

// writeExplanation prints ex for a terminal. Facts, and so what was
// rendered from them, come from a node: every value is shown escaped.
func writeExplanation(w io.Writer, ex *catalogs.Explanation) {
	fmt.Fprintf(w, "node %s  environment %s  version %s\ncatalog %s\n", clean(ex.Node), clean(ex.Environment), orNone(clean(ex.Version)), ex.Digest)

	fmt.Fprintf(w, "\nClassification (nodes.toml):\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, r := range ex.Rules {
		mark := "no "
		if r.Matched {
			mark = "yes"
		}
		fmt.Fprintf(tw, "  %s\t%s\troles %s\t%s\n", mark, r.At, strings.Join(r.Roles, ", "), clean(r.Why))
	}
	tw.Flush()

	fmt.Fprintf(w, "\nRoles:\n")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, r := range ex.Roles {
		how := "named by the " + r.Via + ", at " + r.At
		if r.By == "include" {
			how = "included by " + r.Via + ", at " + r.At
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", r.Role, r.File, how)
	}
	tw.Flush()

	fmt.Fprintf(w, "\nParams, most specific first:\n")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, l := range ex.Hierarchy {
		if l.Note == "" {
			fmt.Fprintf(tw, "  %s\t%s\n", l.Level, l.File)
		} else {
			fmt.Fprintf(tw, "  %s\t%s\t%s\n", l.Level, l.File, l.Note)
		}
	}
	tw.Flush()

	if r := ex.Rollout; r != nil {
		fmt.Fprintf(w, "\nRollout:\n  approved  %s\n", orNone(r.Approved))
		if r.Pending != "" {
			fmt.Fprintf(w, "  pending   %s\n", r.Pending)
		}
		if r.ID != 0 {
			fmt.Fprintf(w, "  rollout   %d of %s, %s\n", r.ID, r.Version, r.State)
		}
		if r.Stage != "" {
			fmt.Fprintf(w, "  stage     %s (stage %d, %s)\n", r.Stage, r.StageIndex, r.StageState)
		}
		if r.NodeState != "" {
			fmt.Fprintf(w, "  node      %s (decision %s)\n", r.NodeState, orNone(r.Decision))
		}
	}

	if ex.Resource == nil {
		fmt.Fprintf(w, "\nResources (%d):\n", len(ex.Resources))
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, r := range ex.Resources {
			fmt.Fprintf(tw, "  %s\t%s\t%s\n", clean(r.ID), r.Role, r.Source)
		}
		tw.Flush()
		return
	}
	writeResourceExplanation(w, ex.Resource)
}

func writeResourceExplanation(w io.Writer, r *catalogs.ResourceExplanation) {
	fmt.Fprintf(w, "\nResource %s\n", clean(r.ID))
	fmt.Fprintf(w, "  declared at %s, role %s (source %s)\n", r.DeclaredAt, r.Role, r.Source)
	for _, u := range r.Uses {
		el := ""
		if u.Element != "" {
			el = ", for_each element " + clean(u.Element)
		}
		if u.When != "" {
			el += ", when " + u.When
		}
		fmt.Fprintf(w, "  through the use %s at %s (%s%s)\n", clean(u.Use), u.At, u.Definition, el)
	}
	if e := r.Element; e != nil {
		fmt.Fprintf(w, "  for_each element %s of %s at %s\n", value(e.Key), e.ForEach, e.At)
		writeOrigins(w, "      ", e.From)
	}
	if c := r.When; c != nil {
		fmt.Fprintf(w, "  when %s held (at %s)\n", c.Condition, c.At)
		writeOrigins(w, "      ", c.From)
	}
	if r.Tree != "" {
		fmt.Fprintf(w, "  a file of the source directory of %s\n", clean(r.Tree))
	}
	fmt.Fprintf(w, "\nAttributes:\n")
	for _, a := range r.Attributes {
		fmt.Fprintf(w, "  %s = %s\n      %s at %s\n", a.Name, value(a.Value), a.How, a.At)
		writeOrigins(w, "        ", a.From)
	}
	fmt.Fprintf(w, "\nEdges:\n")
	if len(r.Edges) == 0 {
		fmt.Fprintf(w, "  (none)\n")
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, e := range r.Edges {
		refresh := ""
		if e.Refresh != "" {
			refresh = ", " + e.Refresh + " it"
		}
		on := ""
		if e.DeclaredOn != r.ID {
			on = " (on " + clean(e.DeclaredOn) + ")"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s%s%s\n", e.Relation, clean(e.Other), clean(e.Why), refresh, on)
	}
	tw.Flush()
}

// writeOrigins prints what a template, condition or for_each read, and
// where each value was set, nested as values made from others are.
func writeOrigins(w io.Writer, indent string, os []catalogs.Origin) {
	for _, o := range os {
		line := indent + o.Read
		if o.Value != nil {
			line += " = " + value(o.Value)
		}
		line += "  ← " + clean(o.Level)
		if o.At != "" {
			line += " at " + o.At
		}
		fmt.Fprintln(w, line)
		for _, ov := range o.Overrides {
			fmt.Fprintf(w, "%s    (over %s)\n", indent, ov)
		}
		writeOrigins(w, indent+"    ", o.From)
	}
}

// value shows v compactly as JSON, escaped and cut to a line.
func value(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	s := clean(string(b))
	if len(s) > 100 {
		cut := 97
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

func clean(s string) string { return nodecmd.Clean(s) }
