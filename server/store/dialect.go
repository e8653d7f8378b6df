package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/mattn/go-sqlite3"
)

// dialect is the seam between the store's one set of queries and the two
// databases it runs on. The queries are written for sqlite, with ? or ?N
// placeholders; on PostgreSQL each is rewritten once ($N) and cached, and
// the few that cannot be said the same way in both are chosen with pick.
// Everything else (ON CONFLICT upserts, RETURNING, savepoints, partial
// indexes) is the same SQL in both.
type dialect struct {
	pg bool
	// rebound caches each query's PostgreSQL form by its sqlite form.
	rebound *sync.Map
}

var (
	sqliteDialect = dialect{}
	pgDialect     = dialect{pg: true, rebound: new(sync.Map)}
)

// pick returns the query written for this dialect.
func (d dialect) pick(sqlite, postgres string) string {
	if d.pg {
		return postgres
	}
	return sqlite
}

// q returns query in this dialect's placeholders.
func (d dialect) q(query string) string {
	if !d.pg {
		return query
	}
	if v, ok := d.rebound.Load(query); ok {
		return v.(string)
	}
	r := rebind(query)
	d.rebound.Store(query, r)
	return r
}

// args converts arguments for this dialect: sqlite keeps a Go bool as the
// integer 0 or 1 in an INTEGER column, and PostgreSQL's BIGINT needs the
// integer itself. PostgreSQL's text also refuses a NUL byte and invalid
// UTF-8, which sqlite keeps: a command's output with either would make a
// report that can never be stored, so both become U+FFFD there.
func (d dialect) args(args []any) []any {
	if !d.pg {
		return args
	}
	copied := false
	set := func(i int, v any) {
		if !copied {
			// The caller's slice is not ours to change.
			args, copied = append([]any(nil), args...), true
		}
		args[i] = v
	}
	for i, a := range args {
		switch v := a.(type) {
		case bool:
			if v {
				set(i, int64(1))
			} else {
				set(i, int64(0))
			}
		case string:
			if s, ok := pgText(v); !ok {
				set(i, s)
			}
		case []string:
			var out []string
			for j, s := range v {
				if t, ok := pgText(s); !ok {
					if out == nil {
						out = append([]string(nil), v...)
					}
					out[j] = t
				}
			}
			if out != nil {
				set(i, out)
			}
		}
	}
	return args
}

// pgText returns s as PostgreSQL's text takes it, and whether it was so
// already.
func pgText(s string) (string, bool) {
	if utf8.ValidString(s) && !strings.Contains(s, "\x00") {
		return s, true
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD"), false
}

// rebind turns sqlite placeholders into PostgreSQL's: ?N becomes $N and a
// bare ? becomes $(the largest number so far + 1), as sqlite numbers
// them. Quoted strings and identifiers are left alone.
func rebind(query string) string {
	var b strings.Builder
	b.Grow(len(query) + 16)
	largest := 0
	for i := 0; i < len(query); i++ {
		c := query[i]
		switch c {
		case '\'', '"':
			j := strings.IndexByte(query[i+1:], c)
			if j < 0 {
				b.WriteString(query[i:])
				return b.String()
			}
			b.WriteString(query[i : i+j+2])
			i += j + 1
		case '?':
			j := i + 1
			for j < len(query) && query[j] >= '0' && query[j] <= '9' {
				j++
			}
			n := largest + 1
			if j > i+1 {
				n, _ = strconv.Atoi(query[i+1 : j])
			}
			largest = max(largest, n)
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			i = j - 1
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// isUnique reports whether err is a violated unique index: pgIndex by
// its name on PostgreSQL, and on sqlite, which names no index, one on
// sqliteColumns ("table.column, ..." as its message spells them).
func isUnique(err error, pgIndex, sqliteColumns string) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "23505" && pe.ConstraintName == pgIndex
	}
	var se sqlite3.Error
	if errors.As(err, &se) {
		return se.ExtendedCode == sqlite3.ErrConstraintUnique && strings.HasSuffix(se.Error(), "failed: "+sqliteColumns)
	}
	return false
}

// readDB is the read-only pool, speaking the store's dialect: its methods
// shadow *sql.DB's so that every read rewrites its query the same way.
type readDB struct {
	*sql.DB
	d dialect
}

// QueryContext is (*sql.DB).QueryContext in the store's dialect.
func (r *readDB) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return r.DB.QueryContext(ctx, r.d.q(query), r.d.args(args)...)
}

// QueryRowContext is (*sql.DB).QueryRowContext in the store's dialect.
func (r *readDB) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	return r.DB.QueryRowContext(ctx, r.d.q(query), r.d.args(args)...)
}

