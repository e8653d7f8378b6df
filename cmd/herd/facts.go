package main

import (
	"github.com/spf13/cobra"
)

// newFactsCmd is filled in with the facts collectors.
func newFactsCmd() *cobra.Command {
	return &cobra.Command{Use: "facts", Short: "Print this host's facts", Hidden: true}
}
