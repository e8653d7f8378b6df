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
	"slices"
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
	UsageArgs(root)
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
	if !errors.As(PrefixSite(dir, err), &ds) {
		return err
	}
	n := len(ds)
	noun := "errors"
	if n == 1 {
		noun = "error"
	}
	return fmt.Errorf("%d %s in site %s:\n%w", n, noun, dir, ds)
}

// PrefixSite returns err's diagnostics with the site directory dir in
// front of each file, so that they open from where the command was run:
// a copy, err itself is left alone. An error that holds no diagnostics is
// returned as it is.
func PrefixSite(dir string, err error) error {
	var ds catalogs.Diagnostics
	if !errors.As(err, &ds) {
		return err
	}
	prefix := strings.TrimSuffix(dir, "/") + "/"
	out := slices.Clone(ds)
	for i := range out {
		if out[i].File != "" {
			out[i].File = prefix + out[i].File
		}
	}
	return out
}

// UsageArgs makes every command line mistake in root's tree a usage
// error (exit 64, a pointer to --help), as flag errors already are: a
// missing or extra argument (each command's Args), an unknown command
// (root's and every group's), and a group such as `herd node` run without
// its subcommand. Run calls it, so that a command added later is covered
// without doing anything; it is idempotent.
func UsageArgs(root *cobra.Command) {
	// cobra adds help and completion while executing, after this walk
	// would have run: add them now so that they follow the same rules.
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		if c.Name() == "help" && c.Args == nil {
			// cobra's help prints "Unknown help topic" and exits 0.
			c.Args = func(_ *cobra.Command, args []string) error {
				found, rest, err := root.Find(args)
				if err != nil || found == nil || len(rest) > 0 {
					return fmt.Errorf("no help topic %q", strings.Join(args, " "))
				}
				return nil
			}
		}
	}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			walk(sub)
		}
		if c.Annotations[usageArgsDone] != "" {
			return
		}
		if c.Annotations == nil {
			c.Annotations = map[string]string{}
		}
		c.Annotations[usageArgsDone] = "1"
		switch {
		case c.Args != nil:
			check := c.Args
			c.Args = func(cmd *cobra.Command, args []string) error {
				if err := check(cmd, args); err != nil {
					// cobra's "accepts 1 arg(s), received 0" says how many,
					// the use line says which.
					return UsageError(cmd, fmt.Sprintf("%v\nusage: %s", err, cmd.UseLine()))
				}
				return nil
			}
		case c.HasSubCommands():
			// What cobra does for the root alone (an argument that names
			// no subcommand is an unknown command), for every group.
			c.Args = func(cmd *cobra.Command, args []string) error {
				if len(args) == 0 {
					return nil
				}
				msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
				if cmd.SuggestionsMinimumDistance <= 0 {
					cmd.SuggestionsMinimumDistance = 2 // cobra's default, which it sets only on its own path
				}
				if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
					msg += "; did you mean " + strings.Join(s, " or ") + "?"
				}
				return UsageError(cmd, msg)
			}
		}
		if !c.Runnable() && c.HasSubCommands() && !c.HasParent() {
			// The binary alone prints its help, as cobra does; Runnable
			// so that an unknown command reaches Args above instead of
			// the same help with exit 0.
			c.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
		}
		if !c.Runnable() && c.HasSubCommands() && c.HasParent() {
			// A group without its subcommand is a usage error, not a help
			// page with exit 0 that a script takes for success.
			c.RunE = func(cmd *cobra.Command, _ []string) error {
				var names []string
				for _, sub := range cmd.Commands() {
					if sub.IsAvailableCommand() {
						names = append(names, sub.Name())
					}
				}
				return UsageError(cmd, fmt.Sprintf("%s needs a subcommand: %s", cmd.CommandPath(), strings.Join(names, ", ")))
			}
		}
	}
	walk(root)
}

// usageArgsDone marks a command UsageArgs has wrapped.
const usageArgsDone = "herd.usage-args"

// UsageError is a command-line mistake: exit 64 and a pointer to --help.
func UsageError(cmd *cobra.Command, msg string) error {
	return &CodedError{Code: ExitUsage, Err: fmt.Errorf("%s\nrun '%s --help' for usage", msg, cmd.CommandPath())}
}

// Logger returns the log/slog logger commands hand to packages, in the
// automatic format (see LoggerFormat).
func Logger(cmd *cobra.Command, level string) (*slog.Logger, error) {
	return LoggerFormat(cmd, level, "")
}
