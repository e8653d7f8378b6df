// Package supervise keeps services running.
//
// It is Herd's built-in process supervisor, the "herd" provider of the
// service resource. A Supervisor starts each service from a Spec (argv,
// environment, directory, user, restart policy, health check, stop signal
// and timeout), restarts it with backoff when it exits, gives up on a crash
// loop, probes its health, rotates its logs and stops it on request. The
// agent calls Ensure on every run; when nothing changed that is a digest
// comparison and nothing more.
//
// # Process model
//
// Each service runs in its own process group (Setpgid), the leader being
// its main process. Where cgroup v2 is writable (Options.CgroupRoot, by
// default herd/CgroupScope(StateDir) under the cgroup2 mount, which on a
// hybrid host is /sys/fs/cgroup/unified, or the agent's delegated cgroup,
// below) each service also gets its own
// cgroup, ROOT/NAME.service, and is forked straight into it (clone3 with
// CLONE_INTO_CGROUP). A cgroup holds every descendant of the service, even
// one that left the process group with setsid(), so stopping and cleaning
// up through it is exact; without one, the process group is all there is.
//
// Every state directory has its own subtree, named by a hash of its path,
// and one supervisor at a time (the agent's lock): a sandbox rehearsal
// never empties a production service's cgroup of the same name. A recorded
// cgroup outside the subtree is never emptied or killed.
//
// Under systemd with Delegate=yes (herd-agent.service) the subtrees are in
// the agent's unit instead: UNIT/services/SCOPE/NAME.service, where
// systemd leaves them alone and counts them to the unit. The test is the
// mark systemd (251 and later) puts on a cgroup it delegates, the
// trusted.delegate or user.delegate extended attribute set to 1, on the
// process's own cgroup (/proc/self/cgroup) or on its parent when the
// process is in that parent's UNIT/agent (an agent that re-executed
// itself). Neither the unit's name nor write access decides it: root may
// write any cgroup, and one systemd did not delegate it may rearrange. New
// first moves the process into the leaf UNIT/agent, so that UNIT holds no
// process beside its children, as cgroup v2 wants of an inner cgroup
// with controllers; it enables none itself (the supervisor needs none,
// and one enabled in UNIT would keep systemd before 254 from placing a
// restarted agent there). Services an agent left in the old subtree,
// herd/SCOPE, are adopted there, never killed, and move into the unit at
// their next start. Without a delegated cgroup (no systemd, a sandbox, a
// shell's herd apply, tests) the subtree is herd/SCOPE under the mount,
// and the services found in UNIT/services/SCOPE of a delegated unit are
// this state directory's too.
//
// The main process must stay in the foreground. When it exits, whatever it
// left behind is killed (systemd's KillMode=control-group), then the
// restart policy (Policy) decides: restart after a backoff of at least one
// second, leave the service stopped or failed, or, after too many failures
// without long enough healthy running in between, stop trying (crash-loop).
// Stop sends StopSignal to every process of the cgroup, or to the process
// group, waits StopTimeout for all of them to be gone and SIGKILLs what is
// left. Pdeathsig is not used: services are meant to outlive the agent.
//
// Ensure and Restart wait Options.Settle for a start to be confirmed: a
// process that exits within it fails them with an ExitError (its exit and
// the tail of its logs). A main process that exits 0 at once leaving
// processes behind is a forking daemon, which the supervisor refuses
// (ErrForked). Restart keeps the crash-loop count, and so does Ensure of an
// unchanged spec: only a new spec starts the count over.
//
// Each service has one goroutine, its loop, that owns its process, its
// record and its state, from the moment it is started until it is stopped
// or the Supervisor is closed. The Supervisor only routes requests to the
// loops; Status reads a snapshot each loop publishes.
//
// # Adoption
//
// Services keep running when the agent exits: Close stops supervising and
// leaves them be. Their records (Record: pid, process group, start time,
// boot id, cgroup, spec digest, restart counts, state) are in a Store, so
// that the next Supervisor, in New, adopts every service whose process
// still runs: same boot id, and the same start time, field 22 of
// /proc/PID/stat, so a process that merely reused a recorded pid is never
// adopted, signalled or killed. An adopted process is not our child; a
// pidfd (pidfd_open) tells when it exits, and its exit status is unknown
// and counted as a failure. A service whose process died while no agent ran
// is restarted as its policy says; after a reboot, it is simply started.
// Nothing is started twice: a running service with the wanted spec is left
// alone, and a service's cgroup is emptied before the service starts in it.
//
// In the process-group fallback, cleaning up after a main process that exited
// unseen relies on its process group id not having been reused, which the
// kernel guarantees only while a member of the group lives; cgroups have no
// such gap.
//
// # Logs
//
// The stdout and stderr of a service go straight to LogDir/NAME.stdout.log
// and LogDir/NAME.stderr.log, opened with O_APPEND: nothing passes through
// the agent, so its restart neither loses output nor blocks a service on a
// full pipe. The supervisor rotates them by size with copy-then-truncate,
// keeping Options.LogKeep old files; the few bytes a service writes while a
// copy finishes may be lost, and an old file may end mid-line.
package supervise
