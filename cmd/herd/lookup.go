package main

import "github.com/spf13/cobra"

func newLookupCmd() *cobra.Command {
	return &cobra.Command{Use: "lookup", Hidden: true}
}
