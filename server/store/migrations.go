package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
)

// migrations are applied in order; PRAGMA user_version records how many
// have run. Never edit one that has shipped: append.
//
// Times are INTEGER unix nanoseconds, 0 for "never". Text that is absent
// is the empty string rather than NULL, so that scans need no
// sql.NullString.
var migrations = []string{
	`CREATE TABLE nodes (
		name TEXT PRIMARY KEY,
		first_seen INTEGER NOT NULL,
		last_checkin INTEGER NOT NULL DEFAULT 0,
		agent_version TEXT NOT NULL DEFAULT '',
		next_checkin INTEGER NOT NULL DEFAULT 0,
		catalog_etag TEXT NOT NULL DEFAULT '',     -- the catalog the node should run now
		previous_etag TEXT NOT NULL DEFAULT '',    -- the one before it (rollout abort)
		catalog_saved INTEGER NOT NULL DEFAULT 0,  -- when catalog_etag became current
		compile_error TEXT NOT NULL DEFAULT '',
		compile_version TEXT NOT NULL DEFAULT '',  -- the site version that failed
		-- The newest run (by start time): what the node applied and how it went.
		applied_etag TEXT NOT NULL DEFAULT '',     -- of the newest run that was not noop
		last_run_id TEXT NOT NULL DEFAULT '',
		last_received INTEGER NOT NULL DEFAULT 0,
		last_started INTEGER NOT NULL DEFAULT 0,
		last_noop INTEGER NOT NULL DEFAULT 0,
		last_exit_code INTEGER NOT NULL DEFAULT 0,
		last_resources INTEGER NOT NULL DEFAULT 0,
		last_in_sync INTEGER NOT NULL DEFAULT 0,
		last_changed INTEGER NOT NULL DEFAULT 0,
		last_failed INTEGER NOT NULL DEFAULT 0,
		last_skipped INTEGER NOT NULL DEFAULT 0,
		last_unknown INTEGER NOT NULL DEFAULT 0,
		last_refreshed INTEGER NOT NULL DEFAULT 0
	) WITHOUT ROWID;

	-- Facts are kept once per digest: most check-ins of a fleet repeat
	-- facts the store already holds.
	CREATE TABLE facts_blobs (
		digest TEXT PRIMARY KEY,
		json BLOB NOT NULL
	);
	CREATE TABLE facts_latest (
		node TEXT PRIMARY KEY,
		digest TEXT NOT NULL,
		received INTEGER NOT NULL                -- when these facts were last sent
	) WITHOUT ROWID;
	-- One row each time a node's facts digest changes.
	CREATE TABLE facts_history (
		node TEXT NOT NULL,
		at INTEGER NOT NULL,
		digest TEXT NOT NULL,
		PRIMARY KEY (node, at, digest)
	) WITHOUT ROWID;

	-- Catalogs by etag ("sha256:..." of their canonical bytes).
	CREATE TABLE catalogs (
		etag TEXT PRIMARY KEY,
		version TEXT NOT NULL,
		catalog BLOB NOT NULL,
		signature BLOB NOT NULL,
		saved INTEGER NOT NULL
	);
	-- One row each time a node's current catalog changes.
	CREATE TABLE node_catalogs (
		node TEXT NOT NULL,
		at INTEGER NOT NULL,
		etag TEXT NOT NULL,
		PRIMARY KEY (node, at, etag)
	) WITHOUT ROWID;

	-- One row per run. id is the order reports were stored in; (node,
	-- run_id) makes a retried report a no-op, and its index (which holds
	-- id too) finds a node's reports: a second index on (node, id) would
	-- cost every report another page written at a random place.
	CREATE TABLE reports (
		id INTEGER PRIMARY KEY,
		node TEXT NOT NULL,
		run_id TEXT NOT NULL,
		received INTEGER NOT NULL,
		version TEXT NOT NULL,
		catalog_digest TEXT NOT NULL,
		noop INTEGER NOT NULL,
		started INTEGER NOT NULL,
		duration INTEGER NOT NULL,
		exit_code INTEGER NOT NULL,
		resources INTEGER NOT NULL,
		in_sync INTEGER NOT NULL,
		changed INTEGER NOT NULL,
		failed INTEGER NOT NULL,
		skipped INTEGER NOT NULL,
		unknown INTEGER NOT NULL,
		refreshed INTEGER NOT NULL,
		events INTEGER NOT NULL,                 -- rows in events (not-in-sync events only)
		UNIQUE (node, run_id)
	);
	CREATE INDEX reports_received ON reports (received);
	-- The events of a run that were not plainly in sync. The key is the
	-- report's id shifted left by 20 bits plus the event's position, so a
	-- report's events are one range of the table: no second index, and in
	-- order.
	CREATE TABLE events (
		id INTEGER PRIMARY KEY,
		resource TEXT NOT NULL,
		type TEXT NOT NULL,
		status TEXT NOT NULL,
		noop INTEGER NOT NULL,
		changes BLOB,                            -- JSON, as the server made it
		refresh TEXT NOT NULL,
		error TEXT NOT NULL,
		cause TEXT NOT NULL,
		output TEXT NOT NULL,
		duration INTEGER NOT NULL
	);

	-- Every certificate ever issued; revoked ones stay, so that their
	-- serials stay refused.
	CREATE TABLE certs (
		id INTEGER PRIMARY KEY,
		name TEXT NOT NULL,
		serial TEXT NOT NULL UNIQUE,
		der BLOB NOT NULL,
		admin INTEGER NOT NULL,
		not_after INTEGER NOT NULL,
		issued INTEGER NOT NULL,
		revoked_at INTEGER NOT NULL DEFAULT 0
	);
	CREATE INDEX certs_name ON certs (name, id);
	-- At most one valid certificate per name, whatever the code above does.
	CREATE UNIQUE INDEX certs_valid ON certs (name) WHERE revoked_at = 0;
	CREATE TABLE pending (
		name TEXT PRIMARY KEY,
		csr BLOB NOT NULL,
		requested INTEGER NOT NULL
	);
	CREATE TABLE tokens (
		hash TEXT PRIMARY KEY,
		name_pattern TEXT NOT NULL,
		expires INTEGER NOT NULL,
		single_use INTEGER NOT NULL,
		used_at INTEGER NOT NULL,
		created INTEGER NOT NULL
	);`,

	// 2: one row the health check rewrites, so that /healthz proves the
	// store can still commit.
	`CREATE TABLE health (
		id INTEGER PRIMARY KEY CHECK (id = 1),
		checked INTEGER NOT NULL
	);`,

	// 3: where each pending enrollment came from, for `herd ca list`; the
	// index lets the CA prune expired requests.
	`ALTER TABLE pending ADD COLUMN source TEXT NOT NULL DEFAULT '';
	CREATE INDEX pending_requested ON pending (requested);`,

	// 4: renewal: a certificate may supersede its name's current one, which
	// stays valid until it expires; only one per name is current.
	`ALTER TABLE certs ADD COLUMN supersedes TEXT NOT NULL DEFAULT '';
	ALTER TABLE certs ADD COLUMN superseded_by TEXT NOT NULL DEFAULT '';
	DROP INDEX certs_valid;
	CREATE UNIQUE INDEX certs_valid ON certs (name) WHERE revoked_at = 0 AND superseded_by = '';`,

	// 5: rollouts. A node's catalog_etag is now its approved catalog (the
	// one check-ins serve); a rollout holds each node's candidate until a
	// stage releases it. applied_version is the site version of the
	// newest run that was not noop.
	`ALTER TABLE nodes ADD COLUMN applied_version TEXT NOT NULL DEFAULT '';
	CREATE TABLE rollouts (
		id INTEGER PRIMARY KEY,
		version TEXT NOT NULL,
		previous_version TEXT NOT NULL,
		state TEXT NOT NULL,
		reason TEXT NOT NULL,
		created INTEGER NOT NULL,
		updated INTEGER NOT NULL,
		superseded_by INTEGER NOT NULL DEFAULT 0,
		stages BLOB NOT NULL,                    -- JSON: the stages as herd.toml said, and their state
		fleet BLOB NOT NULL                      -- JSON: the fleet summary the gates read
	);
	CREATE TABLE rollout_nodes (
		rollout INTEGER NOT NULL,
		node TEXT NOT NULL,
		stage INTEGER NOT NULL,                  -- index into the rollout's stages
		rehearse INTEGER NOT NULL,               -- its rehearsal stage, -1 for none
		decision TEXT NOT NULL,                  -- allowed, denied, compile-error, unchanged
		state TEXT NOT NULL,
		deny BLOB,                               -- JSON lists of {message, resource}
		warn BLOB,
		compile_error TEXT NOT NULL,
		failures BLOB,                           -- JSON list of strings
		previous_etag TEXT NOT NULL,
		etag TEXT NOT NULL,                      -- the candidate
		change BLOB,                             -- JSON of catalogs.Change
		rehearsal BLOB,                          -- JSON summary of the noop run; NULL until rehearsed
		final INTEGER NOT NULL,                  -- a good report came after the stage's bake
		PRIMARY KEY (rollout, node)
	) WITHOUT ROWID;`,

	// 6: node lifecycle. deactivated is when the node left the fleet
	// views and rollouts (by an operator, or by node_ttl), 0 while it is
	// active; a check-in after it brings the node back.
	`ALTER TABLE nodes ADD COLUMN deactivated INTEGER NOT NULL DEFAULT 0;`,
	// 7: drift. A report says whether it was an audit run (the agent's
	// noop check between applies) and how many resources differed from
	// the catalog; a node keeps the drift of its newest report that
	// checked its own state (an audit run or a real one) and that
	// report's start, which orders late reports.
	`ALTER TABLE reports ADD COLUMN audit INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE reports ADD COLUMN drift INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE nodes ADD COLUMN drift INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE nodes ADD COLUMN drift_started INTEGER NOT NULL DEFAULT 0;`,
	// 8: compliance audits. audit_results keeps a row each time a
	// (node, control) state or evidence changed, with the time and the
	// site version it was judged at, so that "compliance at time X" is
	// the newest row at or before X; state "" marks a control that no
	// longer exists (or a node left out) from then on. audit_current is
	// each pair's newest row, for the answers about now.
	// audit_controls is every control's metadata as last seen, for the
	// answers about a time whose controls are gone.
	`CREATE TABLE audit_results (
		id INTEGER PRIMARY KEY,
		node TEXT NOT NULL,
		control TEXT NOT NULL,
		at INTEGER NOT NULL,                     -- unix ns
		version TEXT NOT NULL,
		state TEXT NOT NULL,                     -- pass, fail, error, no-data; "" gone
		evidence BLOB NOT NULL                   -- JSON [{message, resource}] or the error text
	);
	CREATE INDEX audit_results_pair ON audit_results (node, control, at);
	CREATE INDEX audit_results_at ON audit_results (at);
	CREATE TABLE audit_current (
		node TEXT NOT NULL,
		control TEXT NOT NULL,
		at INTEGER NOT NULL,
		version TEXT NOT NULL,
		state TEXT NOT NULL,
		evidence BLOB NOT NULL,
		PRIMARY KEY (node, control)
	) WITHOUT ROWID;
	CREATE TABLE audit_controls (
		id TEXT PRIMARY KEY,
		meta BLOB NOT NULL                       -- JSON of the control's metadata
	) WITHOUT ROWID;`,

	// 9: sign-in on the HTTP port. A login is a name and its password's
	// argon2id hash (PHC string); a session is kept by the SHA-256 of its
	// cookie, so that a copy of the store signs nobody in.
	`CREATE TABLE web_logins (
		name TEXT PRIMARY KEY,
		hash TEXT NOT NULL,
		created INTEGER NOT NULL
	);
	CREATE TABLE web_sessions (
		id TEXT PRIMARY KEY,                     -- hex SHA-256 of the cookie's value
		name TEXT NOT NULL,
		created INTEGER NOT NULL,
		expires INTEGER NOT NULL
	);
	CREATE INDEX web_sessions_expires ON web_sessions (expires);
	CREATE INDEX web_sessions_name ON web_sessions (name);`,
	// 10: partial runs (herd apply --tags/--only). A partial report
	// checked some resources only: it is kept and listed, but is neither
	// the node's last run, its applied catalog, its drift nor the report
	// its compliance is judged on.
	`ALTER TABLE reports ADD COLUMN partial INTEGER NOT NULL DEFAULT 0;`,
	// 11: secrets. Each node's X25519 public key, which compile seals
	// the catalog's sensitive values to; the node sends it when it
	// enrolls, renews and checks in, and a new one (a node enrolled
	// again) replaces the old.
	`CREATE TABLE node_keys (
		name TEXT PRIMARY KEY,
		key BLOB NOT NULL,                       -- 32 bytes, X25519
		updated INTEGER NOT NULL                 -- unix ns
	) WITHOUT ROWID;`,
	// 12: environments. Each rollout belongs to one environment (a branch
	// of the site the server serves); each environment has its own newest
	// rollout. Rollouts from before are '' and belong to the default
	// environment.
	`ALTER TABLE rollouts ADD COLUMN environment TEXT NOT NULL DEFAULT '';
	CREATE INDEX rollouts_environment ON rollouts (environment, id);`,
	// 13: an event's source (the site file:line of the resource), so that
	// a stored report names where a failed resource was declared.
	`ALTER TABLE events ADD COLUMN source TEXT NOT NULL DEFAULT '';`,
	// 14: a report's events in its own row (eventdata.go), one value
	// instead of a row each in events, which keeps the reports stored
	// before it. NULL: no events, or events in the events table. From
	// this version on catalogs are also stored compressed
	// (catalogblob.go), which a herd of version 13 could not read: the
	// version keeps it off.
	`ALTER TABLE reports ADD COLUMN event_data BLOB;`,
}

