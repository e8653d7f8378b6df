package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herdcm/herd/api/herdv1"
	"github.com/herdcm/herd/catalogs"
)

// hostTree lists every file of root outside the agent's state directory
// with its mode and content digest: what a run that changes nothing must
// leave as it was.
func hostTree(t *testing.T, root string) string {
	t.Helper()
	state := DefaultStateDir(root).String()
	var b strings.Builder
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == state {
			return filepath.SkipDir
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		sum := ""
		if fi.Mode().IsRegular() {
			c, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			s := sha256.Sum256(c)
			sum = hex.EncodeToString(s[:8])
		}
		rel, _ := filepath.Rel(root, p)
		fmt.Fprintf(&b, "%s %v %d %s %d\n", rel, fi.Mode(), fi.Size(), sum, fi.ModTime().UnixNano())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// awaitSpoolEmpty waits until the server has every report the agent made.
func (a *testAgent) awaitSpoolEmpty(t *testing.T) {
	t.Helper()
	waitFor(t, "the report spool to empty", func() bool {
		l, err := a.d.st.SpooledReports(context.Background())
		return err == nil && len(l) == 0
	})
}

func serverRun(r ranRun) bool { return r.why&TriggerServer != 0 }

// TestDaemonRehearses: a check-in's answer carries a rehearsal; after its
// own run the daemon runs the rehearsal once in noop, with its shipped
// files fetched so that noop compares content, and reports it (noop, the
// rehearsal's etag and version). The host is left as it was, the node's
// own catalog stays the cached one, and the same rehearsal asked again is
// not run twice.
func TestDaemonRehearses(t *testing.T) {
	t.Parallel()
	fsrv := newFakeServer(t)
	oldConf := []byte("workers 2\n")
	src1, ref1 := sourceRes("/srv/app.conf", "files/app.conf", oldConf)
	v1 := testCatalog("web-01", "v1", fileRes("/etc/motd", "v1\n"), src1)
	v1.Files = []catalogs.FileRef{ref1}
	etag1 := fsrv.publish(v1, map[string][]byte{ref1.Digest: oldConf}, false)

	a := newTestAgent(t, fsrv)
	a.start(t)
	if r := a.awaitRun(t, "the first run", anyRun); r.err != nil {
		t.Fatalf("first run: %v", r.err)
	}
	a.settle(t)
	a.awaitSpoolEmpty(t)
	before := hostTree(t, a.root)

	newConf := []byte("workers 8\n")
	src2, ref2 := sourceRes("/srv/app.conf", "files/app.conf", newConf)
	v2 := testCatalog("web-01", "v2", fileRes("/etc/motd", "v2\n"), src2, fileRes("/srv/extra", "x\n"))
	v2.Files = []catalogs.FileRef{ref2}
	reh := fsrv.rehearse(v2, map[string][]byte{ref2.Digest: newConf}, false, nil)
	// The server asks for a run with the catalog the node holds: the
	// check-in's answer brings the rehearsal.
	waitFor(t, "the Watch stream", func() bool { return fsrv.watching() > 0 })
	fsrv.sendWatch(&herdv1.WatchEvent{Etag: etag1, Version: "v1", Run: true})
	own := a.awaitRun(t, "the run the server asked for", serverRun)
	if own.err != nil || own.r == nil || own.r.CatalogDigest != etag1 || own.r.Noop {
		t.Fatalf("the node's own run = %+v, %v; want a real run of %s", own.r, own.err, etag1)
	}
	a.settle(t)
	a.awaitSpoolEmpty(t)

	got := fsrv.reportsOf(reh)
	if len(got) != 1 {
		t.Fatalf("%d reports of the rehearsal at the server, want 1", len(got))
	}
	r := got[0]
	if !r.Noop || r.Version != "v2" || r.Summary.GetChanged() != 3 || r.Summary.GetFailed() != 0 {
		t.Errorf("rehearsal report: noop %v, version %q, summary %v; want noop, v2, 3 would change", r.Noop, r.Version, r.Summary)
	}
	for _, e := range r.Events {
		if !e.Noop || e.Status != string(Changed) {
			t.Errorf("rehearsal event %s = %s (noop %v), want changed in noop", e.Id, e.Status, e.Noop)
		}
		if e.Id == "file:/srv/app.conf" && (len(e.Changes) == 0 || !strings.Contains(e.Changes[0].Diff, "+workers 8")) {
			t.Errorf("rehearsal event %s changes = %v, want a content diff from the fetched file", e.Id, e.Changes)
		}
	}
	if after := hostTree(t, a.root); after != before {
		t.Errorf("the rehearsal changed the host:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if !a.d.files.has(ref2.Digest) {
		t.Errorf("the rehearsal's file %s is not in the file cache", ref2.Digest)
	}
	if etag, _ := a.d.currentEtag(); etag != etag1 {
		t.Errorf("cached etag = %s, want the node's own %s", etag, etag1)
	}
	if _, etag, ok, err := a.d.st.loadCatalog(context.Background(), a.d.id.SigningKey, "web-01"); err != nil || !ok || etag != etag1 {
		t.Errorf("stored catalog = %s, %v, %v; want the node's own %s", etag, ok, err, etag1)
	}

	// The server asks again (it has not seen the report yet, say): the
	// rehearsal is not run again.
	ownBefore := len(fsrv.reportsOf(etag1))
	a.d.Trigger(TriggerManual)
	a.awaitRun(t, "a manual run", manualRun)
	a.settle(t)
	a.awaitSpoolEmpty(t)
	if n := len(fsrv.reportsOf(etag1)); n <= ownBefore {
		t.Fatalf("the manual run's own report did not arrive (%d, had %d)", n, ownBefore)
	}
	if n := len(fsrv.reportsOf(reh)); n != 1 {
		t.Errorf("%d reports of the rehearsal after it was asked again, want still 1", n)
	}
}

// TestDaemonRefusesBadRehearsals: a rehearsal that does not verify like a
// catalog (signature, etag, node) is never run: no report of it, the host
// untouched.
func TestDaemonRefusesBadRehearsals(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		node   string
		badSig bool
		mangle func(*herdv1.Rehearsal)
	}{
		{name: "signed by another key", node: "web-01", badSig: true},
		{name: "bytes changed after signing", node: "web-01", mangle: func(r *herdv1.Rehearsal) {
			r.Catalog = append([]byte(nil), r.Catalog...)
			r.Catalog[len(r.Catalog)-2] ^= 1
		}},
		{name: "etag not its digest", node: "web-01", mangle: func(r *herdv1.Rehearsal) {
			r.Etag = catalogs.Digest([]byte("something else"))
		}},
		{name: "another node's", node: "web-02"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fsrv := newFakeServer(t)
			etag1 := fsrv.publish(testCatalog("web-01", "v1", fileRes("/etc/motd", "v1\n")), nil, false)
			a := newTestAgent(t, fsrv)
			a.start(t)
			a.awaitRun(t, "the first run", anyRun)
			a.settle(t)
			a.awaitSpoolEmpty(t)
			before := hostTree(t, a.root)

			fsrv.rehearse(testCatalog(tt.node, "v2", fileRes("/etc/motd", "v2\n")), nil, tt.badSig, tt.mangle)
			a.d.Trigger(TriggerManual)
			if r := a.awaitRun(t, "a manual run", manualRun); r.err != nil || r.r == nil || r.r.CatalogDigest != etag1 {
				t.Fatalf("the node's own run = %+v, %v", r.r, r.err)
			}
			a.settle(t)
			a.awaitSpoolEmpty(t)
			fsrv.mu.Lock()
			defer fsrv.mu.Unlock()
			for _, r := range fsrv.reports {
				if r.Noop || r.CatalogDigest != etag1 {
					t.Errorf("report %s: noop %v, catalog %s; want only the node's own runs of %s", r.RunId, r.Noop, r.CatalogDigest, etag1)
				}
			}
			if after := hostTree(t, a.root); after != before {
				t.Errorf("the host changed:\nbefore:\n%s\nafter:\n%s", before, after)
			}
		})
	}
}

// TestWatchRunTriggersRun: a Watch event with run = true naming the
// catalog the node holds makes a run, with a check-in, at once.
func TestWatchRunTriggersRun(t *testing.T) {
	t.Parallel()
	fsrv := newFakeServer(t)
	etag := fsrv.publish(testCatalog("web-01", "v1", fileRes("/etc/motd", "v1\n")), nil, false)
	a := newTestAgent(t, fsrv)
	a.start(t)
	a.awaitRun(t, "the first run", anyRun)
	a.settle(t)
	waitFor(t, "the Watch stream", func() bool { return fsrv.watching() > 0 })
	checkins := len(fsrv.checkinLog())

	fsrv.sendWatch(&herdv1.WatchEvent{Etag: etag, Version: "v1", Run: true})
	r := a.awaitRun(t, "the run the server asked for", serverRun)
	if r.err != nil || r.r == nil || r.r.CatalogDigest != etag {
		t.Fatalf("run = %+v, %v; want a run of %s", r.r, r.err, etag)
	}
	log := fsrv.checkinLog()
	if len(log) <= checkins || log[len(log)-1].answer != herdv1.CheckinResponse_UNCHANGED {
		t.Errorf("check-ins after the event = %+v (had %d), want one more, answered unchanged", log, checkins)
	}
}
