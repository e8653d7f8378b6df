// Package facts collects what a host is.
//
// Collect runs a set of core collectors (os, kernel, processors, memory,
// mounts, networking, …) concurrently, each bounded by a timeout, and merges
// in external facts from a facts.d directory. One failing collector never
// spoils the others: its error is returned beside the facts that did work.
// File-based collectors read under Options.Root so that a sandbox host can be
// described as if it were the real one.
package facts
