package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/herdcm/herd/catalogs"
	"github.com/herdcm/herd/cmd/nodecmd"
	"github.com/herdcm/herd/policies"
)

func newCheckCmd() *cobra.Command {
	var (
		site, branch string
		jsonOut      bool
	)
	cmd := &cobra.Command{
		Use:   "check --site DIR [--branch B]",
		Short: "Check a site: load it, compile every test node, run the site's and the policies' tests",
		Long: `Check a site before it ships, locally or in the site's CI.

check loads the whole site (every role, data file, template and test) and
reports every mistake at once with file:line:column. It then compiles the
node of every test in tests/*.toml with that test's facts and checks the
test's expectations: resources present or absent, attribute values, text a
rendered file must contain, or a compile error the node must get.

check also compiles the site's policies (policies/**/*.rego, Rego v1:
the gates, and the audit controls of policies/audit/) and reports a
broken one with its file:line, runs the policy tests
(policies/**/*_test.rego, test_* rules) beside the site tests, and gates each
test node's catalog as the server would a new node's: a site test passes
only when the gate allows its catalog, or, with deny = ["..."], when the
gate denies it with messages containing each string.

--branch B checks the site as committed on the local branch B of the site's
git repository, as a server serving environments loads it: the branch's
name is the environment (herd.toml's own environment is ignored), and
uncommitted edits are not seen.

Exit status: 0 everything passed, 1 the site has errors or a test failed,
64 bad usage.`,
		Example: `  herd check --site examples/site
  herd check --site . --branch staging
  herd check --site . --json | jq '.tests[] | select(.passed == false)'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if site == "" {
				return nodecmd.UsageError(cmd, "--site is required")
			}
			s, err := loadBranch(cmd.Context(), site, branch)
			if err != nil {
				return err
			}
			noteEnvironment(cmd, s, branch)
			ctx := cmd.Context()
			// Paths as the operator typed --site, like the site's own
			// diagnostics, so that every file:line opens from here.
			pfiles := s.PolicyFiles()
			for i := range pfiles {
				pfiles[i].Path = strings.TrimSuffix(site, "/") + "/" + pfiles[i].Path
			}
			gate, err := policies.Prepare(ctx, pfiles, policies.Options{Timeout: s.Settings.Policy.Timeout})
			if err != nil {
				return fmt.Errorf("policies of site %s: %w", site, err)
			}
			// The audit controls are compiled too, so that a broken one
			// (or one without an id or severity) fails here, not on the
			// server.
			audit, err := policies.PrepareAudit(ctx, pfiles, policies.Options{Timeout: s.Settings.Policy.Timeout})
			if err != nil {
				return fmt.Errorf("audit controls of site %s: %w", site, err)
			}
			policyResults, err := policies.RunTests(ctx, pfiles)
			if err != nil {
				return fmt.Errorf("policy tests of site %s: %w", site, err)
			}
			// A large site's tests take a while: on a terminal, stderr
			// counts them.
			progress := nodecmd.NewProgress(cmd.ErrOrStderr())
			results := s.RunTestsProgress(gate.TestGate(ctx), func(done, total int) {
				progress.Count("herd check: site tests", "nodes compiled", done, total)
			})
			failed := 0
			for _, r := range results {
				if !r.Passed() {
					failed++
				}
			}
			policyFailed, policySkipped := 0, 0
			for _, r := range policyResults {
				switch {
				case r.Skipped:
					policySkipped++
				case !r.Passed:
					policyFailed++
				}
			}
			policyPassed := len(policyResults) - policyFailed - policySkipped
			out := cmd.OutOrStdout()
			if jsonOut {
				type jsonTest struct {
					Name      string   `json:"name"`
					Node      string   `json:"node"`
					Passed    bool     `json:"passed"`
					Resources int      `json:"resources"`
					Denied    []string `json:"denied,omitempty"`
					Failures  []string `json:"failures,omitempty"`
				}
				type jsonPolicyTest struct {
					Name       string `json:"name"`
					Package    string `json:"package"`
					File       string `json:"file"`
					Line       int    `json:"line"`
					Passed     bool   `json:"passed"`
					Skipped    bool   `json:"skipped,omitempty"`
					Error      string `json:"error,omitempty"`
					DurationNS int64  `json:"duration_ns"`
				}
				doc := struct {
					Site         string           `json:"site"`
					Version      string           `json:"version"`
					Gate         bool             `json:"gate"`
					Controls     int              `json:"audit_controls"`
					Tests        []jsonTest       `json:"tests"`
					Passed       int              `json:"passed"`
					Failed       int              `json:"failed"`
					PolicyTests  []jsonPolicyTest `json:"policy_tests"`
					PolicyPassed int              `json:"policy_passed"`
					PolicyFailed int              `json:"policy_failed"`
				}{Site: site, Version: s.Version, Gate: !gate.Empty(), Controls: len(audit.Controls()), Passed: len(results) - failed, Failed: failed, Tests: []jsonTest{},
					PolicyTests: []jsonPolicyTest{}, PolicyPassed: policyPassed, PolicyFailed: policyFailed}
				for _, r := range results {
					jt := jsonTest{Name: r.Test.Name, Node: r.Test.Node, Passed: r.Passed(), Denied: r.Denied}
					if r.Catalog != nil {
						jt.Resources = len(r.Catalog.Resources)
					}
					for _, f := range r.Failures {
						jt.Failures = append(jt.Failures, prefixed(site, f).Error())
					}
					doc.Tests = append(doc.Tests, jt)
				}
				for _, r := range policyResults {
					doc.PolicyTests = append(doc.PolicyTests, jsonPolicyTest{
						Name: r.Name, Package: r.Package, File: r.File, Line: r.Line,
						Passed: r.Passed, Skipped: r.Skipped, Error: r.Error, DurationNS: r.Duration.Nanoseconds(),
					})
				}
				if err := nodecmd.WriteJSON(out, doc); err != nil {
					return err
				}
			} else {
				gateNote := "no policy gate"
				if !gate.Empty() {
					gateNote = "policy gate loaded"
				}
				fmt.Fprintf(out, "site %s at %s: %d roles loaded, %s, %d tests, %d policy tests, %d audit controls\n", site, s.Version, s.RoleCount(), gateNote, len(results), len(policyResults), len(audit.Controls()))
				for _, r := range results {
					status := "ok  "
					if !r.Passed() {
						status = "FAIL"
					}
					detail := ""
					if r.Catalog != nil {
						detail = fmt.Sprintf(" (%d resources)", len(r.Catalog.Resources))
						if len(r.Denied) > 0 {
							detail = fmt.Sprintf(" (%d resources, denied)", len(r.Catalog.Resources))
						}
					}
					fmt.Fprintf(out, "%s %s: %s%s\n", status, r.Test.Node, r.Test.Name, detail)
					for _, f := range r.Failures {
						fmt.Fprintf(out, "     %s\n", prefixed(site, f))
					}
				}
				for _, r := range policyResults {
					status := "ok  "
					switch {
					case r.Skipped:
						status = "skip"
					case !r.Passed:
						status = "FAIL"
					}
					fmt.Fprintf(out, "%s policy %s: %s (%s:%d)\n", status, r.Package, r.Name, r.File, r.Line)
					if r.Error != "" {
						for _, line := range strings.Split(r.Error, "\n") {
							fmt.Fprintf(out, "     %s\n", line)
						}
					}
				}
				fmt.Fprintf(out, "site tests: %d passed, %d failed\n", len(results)-failed, failed)
				fmt.Fprintf(out, "policy tests: %d passed, %d failed", policyPassed, policyFailed)
				if policySkipped > 0 {
					fmt.Fprintf(out, ", %d skipped", policySkipped)
				}
				fmt.Fprintln(out)
			}
			if failed > 0 || policyFailed > 0 {
				return &nodecmd.CodedError{Code: nodecmd.ExitError, Err: errors.New("")}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&site, "site", "", "the site directory")
	cmd.Flags().StringVar(&branch, "branch", "", "check the site as committed on this branch, as the environment of that name")
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print the results as JSON")
	return cmd
}

func prefixed(site string, d catalogs.Diagnostic) catalogs.Diagnostic {
	if d.File != "" {
		d.File = site + "/" + d.File
	}
	return d
}
