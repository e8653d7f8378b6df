package fleet

import (
	"context"
	"os"
	"path/filepath"
	"time"

	"github.com/herdcm/herd/api/herdv1"
	"github.com/herdcm/herd/catalogs"
	"github.com/herdcm/herd/server/ca"
)

// AwaitRollout waits until the newest rollout is of a version other than
// from (the version served before the change the test made; "" for any)
// and ok holds for it, and returns it with every node (GetRollout with
// nodes "all"). It fails the test after timeout, printing the rollout as
// it last stood and what was awaited.
func (f *Fleet) AwaitRollout(timeout time.Duration, from, what string, ok func(*herdv1.GetRolloutResponse) bool) *herdv1.GetRolloutResponse {
	f.tb.Helper()
	deadline := time.Now().Add(timeout)
	var last any = "no rollout yet"
	for {
		resp, err := f.Rollout(0)
		switch {
		case err != nil:
			last = err
		case resp.GetRollout().GetVersion() == from:
			last = "the newest rollout is still of version " + from
		default:
			if ok(resp) {
				return resp
			}
			last = resp
		}
		if time.Now().After(deadline) {
			f.tb.Fatalf("waited %s for the rollout to be %s; it stands as: %v", timeout, what, last)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// Rollout returns rollout id (0: the newest) with every node, page by
// page.
func (f *Fleet) Rollout(id int64) (*herdv1.GetRolloutResponse, error) {
	all := &herdv1.GetRolloutResponse{}
	for token := ""; ; {
		resp, err := f.Admin.GetRollout(context.Background(), &herdv1.GetRolloutRequest{Id: id, Nodes: "all", PageToken: token})
		if err != nil {
			return nil, err
		}
		if all.Rollout == nil {
			all.Rollout, id = resp.Rollout, resp.GetRollout().GetId()
		}
		all.Nodes = append(all.Nodes, resp.Nodes...)
		if token = resp.NextPageToken; token == "" {
			return all, nil
		}
	}
}

// Stage returns the stage of r named name, or nil.
func Stage(r *herdv1.Rollout, name string) *herdv1.RolloutStage {
	for _, s := range r.GetStages() {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// Node returns the node named name of a GetRollout answer, or nil.
func Node(resp *herdv1.GetRolloutResponse, name string) *herdv1.RolloutNode {
	for _, n := range resp.GetNodes() {
		if n.Node == name {
			return n
		}
	}
	return nil
}

// Version is the site version the server serves.
func (f *Fleet) Version() string {
	f.tb.Helper()
	st, err := f.Admin.SiteStatus(context.Background(), &herdv1.SiteStatusRequest{})
	if err != nil {
		f.tb.Fatalf("site status: %v", err)
	}
	return st.Version
}

// SiteVersion is the version the server gives the site as it is on disk
// now. WriteSite writes its files one by one, and on a loaded machine the
// server may load them half-written first (a version of its own, with a
// rollout of its own): a test waits for this one.
func (f *Fleet) SiteVersion() string {
	f.tb.Helper()
	s, err := catalogs.Load(context.Background(), f.Site, catalogs.LoadOptions{})
	if err != nil {
		f.tb.Fatalf("loading the site as written: %v", err)
	}
	return s.Version
}

// Approved returns the etag of the catalog each node is approved to run
// (what its check-ins are served).
func (f *Fleet) Approved() map[string]string {
	f.tb.Helper()
	out := map[string]string{}
	for token := ""; ; {
		resp, err := f.Admin.ListNodes(context.Background(), &herdv1.ListNodesRequest{PageToken: token})
		if err != nil {
			f.tb.Fatalf("listing nodes: %v", err)
		}
		for _, n := range resp.Nodes {
			out[n.Name] = n.CatalogEtag
		}
		if token = resp.NextPageToken; token == "" {
			return out
		}
	}
}

// AdminDir writes admin credentials (admin.crt, admin.key, ca.crt, as
// `herd ca admin` does) into a new temporary directory, for tests that
// drive the server with the CLI.
func (f *Fleet) AdminDir(name string) string {
	f.tb.Helper()
	certPEM, keyPEM, err := f.Server.CA().IssueAdmin(context.Background(), name)
	if err != nil {
		f.tb.Fatalf("issuing admin credentials: %v", err)
	}
	dir := f.tb.TempDir()
	for file, b := range map[string][]byte{"admin.crt": certPEM, "admin.key": keyPEM, "ca.crt": ca.CertPEM(f.Server.CA().CACertDER())} {
		if err := os.WriteFile(filepath.Join(dir, file), b, 0o600); err != nil {
			f.tb.Fatal(err)
		}
	}
	return dir
}

// Addr is the server's gRPC address.
func (f *Fleet) Addr() string { return f.addr }
