package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ErrRevoked means the server revoked this node's certificate: every call
// is refused until the node enrolls again with a new key (herd agent
// --reenroll and a join token, or an operator's herd ca sign).
var ErrRevoked = errors.New("this node's certificate was revoked by an operator")

// revokedMark is what the server says when it refuses a revoked
// certificate.
const revokedMark = "certificate revoked"

// revoked turns a call's error into one wrapping ErrRevoked when the
// server refused the call because the certificate is revoked; any other
// error is returned as it is.
func revoked(err error) error {
	if err == nil {
		return nil
	}
	if s, ok := status.FromError(err); ok && s.Code() == codes.Unauthenticated && strings.Contains(s.Message(), revokedMark) {
		return fmt.Errorf("%w; nothing is applied until it enrolls again (herd agent --reenroll --join-token TOKEN): %w", ErrRevoked, err)
	}
	return err
}

// Reenroll moves the identity in dir aside (to dir.revoked-UNIXTIME, kept
// for the record, never used again), so that the next Enroll makes a new
// key and asks for a new certificate. It is what `herd agent --reenroll`
// does for a node whose certificate was revoked or expired.
func Reenroll(dir string) (moved string, err error) {
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	moved = fmt.Sprintf("%s.revoked-%d", filepath.Clean(dir), time.Now().Unix())
	if err := os.Rename(dir, moved); err != nil {
		return "", fmt.Errorf("re-enrolling: moving the old identity aside: %w", err)
	}
	return moved, nil
}
