package server

import (
	"context"

	"github.com/herdcm/herd/api/herdv1"
	"github.com/herdcm/herd/server/ca"
)

// The Admin service's CA calls added with the hardening of enrollment;
// the older ones are in admin.go.

func (a *adminService) RejectCertificate(ctx context.Context, req *herdv1.RejectCertificateRequest) (*herdv1.RejectCertificateResponse, error) {
	if err := a.s.ca.Reject(ctx, req.Name); err != nil {
		return nil, caStatus(err, "rejecting "+req.Name)
	}
	return &herdv1.RejectCertificateResponse{}, nil
}

func (a *adminService) ListJoinTokens(ctx context.Context, _ *herdv1.ListJoinTokensRequest) (*herdv1.ListJoinTokensResponse, error) {
	ts, err := a.s.ca.Tokens(ctx)
	if err != nil {
		return nil, caStatus(err, "listing join tokens")
	}
	out := &herdv1.ListJoinTokensResponse{}
	for _, t := range ts {
		out.Tokens = append(out.Tokens, &herdv1.JoinToken{
			Id: t.ID, NamePattern: t.NamePattern, ExpiresUnixMs: unixMs(t.Expires), SingleUse: t.SingleUse,
			UsedUnixMs: unixMs(t.UsedAt), CreatedUnixMs: unixMs(t.Created),
		})
	}
	return out, nil
}

func (a *adminService) RevokeJoinToken(ctx context.Context, req *herdv1.RevokeJoinTokenRequest) (*herdv1.RevokeJoinTokenResponse, error) {
	if err := a.s.ca.RevokeToken(ctx, req.Id); err != nil {
		return nil, caStatus(err, "revoking join token "+req.Id)
	}
	return &herdv1.RevokeJoinTokenResponse{}, nil
}

func (a *adminService) RotateCA(ctx context.Context, _ *herdv1.RotateCARequest) (*herdv1.RotateCAResponse, error) {
	cur, retiring, err := a.s.ca.Rotate(ctx)
	if err != nil {
		return nil, caStatus(err, "rotating the CA")
	}
	return &herdv1.RotateCAResponse{Current: wireAuthority(cur), Retiring: wireAuthority(retiring), CaBundleDer: a.s.ca.BundleDER()}, nil
}

func (a *adminService) ListAuthorities(ctx context.Context, _ *herdv1.ListAuthoritiesRequest) (*herdv1.ListAuthoritiesResponse, error) {
	list, err := a.s.ca.Authorities(ctx)
	if err != nil {
		return nil, caStatus(err, "listing CAs")
	}
	out := &herdv1.ListAuthoritiesResponse{CaBundleDer: a.s.ca.BundleDER()}
	for _, au := range list {
		out.Authorities = append(out.Authorities, wireAuthority(au))
	}
	return out, nil
}

// wireAuthority is a CA as the Admin service sends it.
func wireAuthority(au ca.Authority) *herdv1.Authority {
	return &herdv1.Authority{
		Subject: au.Subject, Fingerprint: au.Fingerprint, State: string(au.State),
		NotBeforeUnixMs: unixMs(au.NotBefore), NotAfterUnixMs: unixMs(au.NotAfter),
		Dependents: int64(au.Dependents), LastDependentUnixMs: unixMs(au.LastDependent),
	}
}
