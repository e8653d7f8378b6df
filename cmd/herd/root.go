package main

import (
	"io"

	"github.com/spf13/cobra"

	"github.com/herdcm/herd/cmd/nodecmd"
)

// newRootCmd is herd's command line: the node's commands (nodecmd, which
// herd-agent runs alone) and the server's and the operator's on top.
func newRootCmd() *cobra.Command {
	root := nodecmd.NewRoot("herd", "Pull-based configuration management for fleets", `Herd keeps a fleet of hosts in the state their site says.

Ops describe the fleet in a site (TOML roles, data, templates and policies in
git); the server compiles one catalog per node; agents pull their catalog,
converge the host and report what they did.`)
	root.AddCommand(
		newCompileCmd(),
		newCheckCmd(),
		newDiffCmd(),
		newLookupCmd(),
		newExplainCmd(),
		newServerCmd(),
		newCACmd(),
		newNodesCmd(),
		newNodeCmd(),
		newReportsCmd(),
		newRolloutCmd(),
		newStatusCmd(),
		newAuditCmd(),
		newUpCmd(),
		newSecretCmd(),
	)
	return root
}

// run executes the command line args and returns the exit status. Tests
// call it with their own writers.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return nodecmd.Run(newRootCmd(), args, stdin, stdout, stderr)
}