// pgMigrations holds a migration's PostgreSQL form where pgSchema's
// mechanical translation of the sqlite one (above) does not do, keyed by
// the migration's number (1 for migrations[0]). Adding a migration is one
// edit: append its sqlite form to migrations; only when TestPGMigrations
// fails on it does it need an entry here too.
var pgMigrations = map[int]string{}

// pgTypes are the rewrites that turn the sqlite schema into PostgreSQL's:
// an INTEGER PRIMARY KEY is a rowid that numbers itself (an identity
// column that still takes an explicit id), INTEGER is 64 bits (BIGINT,
// not PostgreSQL's 32-bit INTEGER), BLOB is BYTEA, WITHOUT ROWID is how
// PostgreSQL keeps every table anyway, and TEXT compares byte by byte as
// in sqlite (COLLATE "C"), so that ORDER BY name and name > ? page the
// same way in both whatever the database's locale.
var pgTypes = strings.NewReplacer(
	"id INTEGER PRIMARY KEY", "id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
	"INTEGER", "BIGINT",
	"BLOB", "BYTEA",
	") WITHOUT ROWID", ")",
	" TEXT ", ` TEXT COLLATE "C" `,
	" TEXT,", ` TEXT COLLATE "C",`,
	" TEXT\n", " TEXT COLLATE \"C\"\n",
	" TEXT)", ` TEXT COLLATE "C")`,
	" TEXT;", ` TEXT COLLATE "C";`,
)

