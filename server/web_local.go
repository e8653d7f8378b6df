package server

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/herdcm/herd/server/store"
)

// `herd ca admin --login` stores a login through the running server, as
// `herd ca admin` issues certificates through it: the store has one
// writer. The call rides the Local service's unix socket as one more
// service, described here by hand with well-known message types, so that
// the wire file stays as it is.

// loginMethod is the full name of the local SetLogin call.
const loginMethod = "/herd.v1.LocalLogin/SetLogin"

type localLoginServer interface {
	setLogin(context.Context, *structpb.Struct) (*emptypb.Empty, error)
}

var localLoginDesc = grpc.ServiceDesc{
	ServiceName: "herd.v1.LocalLogin",
	HandlerType: (*localLoginServer)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "SetLogin",
		Handler: func(srv any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			in := new(structpb.Struct)
			if err := dec(in); err != nil {
				return nil, err
			}
			return srv.(localLoginServer).setLogin(ctx, in)
		},
	}},
	Streams:  []grpc.StreamDesc{},
	Metadata: "server/web_local.go",
}

// setLogin stores the login of req's name with req's hash (a PHC string
// HashPassword made on the operator's side, so the password never
// crosses the socket).
func (l *localService) setLogin(ctx context.Context, req *structpb.Struct) (*emptypb.Empty, error) {
	name, hash := req.GetFields()["name"].GetStringValue(), req.GetFields()["hash"].GetStringValue()
	if len(req.GetFields()) != 2 {
		return nil, status.Error(codes.InvalidArgument, "storing a login: want exactly the fields name and hash")
	}
	if err := SetLogin(ctx, l.s.st, name, hash); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	l.s.log.Info("stored a login for the HTTP port", "name", name)
	return &emptypb.Empty{}, nil
}

// SetLogin checks name and hash (from HashPassword) and stores them,
// replacing the name's password and ending its sessions. The offline
// `herd ca admin --login` calls it on the store it opened.
func SetLogin(ctx context.Context, st *store.Store, name, hash string) error {
	if err := CheckLoginName(name); err != nil {
		return err
	}
	if _, err := parsePHC(hash); err != nil {
		return fmt.Errorf("the password hash of %s: %w", name, err)
	}
	return st.PutLogin(ctx, name, hash, time.Now())
}

// SetLoginLocal stores a login through the server running on dir; it
// fails with an error wrapping os.ErrNotExist when none runs there.
func SetLoginLocal(ctx context.Context, dir, name, hash string) error {
	conn, err := dialLocalConn(ctx, dir)
	if err != nil {
		return err
	}
	defer conn.Close()
	req, err := structpb.NewStruct(map[string]any{"name": name, "hash": hash})
	if err != nil {
		return err
	}
	if err := conn.Invoke(ctx, loginMethod, req, new(emptypb.Empty)); err != nil {
		if st, ok := status.FromError(err); ok {
			return fmt.Errorf("storing login %s through the server on %s: %s", name, dir, st.Message())
		}
		return fmt.Errorf("storing login %s through the server on %s: %w", name, dir, err)
	}
	return nil
}
