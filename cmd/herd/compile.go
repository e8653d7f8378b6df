package main

import "github.com/spf13/cobra"

func newCompileCmd() *cobra.Command {
	return &cobra.Command{Use: "compile", Hidden: true}
}