// pgSchema returns migration n's PostgreSQL form.
func pgSchema(n int) string {
	if m, ok := pgMigrations[n]; ok {
		return m
	}
	// The newline lets a statement that ends in TEXT match too.
	return strings.TrimSuffix(pgTypes.Replace(migrations[n-1]+"\n"), "\n")
}

// migrate brings the schema on conn up to date, one transaction per
// migration, and refuses a schema newer than this build.
func migrate(ctx context.Context, conn *sql.Conn, d dialect) error {
	version, err := schemaVersion(ctx, conn, d)
	if err != nil {
		return err
	}
	if version > len(migrations) {
		return fmt.Errorf("schema version %d is newer than this herd's (%d): refusing to touch it", version, len(migrations))
	}
	for i := version; i < len(migrations); i++ {
		if err := migrateOne(ctx, conn, d, i); err != nil {
			return fmt.Errorf("migrating schema to version %d: %w", i+1, err)
		}
	}
	return nil
}

// schemaVersion is how many migrations conn's database has run: sqlite's
// PRAGMA user_version, or the one row of herd_schema on PostgreSQL (none
// when the table is missing: a new database).
func schemaVersion(ctx context.Context, conn *sql.Conn, d dialect) (int, error) {
	var version int
	var err error
	if d.pg {
		var exists bool
		if err = conn.QueryRowContext(ctx, `SELECT to_regclass('herd_schema') IS NOT NULL`).Scan(&exists); err == nil && exists {
			err = conn.QueryRowContext(ctx, `SELECT version FROM herd_schema`).Scan(&version)
		}
	} else {
		err = conn.QueryRowContext(ctx, `PRAGMA user_version`).Scan(&version)
	}
	if err != nil {
		return 0, fmt.Errorf("reading schema version: %w", err)
	}
	return version, nil
}

func migrateOne(ctx context.Context, conn *sql.Conn, d dialect, i int) error {
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() // after Commit, a no-op
	if !d.pg {
		if _, err := tx.ExecContext(ctx, migrations[i]); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, fmt.Sprintf(`PRAGMA user_version = %d`, i+1)); err != nil {
			return err
		}
		return tx.Commit()
	}
	// Two servers starting at once on one database: the second waits
	// here, then finds the migration done and leaves it.
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(7414290)`); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS herd_schema (version BIGINT NOT NULL)`); err != nil {
		return err
	}
	var done int
	switch err := tx.QueryRowContext(ctx, `SELECT version FROM herd_schema`).Scan(&done); {
	case errors.Is(err, sql.ErrNoRows):
		if _, err := tx.ExecContext(ctx, `INSERT INTO herd_schema (version) VALUES (0)`); err != nil {
			return err
		}
	case err != nil:
		return err
	case done > i:
		return nil
	}
	if _, err := tx.ExecContext(ctx, pgSchema(i+1)); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE herd_schema SET version = $1`, i+1); err != nil {
		return err
	}
	return tx.Commit()
}
