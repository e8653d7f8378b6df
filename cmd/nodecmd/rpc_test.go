package nodecmd

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestRPCError: a gRPC failure becomes a sentence with a next step, and
// grpc's "rpc error: code = … desc = …" never reaches the operator.
func TestRPCError(t *testing.T) {
	t.Parallel()
	refused := status.Error(codes.Unavailable, `connection error: desc = "transport: Error while dialing: dial tcp 127.0.0.1:8140: connect: connection refused"`)
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"unreachable", refused,
			"cannot reach the server at 127.0.0.1:8140 (connection refused): is it running there? Choose another with --server ADDR or $HERD_SERVER"},
		{"unreachable, wrapped", fmt.Errorf("listing nodes: %w", refused),
			"listing nodes: cannot reach the server at 127.0.0.1:8140 (connection refused): is it running there? Choose another with --server ADDR or $HERD_SERVER"},
		{"tls", status.Error(codes.Unavailable, `connection error: desc = "transport: authentication handshake failed: tls: failed to verify certificate: x509: certificate signed by unknown authority"`),
			"cannot reach the server at 127.0.0.1:8140 (TLS handshake failed: tls: failed to verify certificate: x509: certificate signed by unknown authority): is it running there? Choose another with --server ADDR or $HERD_SERVER"},
		{"not found", status.Error(codes.NotFound, "no node nosuch: the server knows no such node"),
			"no node nosuch: the server knows no such node"},
		{"refused credentials", status.Error(codes.PermissionDenied, "not an admin certificate"),
			"the server at 127.0.0.1:8140 refused the admin credentials in /adm (not an admin certificate): make new ones with herd ca admin, or choose them with --admin-dir or $HERD_ADMIN_DIR"},
		{"internal", status.Error(codes.Internal, "reading facts: disk full"),
			"the server at 127.0.0.1:8140 failed: reading facts: disk full"},
		{"not grpc", errors.New("loading admin credentials: no such file"), "loading admin credentials: no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := RPCError("127.0.0.1:8140", "/adm", tt.err)
			if got.Error() != tt.want {
				t.Errorf("RPCError(%v) =\n%s\nwant\n%s", tt.err, got, tt.want)
			}
			if strings.Contains(got.Error(), "rpc error") || strings.Contains(got.Error(), "desc =") {
				t.Errorf("RPCError(%v) = %q: grpc's raw text", tt.err, got)
			}
		})
	}
	if RPCError("a", "b", nil) != nil {
		t.Error("RPCError(nil) != nil")
	}
}

// FuzzRPCError: whatever a server says, the sentence reaches the terminal
// without a control character but line breaks.
func FuzzRPCError(f *testing.F) {
	f.Add(uint32(codes.NotFound), "no node nosuch: the server knows no such node")
	f.Add(uint32(codes.Unavailable), `connection error: desc = "transport: Error while dialing: dial tcp 127.0.0.1:8140: connect: connection refused"`)
	f.Add(uint32(codes.FailedPrecondition), "web-01\x1b]0;owned\x07: compile error\nroles/x.toml:1:1: bad")
	f.Add(uint32(codes.Internal), "")
	f.Fuzz(func(t *testing.T, code uint32, msg string) {
		err := RPCError("127.0.0.1:8140", "/adm", status.Error(codes.Code(code%17), msg))
		if code%17 == 0 {
			return // OK is no error
		}
		got := err.Error()
		for _, r := range got {
			if r != '\n' && (r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0)) {
				t.Fatalf("RPCError(%q) = %q: a control character reaches the terminal", msg, got)
			}
		}
	})
}
