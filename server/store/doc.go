// Package store remembers it: the server's memory of nodes, facts,
// catalogs, reports and certificates. All of the server's SQL and schema
// migrations live here and nowhere else.
//
// The store is one sqlite file in WAL mode. Every write (a report, facts,
// a catalog, a CA record) is a request to one writer goroutine that owns
// the only read-write connection. It gathers requests into a batch
// (whatever queued while it committed the previous batch, up to
// Options.BatchMax, optionally waiting Options.BatchDelay for more), runs
// the batch in one BEGIN IMMEDIATE transaction with synchronous=FULL,
// gives each request its own SAVEPOINT so that one failing request does
// not fail the others, commits, and only then answers each request. An
// answered write is durable; a batch shares one fsync, which is how the
// store takes far more durable writes per second than the disk takes
// fsyncs. Because there is exactly one writer, no caller ever sees
// SQLITE_BUSY.
//
// A caller waits for its write's batch. When the caller's context ends
// first, the method returns ctx.Err() (wrapped) at once, but the write,
// already queued, may still commit: the caller cannot tell which. Writes
// are safe to repeat for that reason (a report is stored once per run id).
// Byte slices handed to a write must not be changed afterwards, even when
// the method returned early.
//
// Check-ins are the exception to "answered means durable": Checkin only
// records the touch in memory, and the writer writes the newest touch of
// each node with its next batch, or after Options.CheckinDelay when there
// is none. Node and Nodes see touches not yet written.
//
// Reads go to a separate pool of read-only connections; WAL lets them run
// in parallel with each other and with the writer, each on a committed
// snapshot.
//
// The same Store runs on PostgreSQL when Open is given a postgres:// URL:
// the writer, its batches and savepoints, and the read pool are the same,
// over pgx's database/sql driver. The queries are written once, in
// sqlite's dialect, and rewritten for PostgreSQL by the dialect type
// (dialect.go); the migrations are translated likewise (pgSchema).
package store
