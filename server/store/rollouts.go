package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Rollout is one site version on its way to the fleet, as stored. The
// server's rollout controller owns its meaning; the store keeps it whole.
type Rollout struct {
	ID              int64
	Version         string
	PreviousVersion string
	// State is gating, running, paused, awaiting-approval, halted,
	// blocked, done, aborted or superseded.
	State        string
	Reason       string
	Created      time.Time
	Updated      time.Time
	SupersededBy int64
	Stages       []RolloutStage
	// Fleet is the JSON of the fleet summary the gates read, kept so that a
	// node regated after a restart reads the same summary.
	Fleet []byte
	// Environment is the environment (site branch) it rolls out; ""
	// for a rollout stored before environments existed.
	Environment string
}

// RolloutStage is one stage of a rollout: its definition as herd.toml
// said when the rollout began (a later edit changes later rollouts only)
// and where it is.
type RolloutStage struct {
	Name             string        `json:"name"`
	Nodes            []string      `json:"nodes,omitempty"`
	When             string        `json:"when,omitempty"`
	Percent          float64       `json:"percent,omitempty"`
	Bake             time.Duration `json:"bake,omitempty"`
	Timeout          time.Duration `json:"timeout,omitempty"`
	MaxFailed        float64       `json:"max_failed,omitempty"`
	MaxFailedPercent bool          `json:"max_failed_percent,omitempty"`
	Noop             bool          `json:"noop,omitempty"`
	Manual           bool          `json:"manual,omitempty"`

	// State is pending, awaiting-approval, rehearsing, releasing,
	// baking, done or halted.
	State     string    `json:"state"`
	Started   time.Time `json:"started,omitzero"`
	BakeUntil time.Time `json:"bake_until,omitzero"`
	// BakeEnded is set when the bake's time is up: the stage waits for
	// one more good report from each node.
	BakeEnded bool `json:"bake_ended,omitempty"`
	Approved  bool `json:"approved,omitempty"`
	// Override is set when an operator resumed the stage past its
	// failures: they no longer halt it.
	Override bool `json:"override,omitempty"`
	// Halted is the state the stage was in when it halted, to go back to
	// on resume.
	Halted string `json:"halted,omitempty"`
}

// PolicyMessage is one message of a gate's deny or warn rule.
type PolicyMessage struct {
	Message  string `json:"message"`
	Resource string `json:"resource,omitempty"`
}

// RolloutNode is one node's part in a rollout.
type RolloutNode struct {
	Node string
	// Stage is the index of the node's stage in Rollout.Stages; Rehearse
	// the index of its rehearsal stage, -1 when none selects it.
	Stage    int
	Rehearse int
	// Decision is allowed, denied, compile-error or unchanged.
	Decision string
	// State is pending, released, healthy, failed, denied, compile-error
	// or unchanged.
	State        string
	Deny, Warn   []PolicyMessage
	CompileError string
	// Failures say why the node failed: "type:name: error" and
	// "service x: unhealthy: detail".
	Failures     []string
	PreviousEtag string
	Etag         string // the candidate
	// Change is the JSON of the node's catalogs.Change against its
	// previous catalog. Writing nil keeps the stored one, so that a step
	// need not hold every node's change in memory.
	Change []byte
	// Rehearsal is the summary of the node's noop run of the candidate;
	// nil until it rehearsed.
	Rehearsal *Summary
	// Final is set when a good report of the candidate came after the
	// stage's bake ended.
	Final bool
}

// Approval makes Etag node's approved catalog, the one its check-ins get.
type Approval struct {
	Node string
	Etag string
}

// RolloutWrite is what one rollout step writes, in one transaction: the
// rollout (created when its ID is 0), the nodes whose part changed, and
// the approvals the step makes. Superseded, when not 0, is a rollout the
// new one supersedes.
type RolloutWrite struct {
	Rollout *Rollout
	// Create inserts Rollout under its ID (which the caller chose)
	// instead of updating it.
	Create     bool
	Nodes      []RolloutNode
	Approvals  []Approval
	Superseded int64
}

