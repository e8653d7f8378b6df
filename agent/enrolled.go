package agent

import (
	"context"
	"errors"
	"fmt"
)

// EnrollIfNeeded returns the node's identity in o.Dir, enrolling first
// when there is none yet: the first start of herd agent, herd up and the
// test fleet. token, when not nil, makes the join token only when one is
// needed (herd up and the fleet mint a short-lived one); otherwise
// o.JoinToken is used.
func EnrollIfNeeded(ctx context.Context, o EnrollOptions, token func(context.Context) (string, error)) (*Identity, error) {
	id, err := LoadIdentity(o.Dir)
	if !errors.Is(err, ErrNotEnrolled) {
		return id, err
	}
	if token != nil {
		if o.JoinToken, err = token(ctx); err != nil {
			return nil, fmt.Errorf("making a join token: %w", err)
		}
	}
	return Enroll(ctx, o)
}
