package nodecmd

import (
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/herdcm/herd/agent"
)

// stateFlags are the flags that locate an agent's state.
type stateFlags struct {
	root, stateDir string
}

func (s *stateFlags) register(cmd *cobra.Command) {
	cmd.PersistentFlags().StringVar(&s.root, "root", "/", "the host root")
	cmd.PersistentFlags().StringVar(&s.stateDir, "state-dir", "", "the agent's state directory (default ROOT/var/lib/herd)")
}

func (s *stateFlags) dir() string {
	return agent.StateDirOr(s.stateDir, s.root).String()
}

func newBackupsCmd() *cobra.Command {
	var (
		sf      stateFlags
		jsonOut bool
	)
	cmd := &cobra.Command{
		Use:   "backups [PATH]",
		Short: "List file contents that runs replaced; show or restore one",
		Long: `Every time a run replaces or removes a managed file, the old content is kept
in the agent's content store first. backups lists them, newest first, for
all files or one PATH; "backups show ID" prints one; "backups restore ID"
puts it back (saving what is there now, so a restore can be undone too).`,
		Example: `  herd backups
  herd backups /etc/motd
  herd backups show 12 | diff - /etc/motd
  herd backups restore 12`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := agent.OpenState(sf.dir())
			if err != nil {
				return err
			}
			defer st.Close()
			path := ""
			if len(args) == 1 {
				path = args[0]
			}
			bs, err := st.Backups(cmd.Context(), path)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if jsonOut {
				if bs == nil {
					bs = []agent.Backup{}
				}
				return WriteJSON(out, bs)
			}
			if len(bs) == 0 {
				fmt.Fprintln(out, "no backups")
				return nil
			}
			tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSAVED\tSIZE\tPATH\tDIGEST")
			for _, b := range bs {
				fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%s\n", b.ID, b.Saved.Local().Format(time.DateTime), b.Size, b.Path, b.Digest[:19])
			}
			return tw.Flush()
		},
	}
	sf.register(cmd)
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print the list as JSON")
	cmd.AddCommand(&cobra.Command{
		Use:   "show ID",
		Short: "Print a saved content",
		Args:  cobra.ExactArgs(1),
		RunE: withBackup(&sf, func(cmd *cobra.Command, st *agent.State, id int64) error {
			b, err := st.Backup(cmd.Context(), id)
			if err != nil {
				return err
			}
			rc, err := st.OpenContent(b.Digest)
			if err != nil {
				return err
			}
			defer rc.Close()
			_, err = io.Copy(cmd.OutOrStdout(), rc)
			return err
		}),
	}, &cobra.Command{
		Use:   "restore ID",
		Short: "Put a saved content back in place",
		Args:  cobra.ExactArgs(1),
		RunE: withBackup(&sf, func(cmd *cobra.Command, st *agent.State, id int64) error {
			b, err := agent.RestoreBackup(cmd.Context(), st, sf.root, id)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "restored %s from backup %d (%s); the content it replaced is a new backup\n", b.Path, b.ID, b.Saved.Local().Format(time.DateTime))
			return nil
		}),
	})
	return cmd
}

// withBackup parses a backup ID argument and opens the state for fn.
func withBackup(sf *stateFlags, fn func(*cobra.Command, *agent.State, int64) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		id, err := strconv.ParseInt(args[0], 10, 64)
		if err != nil {
			return UsageError(cmd, "ID must be a number from herd backups")
		}
		st, err := agent.OpenState(sf.dir())
		if err != nil {
			return err
		}
		defer st.Close()
		return fn(cmd, st, id)
	}
}
