package agent

import "path/filepath"

// StateDir is the agent's state directory, ROOT/var/lib/herd unless set:
// the one place that knows its layout, so that the daemon, herd apply,
// the CLI and tests name the same files.
type StateDir string

// DefaultStateDir is the state directory of the host at root.
func DefaultStateDir(root string) StateDir {
	if root == "" {
		root = "/"
	}
	return StateDir(filepath.Join(root, "var/lib/herd"))
}

// StateDirOr returns dir when set, else root's default.
func StateDirOr(dir, root string) StateDir {
	if dir != "" {
		return StateDir(dir)
	}
	return DefaultStateDir(root)
}

// String returns the directory's path.
func (d StateDir) String() string { return string(d) }

// DB is the sqlite state: run history, catalog cache, report spool,
// backups index, the supervisor's records.
func (d StateDir) DB() string { return filepath.Join(string(d), "state.db") }

// TLS holds the node's identity (key, certificate, CA, server signing key).
func (d StateDir) TLS() string { return filepath.Join(string(d), "tls") }

// Content holds the contents runs replaced, by digest (herd backups).
func (d StateDir) Content() string { return filepath.Join(string(d), "content") }

// Files caches the cached catalog's static files, by digest.
func (d StateDir) Files() string { return filepath.Join(string(d), "files") }

// Logs holds the supervised services' logs.
func (d StateDir) Logs() string { return filepath.Join(string(d), "logs") }

// ServiceRecords holds the supervisor's records again, one file per
// service, beside the database: so that services survive the database
// being moved aside as corrupt (supervise.Options.RecordDir).
func (d StateDir) ServiceRecords() string { return filepath.Join(string(d), "supervise") }

// SuperviseLock is the lock of the state's one supervisor owner.
func (d StateDir) SuperviseLock() string { return filepath.Join(string(d), SuperviseLockFile) }

// ControlSocket is where the supervisor's owner serves it.
func (d StateDir) ControlSocket() string { return filepath.Join(string(d), ControlSocketFile) }

// Lock is the run lock.
func (d StateDir) Lock() string { return filepath.Join(string(d), "run.lock") }

// CorruptDir holds state databases found corrupt, moved aside.
func (d StateDir) CorruptDir() string { return filepath.Join(string(d), "corrupt") }
