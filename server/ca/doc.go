// Package ca is the server's enrollment certificate authority: it issues
// each node the client certificate that is its identity, keeps pending
// requests for an operator to sign, revokes, and checks join tokens.
//
// A node's name is the name in its verified certificate, never what its
// facts claim: the CA validates the requested name, takes only the public
// key from a certificate request (never its names or extensions), and
// refuses a second certificate for a name already issued until an admin
// revokes the first.
package ca
