package store

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

// namedChunk is how many names one NodesNamed query binds.
const namedChunk = 500

// NodesNamed returns the nodes of names that the store knows, sorted by
// name; names it does not know are left out. A fleet query that selected
// nodes by their facts in memory reads only those nodes' rows.
func (s *Store) NodesNamed(ctx context.Context, names []string) ([]Node, error) {
	// The unwritten check-ins before the read, as in Node.
	pending := make(map[string]touch)
	for _, name := range names {
		if x, ok := s.touches.lookup(name); ok {
			pending[name] = x
		}
	}
	out := make([]Node, 0, len(names))
	for chunk := range slices.Chunk(names, namedChunk) {
		args := make([]any, len(chunk))
		for i, n := range chunk {
			args[i] = n
		}
		q := `SELECT ` + nodeColumns + ` WHERE n.name IN (?` + strings.Repeat(",?", len(chunk)-1) + `)`
		rows, err := s.rdb.QueryContext(ctx, q, args...)
		if err != nil {
			return nil, fmt.Errorf("reading nodes: %w", err)
		}
		for rows.Next() {
			n, err := scanNode(rows)
			if err != nil {
				rows.Close()
				return nil, fmt.Errorf("reading nodes: %w", err)
			}
			if x, ok := pending[n.Name]; ok {
				x.apply(&n)
				delete(pending, n.Name)
			}
			out = append(out, n)
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, fmt.Errorf("reading nodes: %w", err)
		}
	}
	// Nodes seen only by a check-in not yet written.
	for name, x := range pending {
		n := Node{Name: name}
		x.apply(&n)
		out = append(out, n)
	}
	slices.SortFunc(out, func(a, b Node) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}
