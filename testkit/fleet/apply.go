package fleet

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herdcm/herd/agent"
	"github.com/herdcm/herd/agent/resources"
)

// Apply runs a masterless `herd apply` of site as node on the sandbox at
// root, with the real supervisor. Every service it starts is stopped when
// the test ends. It fails the test if the run could not start.
func Apply(tb testing.TB, site, root, node string, noop bool) *agent.Report {
	tb.Helper()
	tb.Cleanup(func() { StopServices(tb, root) })
	r, err := agent.Apply(context.Background(), agent.ApplyOptions{
		Site: site, Root: root, Node: node, Noop: noop,
		Services: func(ctx context.Context, st *agent.State) (resources.Services, func(), error) {
			s, err := agent.NewServices(ctx, st, root, nil)
			if err != nil {
				return nil, nil, err
			}
			return s, func() { s.Close() }, nil
		},
	})
	if err != nil {
		tb.Fatalf("herd apply %s on %s: %v", node, root, err)
	}
	return r
}

// MustApply is Apply that also fails the test when a resource failed or
// was skipped, listing them.
func MustApply(tb testing.TB, site, root, node string) *agent.Report {
	tb.Helper()
	r := Apply(tb, site, root, node, false)
	var bad []string
	for _, e := range r.Events {
		if e.Status == agent.Failed || e.Status == agent.Skipped {
			bad = append(bad, e.ID+": "+e.Error+e.Cause)
		}
	}
	if len(bad) > 0 {
		tb.Fatalf("herd apply %s: %d resources failed or were skipped:\n%s", node, len(bad), strings.Join(bad, "\n"))
	}
	return r
}

// StopServices stops every service the supervisor runs for root.
func StopServices(tb testing.TB, root string) {
	st, err := agent.OpenState(agent.DefaultStateDir(root).String())
	if err != nil {
		return
	}
	defer st.Close()
	s, err := agent.NewServices(context.Background(), st, root, nil)
	if err != nil {
		tb.Errorf("stopping services of %s: %v", root, err)
		return
	}
	defer s.Close()
	for _, status := range s.Supervisor().List() {
		if err := s.Stop(context.Background(), status.Name); err != nil {
			tb.Errorf("stopping %s: %v", status.Name, err)
		}
	}
}

// Changed returns the ids of the resources a run changed.
func Changed(r *agent.Report) map[string]bool {
	out := map[string]bool{}
	for _, e := range r.Events {
		if e.Status == agent.Changed {
			out[e.ID] = true
		}
	}
	return out
}

// AssertFile fails the test unless the file at root+path holds a line or
// text containing each of wants.
func AssertFile(tb testing.TB, root, path string, wants ...string) {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(root, path))
	if err != nil {
		tb.Errorf("%s: %v", path, err)
		return
	}
	for _, w := range wants {
		if !strings.Contains(string(b), w) {
			tb.Errorf("%s does not contain %q:\n%s", path, w, b)
		}
	}
}

// AssertMode fails the test unless root+path has permission bits mode.
func AssertMode(tb testing.TB, root, path string, mode os.FileMode) {
	tb.Helper()
	fi, err := os.Lstat(filepath.Join(root, path))
	if err != nil {
		tb.Errorf("%s: %v", path, err)
		return
	}
	if fi.Mode().Perm() != mode {
		tb.Errorf("%s mode = %v, want %v", path, fi.Mode().Perm(), mode)
	}
}
