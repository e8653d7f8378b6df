package main

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/herdcm/herd/catalogs"
	"github.com/herdcm/herd/cmd/nodecmd"
)

func newCheckCmd() *cobra.Command {
	var (
		site    string
		jsonOut bool
	)
	cmd := &cobra.Command{
		Use:   "check --site DIR",
		Short: "Check a site: load it, compile every test node, run the site's tests",
		Long: `Check a site before it ships, locally or in the site's CI.

check loads the whole site (every role, data file, template and test) and
reports every mistake at once with file:line:column. It then compiles the
node of every test in tests/*.toml with that test's facts and checks the
test's expectations: resources present or absent, attribute values, text a
rendered file must contain, or a compile error the node must get.

Exit status: 0 everything passed, 1 the site has errors or a test failed,
64 bad usage.`,
		Example: `  herd check --site examples/site
  herd check --site . --json | jq '.tests[] | select(.passed == false)'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if site == "" {
				return nodecmd.UsageError(cmd, "--site is required")
			}
			s, err := catalogs.Load(cmd.Context(), site, catalogs.LoadOptions{})
			if err != nil {
				return nodecmd.SiteError(site, err)
			}
			results := s.RunTests(nil)
			failed := 0
			for _, r := range results {
				if !r.Passed() {
					failed++
				}
			}
			out := cmd.OutOrStdout()
			if jsonOut {
				type jsonTest struct {
					Name      string   `json:"name"`
					Node      string   `json:"node"`
					Passed    bool     `json:"passed"`
					Resources int      `json:"resources"`
					Failures  []string `json:"failures,omitempty"`
				}
				doc := struct {
					Site    string     `json:"site"`
					Version string     `json:"version"`
					Tests   []jsonTest `json:"tests"`
					Passed  int        `json:"passed"`
					Failed  int        `json:"failed"`
				}{Site: site, Version: s.Version, Passed: len(results) - failed, Failed: failed, Tests: []jsonTest{}}
				for _, r := range results {
					jt := jsonTest{Name: r.Test.Name, Node: r.Test.Node, Passed: r.Passed()}
					if r.Catalog != nil {
						jt.Resources = len(r.Catalog.Resources)
					}
					for _, f := range r.Failures {
						jt.Failures = append(jt.Failures, prefixed(site, f).Error())
					}
					doc.Tests = append(doc.Tests, jt)
				}
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				if err := enc.Encode(doc); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(out, "site %s at %s: %d roles loaded, %d tests\n", site, s.Version, s.RoleCount(), len(results))
				for _, r := range results {
					status := "ok  "
					if !r.Passed() {
						status = "FAIL"
					}
					detail := ""
					if r.Catalog != nil {
						detail = fmt.Sprintf(" (%d resources)", len(r.Catalog.Resources))
					}
					fmt.Fprintf(out, "%s %s: %s%s\n", status, r.Test.Node, r.Test.Name, detail)
					for _, f := range r.Failures {
						fmt.Fprintf(out, "     %s\n", prefixed(site, f))
					}
				}
				fmt.Fprintf(out, "site tests: %d passed, %d failed\n", len(results)-failed, failed)
			}
			if failed > 0 {
				return &nodecmd.CodedError{Code: nodecmd.ExitError, Err: errors.New("")}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&site, "site", "", "the site directory")
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print the results as JSON")
	return cmd
}

func prefixed(site string, d catalogs.Diagnostic) catalogs.Diagnostic {
	if d.File != "" {
		d.File = site + "/" + d.File
	}
	return d
}
