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
// Around the engine, one run pipeline (run.go) for every kind of run: a
// kernel lock (flock) so that one run happens at a time and a dead holder
// never leaves a stale lock, facts, the catalog from a catalog source
// (compiled here from a site, or the server's), the report, and a sqlite
// state file (State, under a StateDir) with the run history, the index of
// replaced file contents (backups), the supervisor's records and the
// daemon's catalog cache and report spool.
//
// RunSiteDaemon is the masterless daemon (herd agent --site): Apply on a
// schedule and whenever the site checkout changes, with the supervisor
// kept between runs.
//
// The daemon (NewDaemon, Daemon.Run) is the agent of a fleet: Enroll gets the
// node its certificate once; then each run checks in with the server
// (facts by digest, in full only when they changed), takes a new catalog
// only when its ed25519 signature, etag and node name check out, caches it
// as the last good catalog, fetches the files it ships by digest,
// converges, and spools the report until the server has it. Timer, Watch
// and drift triggers only ask for a run and coalesce.
package agent
