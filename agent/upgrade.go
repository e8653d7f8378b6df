package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
)

// How an agent upgrades itself. The agent's package may be upgraded by
// the agent's own run (a package resource pinning herd-agent's version)
// or by hand. Either way dpkg renames the new program over the old one,
// so that the path names another file than the one running. The daemon
// notices it after a run: the run has finished and its report is spooled,
// so the daemon sends the spool, lets go of everything (the supervisor,
// its services left running; the locks; the state) and Run returns
// ErrUpgraded. The command (nodecmd) then re-executes the program at the
// same path with the same arguments: the same pid, so systemd sees no
// restart (it is told RELOADING=1, and the new program says READY=1),
// the services stay the children of the same process, and the new
// supervisor adopts each by pid, start time and boot id, restarting none.
// A report the send did not get out stays in the spool, and the new
// program sends it first; the server stores a run id once.
//
// Nothing restarts the agent from outside mid-run: the package's
// postinst must not restart herd-agent.service (systemctl would stop the
// very process running dpkg, in the middle of its run).

// ErrUpgraded is returned by Run when the daemon's program was replaced
// (a package upgrade) and the daemon stopped, its last run reported, so
// that its caller re-executes the new program.
var ErrUpgraded = errors.New("the agent's program was replaced: re-execute it")

// exeID identifies one file: its device and inode.
type exeID struct{ dev, ino uint64 }

// statExe identifies the file at path.
func statExe(path string) (exeID, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return exeID{}, err
	}
	return exeID{dev: uint64(st.Dev), ino: st.Ino}, nil
}

// exeReplaced says whether the daemon's program file is now another file
// than at its start. A path that is missing for the moment (dpkg between
// its renames) is not a replacement yet.
func (d *Daemon) exeReplaced() bool {
	if d.o.Executable == "" || d.exe == (exeID{}) {
		return false
	}
	id, err := statExe(d.o.Executable)
	return err == nil && id != d.exe
}

// upgraded ends the daemon's life for a re-exec: the spool is sent (what
// does not go out waits for the new program), and systemd hears that the
// daemon reloads rather than stops.
func (d *Daemon) upgraded(ctx context.Context) error {
	d.log.Info("the agent's program was replaced (a package upgrade): re-executing it, the services left running", "path", d.o.Executable)
	if n, err := d.sendSpool(ctx); err != nil {
		d.log.Warn("reports stay spooled for the upgraded agent", "sent", n, "err", err)
	}
	d.upgrading = true
	if err := d.o.Notify.Reloading("re-executing the upgraded agent"); err != nil {
		d.log.Warn("telling systemd the agent reloads", "err", err)
	}
	return fmt.Errorf("%w (%s)", ErrUpgraded, d.o.Executable)
}

// Reexec replaces this process with the program at path, with the same
// arguments and env (the service manager's variables, which the notifier
// took out of the environment, put back). It returns only on failure.
func Reexec(path string, env []string) error {
	err := syscall.Exec(path, os.Args, append(os.Environ(), env...))
	return fmt.Errorf("re-executing %s: %w", path, err)
}
