package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// Exit codes shared by every subcommand. Commands with richer outcomes
// (apply, check) document their own codes in --help.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 64 // EX_USAGE from sysexits.h: the command line was wrong.
)

// exitCoder lets a command choose its exit status while still returning an
// error for cobra to print.
type exitCoder interface{ ExitCode() int }

// codedError carries a chosen exit code and an optional message.
type codedError struct {
	code int
	err  error
}

func (e *codedError) Error() string {
	if e.err == nil {
		return ""
	}
	return e.err.Error()
}
func (e *codedError) Unwrap() error { return e.err }
func (e *codedError) ExitCode() int { return e.code }

// run executes the command line args and returns the exit status. Tests
// call it with their own writers.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := newRootCmd()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	// SIGINT and SIGTERM cancel the command's context: a run stops
	// cleanly between resources instead of dying in the middle of one.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	var ce exitCoder
	if errors.As(err, &ce) {
		if msg := err.Error(); msg != "" {
			fmt.Fprintln(stderr, "herd:", msg)
		}
		return ce.ExitCode()
	}
	fmt.Fprintln(stderr, "herd:", err)
	return exitError
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "herd",
		Short: "Pull-based configuration management for fleets",
		Long: `Herd keeps a fleet of hosts in the state their site says.

Ops describe the fleet in a site (TOML roles, data, templates and policies in
git); the server compiles one catalog per node; agents pull their catalog,
converge the host and report what they did.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &codedError{code: exitUsage, err: fmt.Errorf("%w\nrun '%s --help' for usage", err, c.CommandPath())}
	})
	root.AddCommand(
		newVersionCmd(),
		newFactsCmd(),
		newCompileCmd(),
		newCheckCmd(),
		newLookupCmd(),
		newApplyCmd(),
		newBackupsCmd(),
		newServicesCmd(),
		newServerCmd(),
		newCACmd(),
		newNodesCmd(),
		newReportsCmd(),
		newStatusCmd(),
		newAgentCmd(),
		newUpCmd(),
	)
	return root
}
