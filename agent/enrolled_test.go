package agent

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
)

// TestEnrollIfNeeded: the first call enrolls (minting the token then),
// the second only loads the identity and makes no token.
func TestEnrollIfNeeded(t *testing.T) {
	t.Parallel()
	fs := newFakeServer(t)
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "tls")
	tokens := 0
	token := func(context.Context) (string, error) {
		tokens++
		return fs.token, nil
	}
	o := EnrollOptions{Server: fs.addr, Name: "web-01", Dir: dir, Log: testLog(t)}
	id, err := EnrollIfNeeded(ctx, o, token)
	if err != nil || id.Node != "web-01" {
		t.Fatalf("first EnrollIfNeeded = %v, %v", id, err)
	}
	again, err := EnrollIfNeeded(ctx, o, token)
	if err != nil || again.Node != "web-01" {
		t.Fatalf("second EnrollIfNeeded = %v, %v", again, err)
	}
	fs.mu.Lock()
	calls := fs.enrollCalls
	fs.mu.Unlock()
	if tokens != 1 || calls != 1 {
		t.Errorf("%d tokens made, %d enroll calls; want 1 and 1", tokens, calls)
	}
	failing := func(context.Context) (string, error) { return "", errors.New("no CA") }
	if _, err := EnrollIfNeeded(ctx, EnrollOptions{Server: fs.addr, Name: "web-02", Dir: t.TempDir(), Log: testLog(t)}, failing); err == nil {
		t.Error("EnrollIfNeeded with a failing token maker = nil error")
	}
}