// WriteRollout writes w in one transaction and returns the rollout's id
// (new when w.Rollout.ID was 0; w.Create inserts it under its ID). Approved etags must be stored already
// (PutCatalogs); each approval keeps the node's approved catalog before
// it as its previous one. However many nodes a step touches, it is one
// write.
func (s *Store) WriteRollout(ctx context.Context, w RolloutWrite) (int64, error) {
	var id int64
	var stages, fleet []byte
	if w.Rollout != nil {
		id = w.Rollout.ID
		var err error
		if stages, err = json.Marshal(w.Rollout.Stages); err != nil {
			return 0, fmt.Errorf("writing rollout %d: %w", id, err)
		}
		fleet = w.Rollout.Fleet
		if fleet == nil {
			fleet = []byte("null")
		}
	}
	type nodeRow struct {
		n                                     RolloutNode
		deny, warn, failures, change, rehears []byte
	}
	rows := make([]nodeRow, len(w.Nodes))
	for i, n := range w.Nodes {
		r := nodeRow{n: n, change: n.Change}
		var err error
		if r.deny, err = jsonOrNil(n.Deny, len(n.Deny) == 0); err == nil {
			if r.warn, err = jsonOrNil(n.Warn, len(n.Warn) == 0); err == nil {
				if r.failures, err = jsonOrNil(n.Failures, len(n.Failures) == 0); err == nil {
					r.rehears, err = jsonOrNil(n.Rehearsal, n.Rehearsal == nil)
				}
			}
		}
		if err != nil {
			return 0, fmt.Errorf("writing rollout %d: node %s: %w", id, n.Node, err)
		}
		rows[i] = r
	}
	now := time.Now()
	err := s.write(ctx, func(tx *wtx) error {
		if r := w.Rollout; r != nil {
			if r.ID == 0 || w.Create {
				// Without an id the table numbers it; RETURNING rather
				// than LastInsertId, which PostgreSQL has not.
				cols, vals, args := ``, ``, []any{}
				if r.ID != 0 {
					cols, vals, args = `id, `, `?, `, append(args, r.ID)
				}
				args = append(args, r.Version, r.PreviousVersion, r.State, r.Reason, ns(r.Created), ns(r.Updated), r.SupersededBy, stages, fleet, r.Environment)
				if err := tx.queryRow(`INSERT INTO rollouts (`+cols+`version, previous_version, state, reason, created, updated, superseded_by, stages, fleet, environment)
					VALUES (`+vals+`?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`, args...).Scan(&id); err != nil {
					return err
				}
				if r.ID != 0 && tx.d.pg {
					// An explicit id leaves PostgreSQL's identity behind:
					// move it past, or the next numbered rollout collides.
					if _, err := tx.exec(`SELECT setval(pg_get_serial_sequence('rollouts', 'id'), (SELECT MAX(id) FROM rollouts))`); err != nil {
						return err
					}
				}
			} else if _, err := tx.exec(`UPDATE rollouts SET state = ?, reason = ?, updated = ?, superseded_by = ?, stages = ?, fleet = ? WHERE id = ?`,
				r.State, r.Reason, ns(r.Updated), r.SupersededBy, stages, fleet, r.ID); err != nil {
				return err
			}
		}
		if id == 0 && len(rows) > 0 {
			return errors.New("rollout nodes without a rollout")
		}
		if w.Superseded != 0 {
			if _, err := tx.exec(`UPDATE rollouts SET state = 'superseded', superseded_by = ?, updated = ? WHERE id = ?`, id, ns(now), w.Superseded); err != nil {
				return err
			}
		}
		for _, r := range rows {
			n := r.n
			if _, err := tx.exec(`INSERT INTO rollout_nodes (rollout, node, stage, rehearse, decision, state, deny, warn,
					compile_error, failures, previous_etag, etag, change, rehearsal, final) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
				ON CONFLICT (rollout, node) DO UPDATE SET stage = excluded.stage, rehearse = excluded.rehearse, decision = excluded.decision,
					state = excluded.state, deny = excluded.deny, warn = excluded.warn, compile_error = excluded.compile_error,
					failures = excluded.failures, previous_etag = excluded.previous_etag, etag = excluded.etag,
					change = COALESCE(excluded.change, rollout_nodes.change), rehearsal = excluded.rehearsal, final = excluded.final`,
				id, n.Node, n.Stage, n.Rehearse, n.Decision, n.State, r.deny, r.warn,
				n.CompileError, r.failures, n.PreviousEtag, n.Etag, r.change, r.rehears, n.Final); err != nil {
				return fmt.Errorf("node %s: %w", n.Node, err)
			}
		}
		for _, a := range w.Approvals {
			if err := approve(tx, a, now); err != nil {
				return fmt.Errorf("approving %s for %s: %w", a.Etag, a.Node, err)
			}
		}
		return nil
	})
	if err != nil {
		// Not id: when ctx ended first, the writer may still be setting it.
		return 0, fmt.Errorf("writing rollout of %s: %w", w.version(), err)
	}
	return id, nil
}

