package server

import (
	"context"
	"crypto/x509"
	"errors"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/herdcm/herd/api/herdv1"
	"github.com/herdcm/herd/server/ca"
)

// role is who may call a method.
type role int

const (
	anyone    role = iota + 1 // no client certificate needed (enrollment)
	nodeRole                  // a node's certificate, not revoked
	adminRole                 // an admin certificate, not revoked
)

// methodRoles is the one authorization table: every gRPC method the
// server serves has a row, and a method without one is refused (a test
// enumerates the service descriptors against it).
var methodRoles = map[string]role{
	herdv1.Enroll_Enroll_FullMethodName: anyone,
	herdv1.Enroll_Renew_FullMethodName:  nodeRole,

	herdv1.Node_Checkin_FullMethodName:     nodeRole,
	herdv1.Node_GetFile_FullMethodName:     nodeRole,
	herdv1.Node_SendReport_FullMethodName:  nodeRole,
	herdv1.Node_Watch_FullMethodName:       nodeRole,
	herdv1.Node_SendReports_FullMethodName: nodeRole,

	herdv1.Admin_ListNodes_FullMethodName:         adminRole,
	herdv1.Admin_GetFacts_FullMethodName:          adminRole,
	herdv1.Admin_FleetFacts_FullMethodName:        adminRole,
	herdv1.Admin_ListReports_FullMethodName:       adminRole,
	herdv1.Admin_GetCatalog_FullMethodName:        adminRole,
	herdv1.Admin_SiteStatus_FullMethodName:        adminRole,
	herdv1.Admin_ListCertificates_FullMethodName:  adminRole,
	herdv1.Admin_SignCertificate_FullMethodName:   adminRole,
	herdv1.Admin_RevokeCertificate_FullMethodName: adminRole,
	herdv1.Admin_CreateJoinToken_FullMethodName:   adminRole,
	herdv1.Admin_RejectCertificate_FullMethodName: adminRole,
	herdv1.Admin_ListJoinTokens_FullMethodName:    adminRole,
	herdv1.Admin_RevokeJoinToken_FullMethodName:   adminRole,
	herdv1.Admin_RotateCA_FullMethodName:          adminRole,
	herdv1.Admin_ListAuthorities_FullMethodName:   adminRole,
	herdv1.Admin_ListRollouts_FullMethodName:      adminRole,
	herdv1.Admin_GetRollout_FullMethodName:        adminRole,
	herdv1.Admin_RolloutAction_FullMethodName:     adminRole,
	herdv1.Admin_RolloutDiff_FullMethodName:       adminRole,
	herdv1.Admin_NodeLifecycle_FullMethodName:     adminRole,
	herdv1.Admin_Audit_FullMethodName:             adminRole,
	herdv1.Admin_Explain_FullMethodName:           adminRole,
}

// identity is who a call comes from, by its verified certificate.
type identity struct {
	name   string
	serial string
	admin  bool
}

type identityKey struct{}

// caller returns the identity the interceptor put in ctx.
func caller(ctx context.Context) identity {
	id, _ := ctx.Value(identityKey{}).(identity)
	return id
}

// authorize decides one call: it finds the method's row, the verified
// client certificate, checks revocation, and returns the context with the
// caller's identity.
func (s *Server) authorize(ctx context.Context, method string) (context.Context, error) {
	r, ok := methodRoles[method]
	if !ok {
		return nil, status.Errorf(codes.PermissionDenied, "method %s is not allowed", method)
	}
	if r == anyone {
		return ctx, nil
	}
	chain, err := peerChain(ctx)
	if err != nil {
		return nil, err
	}
	// The handshake's verdict is not trusted alone: a resumed session's
	// certificates come from its ticket. The CA checks the leaf on every
	// call (signature, issued by this server, not revoked, not expired),
	// from a cache after the first time.
	id, err := s.ca.VerifyClient(ctx, chain)
	if errors.Is(err, ca.ErrRevoked) {
		// The agent recognises these words and tells its operator.
		return nil, status.Errorf(codes.Unauthenticated, "%v: an operator revoked this certificate; the node must enroll again (herd agent --reenroll)", err)
	}
	if err != nil {
		return nil, status.Errorf(codes.Unauthenticated, "certificate refused: %v", err)
	}
	name, admin, serial := id.Name, id.Admin, id.Serial
	switch {
	case r == adminRole && !admin:
		return nil, status.Error(codes.PermissionDenied, "this call needs an admin certificate")
	case r == nodeRole && admin:
		return nil, status.Error(codes.PermissionDenied, "an admin certificate is not a node")
	}
	return context.WithValue(ctx, identityKey{}, identity{name: name, serial: serial, admin: admin}), nil
}

// peerChain returns the client certificates of a TLS connection whose
// handshake verified them against the CA; a connection without them has
// no identity.
func peerChain(ctx context.Context) ([]*x509.Certificate, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "no peer")
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "not a TLS connection")
	}
	if len(ti.State.VerifiedChains) == 0 || len(ti.State.PeerCertificates) == 0 {
		return nil, status.Error(codes.Unauthenticated, "a client certificate from this server's CA is required")
	}
	return ti.State.PeerCertificates, nil
}

func (s *Server) unaryAuth(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ctx, err := s.authorize(ctx, info.FullMethod)
	if err != nil {
		s.metrics.denied.WithLabelValues(info.FullMethod).Inc()
		return nil, err
	}
	return handler(ctx, req)
}

func (s *Server) streamAuth(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx, err := s.authorize(ss.Context(), info.FullMethod)
	if err != nil {
		s.metrics.denied.WithLabelValues(info.FullMethod).Inc()
		return err
	}
	return handler(srv, &identityStream{ServerStream: ss, ctx: ctx})
}

type identityStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *identityStream) Context() context.Context { return s.ctx }
