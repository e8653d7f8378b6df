package server

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/herdcm/herd/api/herdv1"
	"github.com/herdcm/herd/server/ca"
)

// enrollService is open to anyone; the CA decides (join token, pending
// request, refused name).
type enrollService struct {
	herdv1.UnimplementedEnrollServer
	s *Server
}

func (e *enrollService) Enroll(ctx context.Context, req *herdv1.EnrollRequest) (*herdv1.EnrollResponse, error) {
	source := ""
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		source = p.Addr.String()
	}
	if k := req.SealPublicKey; len(k) != 0 && len(k) != 32 {
		return nil, status.Errorf(codes.InvalidArgument, "enrolling %s: seal_public_key: want a 32-byte X25519 public key, got %d bytes", req.Name, len(k))
	}
	res, err := e.s.ca.Enroll(ctx, req.Name, req.CsrDer, req.JoinToken, source)
	if err != nil {
		switch {
		case errors.Is(err, ca.ErrExists), errors.Is(err, ca.ErrPendingOther):
			return nil, status.Errorf(codes.AlreadyExists, "enrolling %s: %v", req.Name, err)
		case errors.Is(err, ca.ErrTooMany):
			return nil, status.Errorf(codes.ResourceExhausted, "enrolling %s: %v", req.Name, err)
		case errors.Is(err, ca.ErrInvalid):
			return nil, status.Errorf(codes.InvalidArgument, "enrolling %s: %v", req.Name, err)
		}
		e.s.log.Error("enrolling", "name", req.Name, "err", err)
		return nil, status.Errorf(codes.Internal, "enrolling %s: internal error", req.Name)
	}
	out := &herdv1.EnrollResponse{CaCertificateDer: e.s.ca.BundleDER(), SigningPublicKey: e.s.ca.SigningPublicKey()}
	if res.State == ca.StatePending {
		e.s.log.Info("enrollment pending", "name", req.Name, "source", source, "reason", res.Reason)
		out.Status = herdv1.EnrollResponse_PENDING
		out.RetryAfterMs = res.RetryAfter.Milliseconds()
		return out, nil
	}
	out.Status = herdv1.EnrollResponse_ISSUED
	out.CertificateDer = res.Cert.DER
	e.s.sealKeyArrived(ctx, req.Name, req.SealPublicKey)
	return out, nil
}

// Renew issues the calling node a new certificate for the key of the one
// it called with; the interceptor has verified that certificate.
func (e *enrollService) Renew(ctx context.Context, req *herdv1.RenewRequest) (*herdv1.EnrollResponse, error) {
	id := caller(ctx)
	if k := req.SealPublicKey; len(k) != 0 && len(k) != 32 {
		return nil, status.Errorf(codes.InvalidArgument, "renewing %s: seal_public_key: want a 32-byte X25519 public key, got %d bytes", id.name, len(k))
	}
	chain, err := peerChain(ctx)
	if err != nil {
		return nil, err
	}
	cert, err := e.s.ca.Renew(ctx, ca.Caller{Name: id.name, Serial: id.serial, Admin: id.admin}, chain[0].PublicKey)
	if err != nil {
		switch {
		case errors.Is(err, ca.ErrRevoked):
			return nil, status.Errorf(codes.Unauthenticated, "renewing %s: %v", id.name, err)
		case errors.Is(err, ca.ErrExists), errors.Is(err, ca.ErrInvalid):
			return nil, status.Errorf(codes.FailedPrecondition, "renewing %s: %v", id.name, err)
		}
		e.s.log.Error("renewing", "name", id.name, "err", err)
		return nil, status.Errorf(codes.Internal, "renewing %s: internal error", id.name)
	}
	e.s.sealKeyArrived(ctx, id.name, req.SealPublicKey)
	return &herdv1.EnrollResponse{
		Status: herdv1.EnrollResponse_ISSUED, CertificateDer: cert.DER,
		CaCertificateDer: e.s.ca.BundleDER(), SigningPublicKey: e.s.ca.SigningPublicKey(),
	}, nil
}
