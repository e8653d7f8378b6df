// Package sandbox lays out a sandbox host root: a directory that looks
// enough like a Debian host for Herd to converge it (`herd up`, tests,
// rehearsals with `herd apply --root`).
package sandbox
