// Package server hands each node its catalog and records what came back.
//
// It serves three gRPC services over TLS (api/herdv1): Enroll, open to
// anyone with a join token or an operator's signature; Node, for a node's
// client certificate, whose name is the node's identity; and Admin, for an
// admin certificate. One default-deny table (auth.go) says who may call
// each method, and every call is checked against the revocation list.
//
// The site is loaded once per version and watched: a change is debounced,
// every known node is recompiled in parallel, each catalog is signed
// (ed25519 over its canonical bytes), the nodes holding a Watch stream are
// told at once, and the catalog is stored in the background (compile is
// deterministic, so a write lost in a crash is compiled again at the next
// start). A node whose compile fails keeps its last
// good catalog, and the error is kept for `herd nodes` and SiteStatus.
package server
