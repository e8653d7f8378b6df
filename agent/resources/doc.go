// Package resources knows how to check and change one kind of thing.
//
// Each resource type (file, package, service, exec, user, group) is one
// file behind the small Type contract: Check reads the host and returns how
// it differs from the wanted state as a Plan of readable Changes, and never
// changes the host; Apply makes the host match a non-empty Plan. The engine
// in package agent owns everything else — ordering, parallelism, noop,
// refreshes, re-checking after every Apply, events — so that each type stays
// small and noop is safe by construction: noop never calls Apply.
//
// Every path a type touches is under Host.Root, so a sandbox root (tests,
// `herd up`, dry rehearsals) is managed exactly like a real host.
package resources
