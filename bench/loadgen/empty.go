package main

import (
	"context"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/herdcm/herd/api/herdv1"
)

// emptyScenario is the "empty" throughput scenario: the cheapest
// authenticated unary call, over the same connections, the same load
// loop and the same calls in flight as "checkin", so that the check-in
// rate can be read against what gRPC, HTTP/2 and TLS alone allow here.
var emptyScenario = struct {
	name, what, target string
	goal               float64
}{"empty", "cheapest authenticated call/s (Admin.SiteStatus with a node certificate, refused)", "≈ 60,000/s (issue 15's empty call)", 60000}

// emptyCall asks for the site's status with a node's certificate. The
// server checks the certificate (signature, issuer, revocation: the same
// authorize every node call passes) and refuses it, as an admin call, with
// PERMISSION_DENIED, before any handler, store or admission queue: that
// refusal is the call's success here, and any other answer is an error.
func emptyCall(ctx context.Context, a *sim, _ int64) (int, error) {
	_, err := herdv1.NewAdminClient(a.conn).SiteStatus(ctx, &herdv1.SiteStatusRequest{})
	switch status.Code(err) {
	case codes.PermissionDenied:
		return 0, nil
	case codes.OK:
		return 0, fmt.Errorf("site status with the node certificate of %s: answered, want PERMISSION_DENIED", a.name)
	}
	return 0, err
}