// ExecContext is (*sql.DB).ExecContext in the store's dialect.
func (r *readDB) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return r.DB.ExecContext(ctx, r.d.q(query), r.d.args(args)...)
}

// QueryRow is QueryRowContext without a context, for tests.
func (r *readDB) QueryRow(query string, args ...any) *sql.Row {
	return r.QueryRowContext(context.Background(), query, args...)
}

// Query is QueryContext without a context, for tests.
func (r *readDB) Query(query string, args ...any) (*sql.Rows, error) {
	return r.QueryContext(context.Background(), query, args...)
}

// Exec is ExecContext without a context, for tests.
func (r *readDB) Exec(query string, args ...any) (sql.Result, error) {
	return r.ExecContext(context.Background(), query, args...)
}

// BeginTx starts a read transaction. On PostgreSQL it is REPEATABLE READ:
// its statements see one snapshot, as a sqlite read transaction does,
// where READ COMMITTED would give each statement its own.
func (r *readDB) BeginTx(ctx context.Context, opts *sql.TxOptions) (*readTx, error) {
	if r.d.pg {
		o := sql.TxOptions{Isolation: sql.LevelRepeatableRead}
		if opts != nil {
			o.ReadOnly = opts.ReadOnly
		}
		opts = &o
	}
	tx, err := r.DB.BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	return &readTx{Tx: tx, d: r.d}, nil
}

// readTx is a read transaction speaking the store's dialect.
type readTx struct {
	*sql.Tx
	d dialect
}

// QueryContext is (*sql.Tx).QueryContext in the store's dialect.
func (t *readTx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return t.Tx.QueryContext(ctx, t.d.q(query), t.d.args(args)...)
}

// QueryRowContext is (*sql.Tx).QueryRowContext in the store's dialect.
func (t *readTx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	return t.Tx.QueryRowContext(ctx, t.d.q(query), t.d.args(args)...)
}

// IsPostgres reports whether a store setting names a PostgreSQL database
// (a postgres:// or postgresql:// URL) rather than a sqlite file.
func IsPostgres(location string) bool {
	l := strings.ToLower(location)
	return strings.HasPrefix(l, "postgres://") || strings.HasPrefix(l, "postgresql://")
}

// CheckLocation checks a store setting without opening it: a PostgreSQL
// URL must parse as one (host, port, parameters), and anything else with
// a scheme is refused rather than taken for a sqlite file named
// "mysql://…". Its errors show the URL redacted.
func CheckLocation(location string) error {
	if location == "" {
		return errors.New("the store setting is empty: want a sqlite file or a postgres:// URL")
	}
	if IsPostgres(location) {
		if _, err := pgx.ParseConfig(location); err != nil {
			// pgx's own message is left out: a URL that does not parse
			// cannot be told apart from its password.
			return fmt.Errorf("store %s is not a PostgreSQL URL that can be used (check its host, port and parameters)", Redact(location))
		}
		return nil
	}
	if i := strings.Index(location, "://"); i > 0 && !strings.ContainsAny(location[:i], "/.") {
		// Only the scheme: the rest may hold another database's password.
		return fmt.Errorf("store: want a sqlite file or a postgres:// URL, not a %s:// URL", location[:i])
	}
	return nil
}

// Redact returns a store setting fit for logs and errors: a PostgreSQL
// URL without its password (in the user part or a password parameter),
// a sqlite path as it is. A URL that does not parse is replaced whole,
// since where its password sits cannot be told.
func Redact(location string) string {
	if !IsPostgres(location) {
		return location
	}
	u, err := url.Parse(location)
	if err != nil {
		return "postgres://(unparsable URL)"
	}
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
	}
	q := u.Query()
	for k := range q {
		if strings.Contains(strings.ToLower(k), "password") {
			q.Set(k, "xxxxx")
		}
	}
	// Re-encoded always: a parameter Query could not parse is dropped
	// rather than passed through unread.
	u.RawQuery = q.Encode()
	u.Fragment, u.RawFragment = "", ""
	return u.String()
}