func (w RolloutWrite) version() string {
	if w.Rollout == nil {
		return "no version"
	}
	return w.Rollout.Version
}

func jsonOrNil(v any, empty bool) ([]byte, error) {
	if empty {
		return nil, nil
	}
	return json.Marshal(v)
}

// approve makes a.Etag node's approved catalog, keeping the one before.
// Two statements in the common case (a known node's catalog changes): a
// release writes thousands at once.
func approve(w *wtx, a Approval, now time.Time) error {
	res, err := w.exec(`INSERT INTO nodes (name, first_seen, catalog_etag, catalog_saved) VALUES (?, ?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET previous_etag = nodes.catalog_etag, catalog_etag = excluded.catalog_etag,
			catalog_saved = excluded.catalog_saved WHERE nodes.catalog_etag != excluded.catalog_etag`,
		a.Node, ns(now), a.Etag, ns(now))
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return err // already approved: no history row
	}
	_, err = w.exec(`INSERT INTO node_catalogs (node, at, etag) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`, a.Node, ns(now), a.Etag)
	return err
}

// PutCatalogs stores catalogs by etag without making them any node's
// approved catalog: a rollout's candidates. Bytes already stored under an
// etag are kept (only a new signature replaces the old). One write for
// them all.
func (s *Store) PutCatalogs(ctx context.Context, cats []CatalogRecord) error {
	if len(cats) == 0 {
		return nil
	}
	now := time.Now()
	// Compressed here, in the caller's goroutine: a plan's savers run
	// several at once, and the store's writer is one.
	packed := make([]CatalogRecord, len(cats))
	for i, c := range cats {
		c.Catalog = packCatalog(c.Catalog)
		packed[i] = c
	}
	cats = packed
	err := s.write(ctx, func(w *wtx) error {
		if w.d.pg {
			return putCatalogsPG(w, cats, now)
		}
		for _, c := range cats {
			sig := c.Signature
			if sig == nil {
				sig = []byte{}
			}
			if _, err := w.exec(`INSERT INTO catalogs (etag, version, catalog, signature, saved) VALUES (?, ?, ?, ?, ?)
				ON CONFLICT (etag) DO UPDATE SET signature = excluded.signature WHERE catalogs.signature != excluded.signature`,
				c.Etag, c.Version, c.Catalog, sig, ns(now)); err != nil {
				return fmt.Errorf("catalog %s: %w", c.Etag, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("storing %d catalogs: %w", len(cats), err)
	}
	return nil
}

// putCatalogsPG stores cats in one statement: on PostgreSQL each
// statement is a round trip, and a plan stores a catalog for every node.
// An etag twice in one statement would be a row updated twice, which
// PostgreSQL refuses: the last of them goes (one etag is one content).
func putCatalogsPG(w *wtx, cats []CatalogRecord, now time.Time) error {
	at := make(map[string]int, len(cats))
	etags, versions := make([]string, 0, len(cats)), make([]string, 0, len(cats))
	bodies, sigs := make([][]byte, 0, len(cats)), make([][]byte, 0, len(cats))
	for _, c := range cats {
		sig := c.Signature
		if sig == nil {
			sig = []byte{}
		}
		if i, ok := at[c.Etag]; ok {
			sigs[i] = sig
			continue
		}
		at[c.Etag] = len(etags)
		etags, versions = append(etags, c.Etag), append(versions, c.Version)
		bodies, sigs = append(bodies, c.Catalog), append(sigs, sig)
	}
	_, err := w.exec(`INSERT INTO catalogs (etag, version, catalog, signature, saved)
		SELECT e, v, c, s, ? FROM unnest(?::text[], ?::text[], ?::bytea[], ?::bytea[]) AS t(e, v, c, s)
		ON CONFLICT (etag) DO UPDATE SET signature = excluded.signature WHERE catalogs.signature != excluded.signature`,
		ns(now), etags, versions, bodies, sigs)
	if err != nil {
		return fmt.Errorf("%d catalogs: %w", len(etags), err)
	}
	return nil
}

const rolloutColumns = `id, version, previous_version, state, reason, created, updated, superseded_by, stages, fleet, environment`

func scanRollout(sc interface{ Scan(...any) error }) (Rollout, error) {
	var r Rollout
	var created, updated int64
	var stages []byte
	if err := sc.Scan(&r.ID, &r.Version, &r.PreviousVersion, &r.State, &r.Reason, &created, &updated, &r.SupersededBy, &stages, &r.Fleet, &r.Environment); err != nil {
		return r, err
	}
	r.Created, r.Updated = fromNS(created), fromNS(updated)
	if err := json.Unmarshal(stages, &r.Stages); err != nil {
		return r, fmt.Errorf("rollout %d: stages: %w", r.ID, err)
	}
	return r, nil
}

// Rollout returns the rollout id, or the newest when id is 0; ok is false
// when there is none.
func (s *Store) Rollout(ctx context.Context, id int64) (Rollout, bool, error) {
	q, args := `SELECT `+rolloutColumns+` FROM rollouts WHERE id = ?`, []any{id}
	if id == 0 {
		q, args = `SELECT `+rolloutColumns+` FROM rollouts ORDER BY id DESC LIMIT 1`, nil
	}
	r, err := scanRollout(s.rdb.QueryRowContext(ctx, q, args...))
	if errors.Is(err, sql.ErrNoRows) {
		return Rollout{}, false, nil
	}
	if err != nil {
		return Rollout{}, false, fmt.Errorf("reading rollout %d: %w", id, err)
	}
	return r, true, nil
}

// NewestRollout returns the newest rollout of any of the environments
// envs (pass "" too for the rollouts stored before environments); ok is
// false when there is none.
func (s *Store) NewestRollout(ctx context.Context, envs ...string) (Rollout, bool, error) {
	if len(envs) == 0 {
		return Rollout{}, false, nil
	}
	args := make([]any, len(envs))
	for i, e := range envs {
		args[i] = e
	}
	q := `SELECT ` + rolloutColumns + ` FROM rollouts WHERE environment IN (?` + strings.Repeat(", ?", len(envs)-1) + `) ORDER BY id DESC LIMIT 1`
	r, err := scanRollout(s.rdb.QueryRowContext(ctx, q, args...))
	if errors.Is(err, sql.ErrNoRows) {
		return Rollout{}, false, nil
	}
	if err != nil {
		return Rollout{}, false, fmt.Errorf("reading the newest rollout of %s: %w", strings.Join(envs, ", "), err)
	}
	return r, true, nil
}

// Rollouts returns at most limit rollouts older than before (any when
// before is 0), newest first.
func (s *Store) Rollouts(ctx context.Context, before int64, limit int) ([]Rollout, error) {
	if before <= 0 {
		before = 1<<63 - 1
	}
	rows, err := s.rdb.QueryContext(ctx, `SELECT `+rolloutColumns+` FROM rollouts WHERE id < ? ORDER BY id DESC LIMIT ?`, before, limitOr(limit, 100))
	if err != nil {
		return nil, fmt.Errorf("listing rollouts: %w", err)
	}
	defer rows.Close()
	var out []Rollout
	for rows.Next() {
		r, err := scanRollout(rows)
		if err != nil {
			return nil, fmt.Errorf("listing rollouts: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing rollouts: %w", err)
	}
	return out, nil
}

// RolloutNodeQuery selects nodes of one rollout, by name after After.
type RolloutNodeQuery struct {
	Rollout int64
	After   string
	// Through, when set, keeps only names up to it (a page of another
	// list).
	Through string
	Limit   int // 0: every one
	// Node keeps only that node.
	Node string
	// Interesting keeps the nodes worth a look: denied, failed, with a
	// compile error, or rehearsed with changes.
	Interesting bool
	// Changed keeps the nodes with a change.
	Changed bool
	// WithChange reads the change JSON too (it is left out otherwise).
	WithChange bool
}

// RolloutNodes returns a rollout's nodes as q says, sorted by name.
func (s *Store) RolloutNodes(ctx context.Context, q RolloutNodeQuery) ([]RolloutNode, error) {
	change := `NULL`
	if q.WithChange {
		change = `change`
	}
	var where []string
	args := []any{q.Rollout, q.After}
	where = append(where, `rollout = ?`, `node > ?`)
	if q.Through != "" {
		where = append(where, `node <= ?`)
		args = append(args, q.Through)
	}
	if q.Node != "" {
		where = append(where, `node = ?`)
		args = append(args, q.Node)
	}
	if q.Interesting {
		where = append(where, `(decision IN ('denied', 'compile-error') OR state = 'failed' OR failures IS NOT NULL
			OR (rehearsal IS NOT NULL AND `+s.d.pick(`json_extract(rehearsal, '$.Changed') + json_extract(rehearsal, '$.Failed')`,
			`(convert_from(rehearsal, 'UTF8')::jsonb->>'Changed')::bigint + (convert_from(rehearsal, 'UTF8')::jsonb->>'Failed')::bigint`)+` > 0))`)
	}
	if q.Changed {
		where = append(where, `decision != 'unchanged' AND change IS NOT NULL`)
	}
	query := `SELECT node, stage, rehearse, decision, state, deny, warn, compile_error, failures, previous_etag, etag, ` + change + `, rehearsal, final
		FROM rollout_nodes WHERE ` + strings.Join(where, " AND ") + ` ORDER BY node`
	if q.Limit > 0 {
		query += ` LIMIT ?`
		args = append(args, q.Limit)
	}
	rows, err := s.rdb.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("listing nodes of rollout %d: %w", q.Rollout, err)
	}
	defer rows.Close()
	var out []RolloutNode
	for rows.Next() {
		var n RolloutNode
		var deny, warn, failures, rehearsal []byte
		if err := rows.Scan(&n.Node, &n.Stage, &n.Rehearse, &n.Decision, &n.State, &deny, &warn, &n.CompileError, &failures,
			&n.PreviousEtag, &n.Etag, &n.Change, &rehearsal, &n.Final); err != nil {
			return nil, fmt.Errorf("listing nodes of rollout %d: %w", q.Rollout, err)
		}
		for _, f := range []struct {
			b []byte
			v any
		}{{deny, &n.Deny}, {warn, &n.Warn}, {failures, &n.Failures}, {rehearsal, &n.Rehearsal}} {
			if f.b == nil {
				continue
			}
			if err := json.Unmarshal(f.b, f.v); err != nil {
				return nil, fmt.Errorf("listing nodes of rollout %d: node %s: %w", q.Rollout, n.Node, err)
			}
		}
		out = append(out, n)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing nodes of rollout %d: %w", q.Rollout, err)
	}
	return out, nil
}

// RolloutCount is how many nodes of a rollout share a stage, a decision
// and a state (and, for rehearsals, a rehearsal stage and whether they
// rehearsed).
type RolloutCount struct {
	Stage     int
	Rehearse  int
	Decision  string
	State     string
	Rehearsed bool
	Nodes     int
}

// RolloutCounts counts a rollout's nodes by stage, decision and state.
func (s *Store) RolloutCounts(ctx context.Context, id int64) ([]RolloutCount, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT stage, rehearse, decision, state, rehearsal IS NOT NULL, COUNT(*) FROM rollout_nodes
		WHERE rollout = ? GROUP BY stage, rehearse, decision, state, rehearsal IS NOT NULL`, id)
	if err != nil {
		return nil, fmt.Errorf("counting nodes of rollout %d: %w", id, err)
	}
	defer rows.Close()
	var out []RolloutCount
	for rows.Next() {
		var c RolloutCount
		if err := rows.Scan(&c.Stage, &c.Rehearse, &c.Decision, &c.State, &c.Rehearsed, &c.Nodes); err != nil {
			return nil, fmt.Errorf("counting nodes of rollout %d: %w", id, err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("counting nodes of rollout %d: %w", id, err)
	}
	return out, nil
}
