package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/herdcm/herd/cmd/nodecmd"
)

// printBootstrapLine prints, on stderr (stdout stays the token alone, for
// scripts), the command that makes a host a node with this token, ready
// to paste: the server's address as nodes reach it and the fingerprint
// of the CA the server presents, so the new node checks the server before
// it sends the token.
func printBootstrapLine(cmd *cobra.Command, af *nodecmd.AdminFlags, agentServer, token string) error {
	if agentServer == "" {
		agentServer = af.Server()
	}
	fp, err := af.ServerCAFingerprint(cmd.Context())
	if err != nil {
		// The token is made and printed: a script that reads it must
		// not see a failure for the line that is only a convenience.
		fmt.Fprintf(cmd.ErrOrStderr(), "warning: no bootstrap line: %v\n", err)
		return nil
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "on the new node, run:\n  %s\n", bootstrapLine(agentServer, token, fp))
	return nil
}

// bootstrapLine is the herd-agent bootstrap command for a token.
func bootstrapLine(server, token, fingerprint string) string {
	return fmt.Sprintf("herd-agent bootstrap --server %s --token %s --ca-fingerprint %s", server, token, fingerprint)
}
