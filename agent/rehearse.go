package agent

import (
	"context"
	"slices"
	"time"

	"github.com/herdcm/herd/api/herdv1"
	"github.com/herdcm/herd/catalogs"
	"github.com/herdcm/herd/facts"
)

// A rehearsal is a rollout's question to a node: what would this catalog
// change here? The check-in's answer carries it (CheckinResponse.rehearsal)
// beside the node's own catalog; the daemon verifies it as it verifies a
// catalog, runs it once in noop after its own run, and sends that noop
// report (its catalog_digest is the rehearsal's etag). A rehearsal is
// never applied, never cached as the node's catalog, never drift-watched:
// the node goes on applying the catalog it holds. Its static files are
// fetched into the file cache by digest like any, so that noop compares
// their content; the next catalog change's cleaning removes them unless
// that catalog ships them too (the rollout releasing what was rehearsed).

// keepRehearsed is how many rehearsal etags the daemon remembers as run.
const keepRehearsed = 16

// rehearse verifies and runs a rehearsal, and spools its report. One that
// does not verify is logged and never run; one already rehearsed in this
// daemon's life is not run again (the server asks on every check-in until
// the report reaches it).
func (d *Daemon) rehearse(ctx context.Context, reh *herdv1.Rehearsal) {
	if slices.Contains(d.rehearsed, reh.Etag) {
		d.log.Debug("rehearsal already run; its report is on its way", "etag", reh.Etag)
		return
	}
	cat, err := acceptCatalog(d.id.SigningKey, d.id.Node, reh.Etag, reh.Catalog, reh.Signature)
	if err != nil {
		d.log.Error("refused a rehearsal from the server: not run", "etag", reh.Etag, "version", reh.Version, "err", err)
		return
	}
	runs := d.runs
	runs.Noop = true
	// The terminal view shows the node's own runs: a rehearsal's "would
	// change" lines there would read as this host's drift.
	runs.Emit = nil
	r, _, err := runs.run(ctx, &rehearsalSource{d: d, cat: cat, etag: reh.Etag}, runCall{state: d.st, services: d.runServices})
	if err != nil {
		// Not remembered: the next check-in's answer asks again.
		d.log.Error("rehearsal not run", "etag", reh.Etag, "err", err)
		return
	}
	d.spool(ctx, r)
	if len(d.rehearsed) == keepRehearsed {
		d.rehearsed = slices.Delete(d.rehearsed, 0, 1)
	}
	d.rehearsed = append(d.rehearsed, reh.Etag)
	d.log.Info("rehearsal done", "run", r.RunID, "etag", reh.Etag, "version", r.Version,
		"would_change", r.Summary.Changed, "failed", r.Summary.Failed, "in_sync", r.Summary.InSync,
		"duration", r.Duration.Round(time.Millisecond))
}

// rehearsalSource hands the run a verified rehearsal catalog, its files
// fetched into the cache first.
type rehearsalSource struct {
	d    *Daemon
	cat  *catalogs.Catalog
	etag string
}

func (s *rehearsalSource) catalog(ctx context.Context, _ facts.Facts, mark func(string)) (*sourced, error) {
	d := s.d
	if err := fetchFiles(ctx, d.node, d.files, s.cat); err != nil {
		// Only the resources that need a missing file fail.
		d.log.Warn("some files of the rehearsal could not be fetched", "err", err)
	}
	mark("files")
	return &sourced{node: d.id.Node, cat: s.cat, digest: s.etag, files: d.files.files(s.cat)}, nil
}
