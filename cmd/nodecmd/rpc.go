package nodecmd

import (
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/herdcm/herd/agent"
)

// RPCError turns an error from a call to the server at server into a
// sentence an operator can act on: which server was tried and how to
// choose another when it cannot be reached, the server's own words when it
// answered (a NotFound names what was not found), never grpc's
// "rpc error: code = … desc = …". An error that is not a gRPC status is
// returned as it is.
func RPCError(server, adminDir string, err error) error {
	if err == nil {
		return nil
	}
	// The status itself, not status.FromError's, whose message is the
	// whole chain when a command wrapped the call's error ("listing: rpc
	// error: …"): that context is kept in front of the sentence.
	var se interface{ GRPCStatus() *status.Status }
	if !errors.As(err, &se) {
		return err
	}
	st := se.GRPCStatus()
	if st.Code() == codes.OK {
		return err
	}
	prefix := strings.TrimSuffix(err.Error(), st.Err().Error())
	if prefix == err.Error() {
		prefix = ""
	}
	s := rpcSentence(server, adminDir, st)
	if prefix == "" {
		return s
	}
	return fmt.Errorf("%s%w", prefix, s)
}

// rpcSentence is RPCError's sentence for one status.
func rpcSentence(server, adminDir string, st *status.Status) error {
	// The server's words may quote a node's (a name, a compile error):
	// each line is cleaned, so that none drives the terminal.
	lines := strings.Split(st.Message(), "\n")
	for i, l := range lines {
		lines[i] = Clean(l)
	}
	desc := strings.Join(lines, "\n")
	switch st.Code() {
	case codes.Unavailable:
		return fmt.Errorf("cannot reach the server at %s (%s): is it running there? Choose another with --server ADDR or $HERD_SERVER", server, transportCause(desc))
	case codes.DeadlineExceeded:
		return fmt.Errorf("the server at %s did not answer in time (%s): is it overloaded, or is %s the wrong address? Choose another with --server ADDR or $HERD_SERVER", server, transportCause(desc), server)
	case codes.Canceled:
		return errors.New("interrupted before the server at " + server + " answered")
	case codes.Unauthenticated, codes.PermissionDenied:
		return fmt.Errorf("the server at %s refused the admin credentials in %s (%s): make new ones with herd ca admin, or choose them with --admin-dir or $HERD_ADMIN_DIR", server, adminDir, desc)
	case codes.NotFound, codes.InvalidArgument, codes.FailedPrecondition, codes.AlreadyExists, codes.OutOfRange, codes.Aborted:
		// The server's message is a sentence about the request: what was
		// not found, what was wrong with it.
		return errors.New(desc)
	case codes.Unimplemented:
		return fmt.Errorf("the server at %s does not know this call (%s): it runs an older herd than this command; upgrade the server", server, desc)
	}
	return fmt.Errorf("the server at %s failed: %s", server, desc)
}

// transportCause is agent.TransportCause: the CLI and the agent's log
// name a transport failure in the same words.
func transportCause(desc string) string { return agent.TransportCause(desc) }
