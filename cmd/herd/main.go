// Command herd is the whole of Herd: the server, herd up, the tools
// operators run against a site and the fleet, and every node command too
// (those live in cmd/nodecmd, which the lean node binary, herd-agent, runs
// alone). Each subcommand lives in its own file and calls into one
// package; this package holds wiring only.
package main

import (
	"os"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
