package server

import (
	"context"
	"errors"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"
)

// errReceiveTimeout ends a call whose request did not arrive in time.
var errReceiveTimeout = errors.New("the request did not arrive within the receive timeout")

type recvTimerKey struct{}

// recvDeadline starts every call on a node's or admin's connection with a
// receive deadline: a client that announces a large message and stalls
// holds its bytes for ReceiveTimeout at most. Once the request is in (the
// interceptors below), the timer stops: a Watch stream lives on.
func (s *Server) recvDeadline(ctx context.Context, _ *tap.Info) (context.Context, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	t := time.AfterFunc(s.opts.ReceiveTimeout, func() { cancel(errReceiveTimeout) })
	return context.WithValue(ctx, recvTimerKey{}, t), nil
}

// received stops the receive deadline of the call in ctx. A unary call's
// request is whole before any interceptor runs: unaryMetrics, the one
// every unary call passes, calls it (one interceptor less per check-in).
func received(ctx context.Context) {
	if t, ok := ctx.Value(recvTimerKey{}).(*time.Timer); ok {
		t.Stop()
	}
}

// streamReceived stops the deadline at the stream's first message.
func (s *Server) streamReceived(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return handler(srv, &recvStream{ServerStream: ss})
}

type recvStream struct {
	grpc.ServerStream
	done bool
}

func (r *recvStream) RecvMsg(m any) error {
	err := r.ServerStream.RecvMsg(m)
	if !r.done {
		r.done = true
		received(r.ServerStream.Context())
		if err != nil && context.Cause(r.ServerStream.Context()) == errReceiveTimeout {
			return status.Error(codes.DeadlineExceeded, errReceiveTimeout.Error())
		}
	}
	return err
}
