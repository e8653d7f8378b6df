package server

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/herdcm/herd/api/herdv1"
)

// rolloutSite is a small site whose catalogs move with data/common.toml's
// greeting: each node gets /etc/motd saying it.
func rolloutSite(herdToml, greeting string) map[string]string {
	return map[string]string{
		"herd.toml":  herdToml,
		"nodes.toml": "[[node]]\nroles = [\"r\"]\n",
		"roles/r.toml": `
[[file]]
path = "/etc/motd"
content = "{{ .params.greeting }} {{ .node }} on {{ .facts.os.family }}\n"
`,
		"data/common.toml": fmt.Sprintf("greeting = %q\n", greeting),
	}
}

// rolloutHarness is a real server (real TLS on 127.0.0.1, sqlite in a
// temp dir) and nodes that check in and report as agents would.
type rolloutHarness struct {
	t     *testing.T
	s     *Server
	site  string
	dir   string
	admin herdv1.AdminClient
	nodes map[string]*fakeNode

	adminCert *tls.Certificate
	// set, when not nil, changes the server's options on every start.
	set func(*Options)
}

type fakeNode struct {
	name   string
	cert   tls.Certificate
	c      herdv1.NodeClient
	etag   string // what it runs
	family string // its facts' os.family
	runs   int
}

func newRolloutHarness(t *testing.T, files map[string]string, nodes ...string) *rolloutHarness {
	t.Helper()
	return newHarnessWith(t, nil, files, nodes...)
}

// newHarnessWith is newRolloutHarness with the server's options changed
// by set.
func newHarnessWith(t *testing.T, set func(*Options), files map[string]string, nodes ...string) *rolloutHarness {
	t.Helper()
	h := &rolloutHarness{t: t, site: t.TempDir(), dir: t.TempDir(), nodes: map[string]*fakeNode{}, set: set}
	writeFiles(t, h.site, files)
	h.start()
	for _, n := range nodes {
		cert := enroll(t, h.s, n)
		fn := &fakeNode{name: n, cert: cert, c: herdv1.NewNodeClient(dial(t, h.s, &cert)), family: "debian"}
		h.nodes[n] = fn
		resp := checkin(t, fn.c, map[string]any{"os": map[string]any{"family": "debian"}}, "")
		if resp.Status != herdv1.CheckinResponse_NEW_CATALOG {
			t.Fatalf("first check-in of %s = %v, want NEW_CATALOG", n, resp.Status)
		}
		fn.etag = resp.Etag
		h.report(n, resp.Etag, false, nil)
	}
	return h
}

// start starts (or restarts) the server on the harness's site and dir.
func (h *rolloutHarness) start() {
	h.t.Helper()
	opts := Options{
		Site: h.site, Dir: h.dir, Listen: "127.0.0.1:0", HTTPListen: "off", Debounce: time.Hour,
		Log: slog.New(slog.NewTextHandler(testLog{h.t}, nil)),
	}
	if h.set != nil {
		h.set(&opts)
	}
	s, err := New(context.Background(), opts)
	if err != nil {
		h.t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { s.Close() })
	h.s = s
	if h.adminCert == nil {
		cert := admin(h.t, s)
		h.adminCert = &cert
	}
	h.admin = herdv1.NewAdminClient(dial(h.t, s, h.adminCert))
	for _, fn := range h.nodes {
		fn.c = herdv1.NewNodeClient(dial(h.t, s, &fn.cert))
	}
}

// restart stops the server and starts a new one on the same state.
func (h *rolloutHarness) restart() {
	h.t.Helper()
	if err := h.s.Close(); err != nil {
		h.t.Fatal(err)
	}
	h.start()
}

// commit changes the site and loads it, as the watcher would.
func (h *rolloutHarness) commit(files map[string]string) {
	h.t.Helper()
	writeFiles(h.t, h.site, files)
	if err := h.s.reload(context.Background()); err != nil {
		h.t.Fatal(err)
	}
}

// checkin checks node in by facts digest and takes a new catalog as an
// agent would; it returns the answer.
func (h *rolloutHarness) checkin(node string) *herdv1.CheckinResponse {
	h.t.Helper()
	return h.checkinFacts(node, "")
}

