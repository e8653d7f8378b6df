package main

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/herdcm/herd/catalogs"
	"github.com/herdcm/herd/cmd/nodecmd"
)

func newLookupCmd() *cobra.Command {
	var (
		site, node, factsFile string
		explain, jsonOut      bool
	)
	cmd := &cobra.Command{
		Use:   "lookup KEY --site DIR --node NAME [--facts FILE|-] [--explain]",
		Short: "Show a param's value for a node, and where it came from",
		Long: `Resolve a param through the site's data hierarchy for one node.

Levels are consulted most specific first, as herd.toml's hierarchy lists
them, then the defaults of the node's roles. The most specific value wins;
tables merge key by key. KEY may be dotted to reach into a table
(logging.level). --explain lists every level consulted, the file it read,
and whether it set the key.

Exit status: 0 found, 1 not found or the site has errors, 64 bad usage.`,
		Example: `  herd lookup workers --site examples/site --node web-01 --facts examples/site/tests/facts/debian12.json --explain
  herd lookup logging --site . --node db-01 --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, f, err := siteAndFacts(cmd, site, node, factsFile)
			if err != nil {
				return err
			}
			res, err := s.Lookup(node, f, args[0])
			if err != nil {
				return nodecmd.SiteError(site, err)
			}
			out := cmd.OutOrStdout()
			if jsonOut {
				if err := nodecmd.WriteJSON(out, res); err != nil {
					return err
				}
			} else {
				if explain {
					writeExplain(out, site, res)
				}
				if res.Found {
					v, err := json.Marshal(res.Value)
					if err != nil {
						return err
					}
					if explain {
						fmt.Fprintf(out, "\n%s = %s\n", res.Key, v)
					} else {
						fmt.Fprintf(out, "%s\n", v)
					}
				}
			}
			if !res.Found {
				return &nodecmd.CodedError{Code: nodecmd.ExitError, Err: fmt.Errorf("%s is not set for node %s at any level", res.Key, node)}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&site, "site", "", "the site directory")
	cmd.Flags().StringVar(&node, "node", "", "the node to resolve for")
	cmd.Flags().StringVar(&factsFile, "facts", "", "facts as a JSON or TOML file, or - for JSON on stdin (default: this host's facts)")
	cmd.Flags().BoolVar(&explain, "explain", false, "list every level consulted and which one won")
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print the value and the explanation as JSON")
	return cmd
}

func writeExplain(w io.Writer, site string, res *catalogs.LookupResult) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "\tLEVEL\tFILE\tRESULT\n")
	for i, st := range res.Steps {
		mark := ""
		if i == res.Won {
			mark = "→"
		}
		result := st.Note
		if st.Found {
			v, _ := json.Marshal(st.Value)
			result = fmt.Sprintf("%s (at %s/%s)", v, site, st.Pos)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", mark, st.Level, st.File, result)
	}
	tw.Flush()
}
