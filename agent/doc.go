// Package agent makes a host match its catalog and reports what it did.
//
// Converge is the engine shared by masterless `herd apply` and the agent
// daemon: it checks every resource of a catalog, applies the changes in
// dependency order with independent resources in parallel (bounded), skips
// only the dependents of a failure, delivers each refresh once, re-checks
// every applied resource (idempotence is verified on every run, not
// trusted), and turns every outcome into one Event. In noop it only checks,
// and a resource whose state depends on a change noop did not make is
// reported as unknown rather than guessed.
//
// Around the engine: a kernel lock (flock) so that one run happens at a
// time and a dead holder never leaves a stale lock, and a sqlite state file
// with the run history, the index of replaced file contents (backups) and
// the supervisor's records.
//
// The daemon (Daemon, RunDaemon) is the agent of a fleet: Enroll gets the
// node its certificate once; then each run checks in with the server
// (facts by digest, in full only when they changed), takes a new catalog
// only when its ed25519 signature, etag and node name check out, caches it
// as the last good catalog, fetches the files it ships by digest,
// converges, and spools the report until the server has it. Timer, Watch
// and drift triggers only ask for a run and coalesce.
package agent
