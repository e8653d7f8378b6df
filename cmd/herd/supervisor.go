package main

import (
	"context"
	"log/slog"

	"github.com/herdcm/herd/agent"
	"github.com/herdcm/herd/agent/resources"
)

// supervisorFor returns how a run gets its supervisor for host root: one
// over the run's state, closed (services left running) when the run ends.
func supervisorFor(root string, log *slog.Logger) func(context.Context, *agent.State) (resources.Services, func(), error) {
	return func(ctx context.Context, st *agent.State) (resources.Services, func(), error) {
		s, err := agent.NewServices(ctx, st, root, log)
		if err != nil {
			return nil, nil, err
		}
		return s, func() { s.Close() }, nil
	}
}
