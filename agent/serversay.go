package agent

import (
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// serverTrouble says in a sentence what went wrong with a call to the
// server at addr, for the agent's log while it retries: "checking in:
// cannot reach the server at 10.0.0.5:8140 (connection refused)", where
// grpc would say "rpc error: code = Unavailable desc = connection error:
// desc = …". The wording is the CLI's (nodecmd.RPCError) without its
// flags: an agent's operator fixes the address in its config. What the
// call was doing (an RPCError's Op) leads; an error that is not a gRPC
// status is said as it is.
func serverTrouble(addr string, err error) string {
	var se interface{ GRPCStatus() *status.Status }
	if !errors.As(err, &se) || se.GRPCStatus().Code() == codes.OK {
		return err.Error()
	}
	st := se.GRPCStatus()
	op := ""
	var re *RPCError
	if errors.As(err, &re) && re.Op != "" {
		op = re.Op + ": "
	}
	desc := strings.Join(strings.Fields(st.Message()), " ")
	var s string
	switch st.Code() {
	case codes.Unavailable:
		s = fmt.Sprintf("cannot reach the server at %s (%s)", addr, TransportCause(desc))
	case codes.DeadlineExceeded:
		s = fmt.Sprintf("the server at %s did not answer in time (%s)", addr, TransportCause(desc))
	case codes.Canceled:
		s = "interrupted before the server at " + addr + " answered"
	case codes.ResourceExhausted:
		s = fmt.Sprintf("the server at %s is busy (%s)", addr, desc)
	case codes.Unauthenticated, codes.PermissionDenied:
		s = fmt.Sprintf("the server at %s refused this node's certificate (%s)", addr, desc)
	case codes.Unimplemented:
		s = fmt.Sprintf("the server at %s does not know this call (%s): it runs an older herd than this agent", addr, desc)
	default:
		s = fmt.Sprintf("the server at %s failed: %s", addr, desc)
	}
	if re != nil && re.RetryAfter > 0 {
		s += fmt.Sprintf(" and asks to be retried after %s", re.RetryAfter)
	}
	return op + s
}

// TransportCause is the useful end of grpc's transport message, for a
// sentence about a server that could not be reached: `connection error:
// desc = "transport: Error while dialing: dial tcp 127.0.0.1:8140:
// connect: connection refused"` becomes "connection refused". The CLI
// (nodecmd.RPCError) and the agent's log say it the same way.
func TransportCause(desc string) string {
	s := strings.TrimSpace(desc)
	if i := strings.LastIndex(s, "desc = "); i >= 0 {
		s = s[i+len("desc = "):]
	}
	s = strings.Trim(s, `"`)
	if i := strings.LastIndex(s, "connect: "); i >= 0 {
		return s[i+len("connect: "):]
	}
	if i := strings.Index(s, "authentication handshake failed: "); i >= 0 {
		return "TLS handshake failed: " + s[i+len("authentication handshake failed: "):]
	}
	s = strings.TrimPrefix(s, "transport: ")
	s = strings.TrimPrefix(s, "Error while dialing: ")
	if s == "" {
		return "no answer"
	}
	return s
}