// checkinFacts checks node in; a family not "" sends new facts with it.
func (h *rolloutHarness) checkinFacts(node, family string) *herdv1.CheckinResponse {
	h.t.Helper()
	fn := h.nodes[node]
	if family != "" {
		fn.family = family
	}
	b, d := factsJSON(h.t, map[string]any{"os": map[string]any{"family": fn.family}})
	req := &herdv1.CheckinRequest{FactsDigest: d, CatalogEtag: fn.etag}
	if family != "" {
		req.FactsJson = b
	}
	resp, err := fn.c.Checkin(context.Background(), req)
	if err != nil {
		h.t.Fatalf("Checkin(%s): %v", node, err)
	}
	if resp.Status == herdv1.CheckinResponse_NEW_CATALOG {
		fn.etag = resp.Etag
	}
	return resp
}

// report sends a report of node's run of etag; failed names failed
// resources.
func (h *rolloutHarness) report(node, etag string, noop bool, failed []string, services ...*herdv1.ServiceHealth) {
	h.t.Helper()
	fn := h.nodes[node]
	fn.runs++
	r := &herdv1.Report{RunId: fmt.Sprintf("%s-%d", node, fn.runs), CatalogDigest: etag, Version: "version-of-" + etag, Noop: noop, StartedUnixNs: time.Now().UnixNano(),
		Summary: &herdv1.Summary{Resources: 1, InSync: 1}, Services: services}
	if noop {
		r.Summary = &herdv1.Summary{Resources: 1, Changed: 1}
	}
	for _, id := range failed {
		r.Events = append(r.Events, &herdv1.Event{Id: id, Type: "file", Status: "failed", Error: "permission denied", Source: "roles/web.toml:4"})
		r.Summary = &herdv1.Summary{Resources: 1, Failed: 1}
	}
	if _, err := fn.c.SendReport(context.Background(), &herdv1.SendReportRequest{Report: r}); err != nil {
		h.t.Fatalf("SendReport(%s): %v", node, err)
	}
	// The controller has the report once every op queued before this
	// one is handled.
	if err := h.s.envs.defaultEnv().ctl.sync(context.Background()); err != nil {
		h.t.Fatal(err)
	}
}

// get returns the newest rollout with all its nodes.
func (h *rolloutHarness) get() (*herdv1.Rollout, map[string]*herdv1.RolloutNode) {
	h.t.Helper()
	resp, err := h.admin.GetRollout(context.Background(), &herdv1.GetRolloutRequest{Nodes: "all"})
	if err != nil {
		h.t.Fatalf("GetRollout: %v", err)
	}
	nodes := map[string]*herdv1.RolloutNode{}
	for _, n := range resp.Nodes {
		nodes[n.Node] = n
	}
	// The tallies the controller keeps as nodes move are a count of the
	// nodes' states.
	err = h.s.envs.defaultEnv().ctl.do(context.Background(), func(c *controller) error {
		if c.cur == nil {
			return nil
		}
		kept := slices.Clone(c.cur.tally)
		c.cur.index()
		if !slices.Equal(kept, c.cur.tally) {
			return fmt.Errorf("stage tallies %+v, counted %+v", kept, c.cur.tally)
		}
		return nil
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return resp.Rollout, nodes
}

// stageStates maps each stage of r to its state.
func stageStates(r *herdv1.Rollout) map[string]string {
	out := map[string]string{}
	for _, st := range r.Stages {
		out[st.Name] = st.State
	}
	return out
}

// etags returns what every node runs.
func (h *rolloutHarness) etags() map[string]string {
	out := map[string]string{}
	for n, fn := range h.nodes {
		out[n] = fn.etag
	}
	return out
}

// released returns the nodes whose check-in now gets a catalog other
// than the one in before (and takes it).
func (h *rolloutHarness) moved(before map[string]string) []string {
	h.t.Helper()
	var out []string
	for _, n := range sortedKeys(h.nodes) {
		h.checkin(n)
		if h.nodes[n].etag != before[n] {
			out = append(out, n)
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }
