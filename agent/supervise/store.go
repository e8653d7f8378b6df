package supervise

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Store keeps one Record per service across agent restarts. The supervisor
// saves a service's record from that service's loop only, so calls for one
// name never overlap; calls for different names may. The agent backs it
// with its sqlite state; DirStore is a standalone one.
type Store interface {
	// Load returns every record.
	Load(ctx context.Context) ([]Record, error)
	// Save writes r, replacing the record of the same name. When Save
	// returns nil the record must survive a crash.
	Save(ctx context.Context, r Record) error
	// Delete removes the record of name; a missing record is no error.
	Delete(ctx context.Context, name string) error
}

// Record is what survives an agent restart about one service: enough to
// find its process again (and to tell it from an unrelated process that
// reused its pid), to stop it, and to go on supervising it.
type Record struct {
	Name string `json:"name"`
	// Spec is the normalized spec the process runs with, Digest its digest.
	// Digest is empty for a service found by its cgroup without a record:
	// its spec is unknown, and only an Ensure starts it again.
	Spec   Spec   `json:"spec"`
	Digest string `json:"digest"`
	State  State  `json:"state"`
	// PID, PGID, StartTicks and BootID identify the running process; PID
	// is 0 when none runs. A process is the recorded one only when the
	// boot id and its start time (field 22 of /proc/PID/stat) both match.
	PID        int    `json:"pid,omitempty"`
	PGID       int    `json:"pgid,omitempty"`
	StartTicks uint64 `json:"start_ticks,omitempty"`
	BootID     string `json:"boot_id,omitempty"`
	// Cgroup is the service's cgroup directory; empty when it runs in a
	// process group only.
	Cgroup    string    `json:"cgroup,omitempty"`
	StartedAt time.Time `json:"started_at,omitzero"`
	// Restarts counts automatic restarts since the last start on request.
	Restarts int `json:"restarts"`
	// Policy is the restart policy's state (its Count), so that an agent
	// restart does not reset a crash loop.
	Policy Policy `json:"policy"`
	// RetryAt is when a service in backoff starts again.
	RetryAt  time.Time `json:"retry_at,omitzero"`
	LastExit *ExitInfo `json:"last_exit,omitempty"`
}

// DirStore is a Store that keeps each record as DIR/NAME.json, written
// atomically: a temporary file, fsync, rename, fsync of the directory. The
// records hold the services' environments, so the directory and files are
// readable by their owner only.
type DirStore struct {
	dir string
}

var _ Store = (*DirStore)(nil)

// NewDirStore returns a DirStore keeping its files in dir, which it makes on
// first use.
func NewDirStore(dir string) *DirStore { return &DirStore{dir: dir} }

// Load reads every record in the directory. A missing directory holds none.
func (d *DirStore) Load(ctx context.Context) ([]Record, error) {
	recs, bad, err := d.loadEach(ctx)
	if err != nil {
		return nil, err
	}
	if len(bad) > 0 {
		return nil, bad[0]
	}
	return recs, nil
}

// loadEach reads every record in the directory; a file that does not read
// as its record is an error in bad, and the others are still returned.
func (d *DirStore) loadEach(ctx context.Context) (recs []Record, bad []error, err error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	ents, err := os.ReadDir(d.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("loading service records: %w", err)
	}
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || !e.Type().IsRegular() || checkName(name) != nil {
			continue // temporary files, links and strangers
		}
		path := filepath.Join(d.dir, e.Name())
		b, err := os.ReadFile(path)
		if err != nil {
			bad = append(bad, fmt.Errorf("loading service record %s: %w", path, err))
			continue
		}
		r, err := parseRecord(name, b)
		if err != nil {
			bad = append(bad, fmt.Errorf("loading service record %s: %w", path, err))
			continue
		}
		recs = append(recs, r)
	}
	return recs, bad, nil
}

// parseRecord decodes the record file of service name. It must name that
// service, and no negative pid or process group: kill(2) takes one for a
// whole process group, or -1 for every process.
func parseRecord(name string, b []byte) (Record, error) {
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return Record{}, err
	}
	if r.Name != name {
		return Record{}, fmt.Errorf("it names %q", r.Name)
	}
	if r.PID < 0 || r.PGID < 0 {
		return Record{}, fmt.Errorf("negative pid %d or process group %d", r.PID, r.PGID)
	}
	return r, nil
}

// mirrorStore is the Store a Supervisor writes when Options.RecordDir is
// set: every record goes to the main store and to a DirStore beside it, so
// that losing one (the agent's database moved aside as corrupt) loses no
// service. Load reads the main store only; New reads the side one itself.
type mirrorStore struct {
	main Store
	side *DirStore
}

func (m mirrorStore) Load(ctx context.Context) ([]Record, error) { return m.main.Load(ctx) }

func (m mirrorStore) Save(ctx context.Context, r Record) error {
	if err := m.main.Save(ctx, r); err != nil {
		return err
	}
	return m.side.Save(ctx, r)
}

// Delete removes the side record first: should the main store then fail,
// the service is still known in both, never resurrected from the side.
func (m mirrorStore) Delete(ctx context.Context, name string) error {
	if err := m.side.Delete(ctx, name); err != nil {
		return err
	}
	return m.main.Delete(ctx, name)
}

// Save writes r atomically.
func (d *DirStore) Save(ctx context.Context, r Record) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := checkName(r.Name); err != nil {
		return fmt.Errorf("saving service record: %w", err)
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("saving service record %s: %w", r.Name, err)
	}
	if err := os.MkdirAll(d.dir, 0o700); err != nil {
		return fmt.Errorf("saving service record %s: %w", r.Name, err)
	}
	if err := writeAtomic(filepath.Join(d.dir, r.Name+".json"), append(b, '\n')); err != nil {
		return fmt.Errorf("saving service record %s: %w", r.Name, err)
	}
	return nil
}

// Delete removes the record of name.
func (d *DirStore) Delete(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := checkName(name); err != nil {
		return fmt.Errorf("deleting service record: %w", err)
	}
	err := os.Remove(filepath.Join(d.dir, name+".json"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("deleting service record %s: %w", name, err)
	}
	return syncDir(d.dir)
}

// writeAtomic replaces path with b so that a crash leaves either the old
// or the new content, never a mix.
func writeAtomic(path string, b []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after a successful rename this fails harmlessly
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	return nil
}
