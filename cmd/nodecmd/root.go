// Package nodecmd holds the command line a node runs — agent, apply,
// facts, services, backups, version — and the plumbing every Herd command
// shares (exit codes, config files, logging, terminal output). Both
// binaries mount it: herd-agent is exactly this, and herd adds the server
// and the operator's tools on top. It links no server, no policy engine and
// no metrics server, so that every node pays only for what it runs
// (deps_test.go holds it to that).
package nodecmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/herdcm/herd/catalogs"
)

// Exit codes shared by every subcommand. Commands with richer outcomes
// (apply, check) document their own codes in --help.
const (
	ExitOK    = 0
	ExitError = 1
	ExitUsage = 64 // EX_USAGE from sysexits.h: the command line was wrong.
)

// exitCoder lets a command choose its exit status while still returning an
// error for cobra to print.
type exitCoder interface{ ExitCode() int }

// CodedError carries a chosen exit code (Code) and an optional message
// (Err; nil prints nothing).
type CodedError struct {
	Code int
	Err  error
}

func (e *CodedError) Error() string {
	if e.Err == nil {
		return ""
	}
	return e.Err.Error()
}

// Unwrap returns the message's error.
func (e *CodedError) Unwrap() error { return e.Err }

// ExitCode is the status the process exits with.
func (e *CodedError) ExitCode() int { return e.Code }

// Run executes root with the command line args and returns the exit
// status. Tests call it with their own writers.
func Run(root *cobra.Command, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
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
		return ExitOK
	}
	var ce exitCoder
	if errors.As(err, &ce) {
		if msg := err.Error(); msg != "" {
			fmt.Fprintln(stderr, root.Name()+":", msg)
		}
		return ce.ExitCode()
	}
	fmt.Fprintln(stderr, root.Name()+":", err)
	return ExitError
}

// NewRoot returns the root command of a binary called name, with the
// node's commands mounted: version, facts, apply, backups, services and
// agent. herd adds its own commands to it; herd-agent runs it as it is.
func NewRoot(name, short, long string) *cobra.Command {
	root := &cobra.Command{
		Use:           name,
		Short:         short,
		Long:          long,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &CodedError{Code: ExitUsage, Err: fmt.Errorf("%w\nrun '%s --help' for usage", err, c.CommandPath())}
	})
	root.AddCommand(
		newVersionCmd(),
		newFactsCmd(),
		newApplyCmd(),
		newBackupsCmd(),
		newServicesCmd(),
		newAgentCmd(),
		newBootstrapCmd(),
	)
	return root
}

// SiteError prefixes each diagnostic with the site directory so that the
// paths it prints open from where the command was run.
func SiteError(dir string, err error) error {
	var ds catalogs.Diagnostics
	if !errors.As(err, &ds) {
		return err
	}
	prefix := strings.TrimSuffix(dir, "/") + "/"
	for i := range ds {
		if ds[i].File != "" {
			ds[i].File = prefix + ds[i].File
		}
	}
	n := len(ds)
	noun := "errors"
	if n == 1 {
		noun = "error"
	}
	return fmt.Errorf("%d %s in site %s:\n%w", n, noun, dir, ds)
}

// UsageError is a command-line mistake: exit 64 and a pointer to --help.
func UsageError(cmd *cobra.Command, msg string) error {
	return &CodedError{Code: ExitUsage, Err: fmt.Errorf("%s\nrun '%s --help' for usage", msg, cmd.CommandPath())}
}

// Logger returns the log/slog logger commands hand to packages, in the
// automatic format (see LoggerFormat).
func Logger(cmd *cobra.Command, level string) (*slog.Logger, error) {
	return LoggerFormat(cmd, level, "")
}
