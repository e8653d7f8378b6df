package nodecmd

import (
	"context"
	"log/slog"

	"github.com/herdcm/herd/agent"
	"github.com/herdcm/herd/agent/resources"
)

// supervisorFor returns how a run (herd apply) gets its supervisor for
// host root: the daemon's, over the state directory's socket, when a
// daemon owns it; otherwise one of its own, closed (services left running)
// when the run ends.
func supervisorFor(root string, log *slog.Logger) func(context.Context, *agent.State) (resources.Services, func(), error) {
	return func(ctx context.Context, st *agent.State) (resources.Services, func(), error) {
		s, err := agent.OpenServices(ctx, st, root, log)
		if err != nil {
			return nil, nil, err
		}
		return s, func() { s.Close() }, nil
	}
}

// OwnSupervisor returns how the daemon gets its supervisor: it owns the
// state directory's supervisor (waiting for a command that owns it
// meanwhile to finish) and serves it to the other commands for as long as
// it runs.
func OwnSupervisor(root string, log *slog.Logger) func(context.Context, *agent.State) (resources.Services, func(), error) {
	return func(ctx context.Context, st *agent.State) (resources.Services, func(), error) {
		s, err := agent.OwnServices(ctx, st, root, log)
		if err != nil {
			return nil, nil, err
		}
		return s, func() { s.Close() }, nil
	}
}
