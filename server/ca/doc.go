// Package ca is the server's enrollment certificate authority: it issues
// each node the client certificate that is its identity, keeps pending
// requests for an operator to sign, revokes, and checks join tokens.
//
// A node's name is the name in its verified certificate, never what its
// facts claim: the CA validates the requested name, takes only the public
// key from a certificate request (never its names or extensions), and
// refuses a second certificate for a name already issued until an admin
// revokes the first.
//
// # Files
//
// Open keeps, in its directory (created 0700):
//
//	ca.crt       the CA certificate (0644): ECDSA P-256, self-signed, ten years
//	ca.key       its private key (0600), absent when Options names a given CA
//	signing.key  the ed25519 key catalogs are signed with (0600)
//	server.crt   the server's TLS certificate (0644), renewed by ServerCert
//	server.key   its private key (0600)
//	ca-old.crt   during a rotation, the retiring CA (0644), and
//	ca-old.key   its key (0600): trusted until no valid certificate it
//	             issued remains, then Retire deletes the key
//	retired/     the certificates of retired CAs, for reading old records
//
// Rotate makes a new CA the one that issues (ca.crt, ca.key) and keeps the
// previous one as the retiring CA, which also issues the server's
// certificate until it retires, since agents that have not renewed trust
// only it. BundleDER is what agents and admins trust meanwhile: both.
//
// The CA and signing keys are created once and never overwritten; a
// certificate without its key, or the reverse, stops Open rather than
// starting a new CA that would orphan every node.
//
// # Certificates
//
// Every issued client certificate has the name as its common name and as
// its only SAN (a DNS name), may only authenticate a TLS client, has a
// random 128-bit serial, and carries its kind as the subject's one
// organizational unit: "herd-node" for nodes, "herd-admin" for operators
// (IssueAdmin). Only the CA writes subjects, so the unit is a mark a
// requester cannot forge; NodeName, AdminName and IsAdmin read it from a
// leaf that TLS has verified against Pool. Nodes and admins share one
// namespace of names. The server's certificate has neither mark and may
// only authenticate a TLS server.
//
// # Records
//
// Certificates, pending requests and join tokens live in a Store (the
// server's sqlite store; MemStore in tests). Revoked serials are also kept
// in memory, so that the server can check every call with IsRevoked.
package ca
