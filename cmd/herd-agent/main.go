// Command herd-agent is the node binary: the agent daemon, masterless
// apply, facts, services, backups and version, and nothing a node does not
// run. It links no server, no policy engine and no metrics server
// (deps_test.go fails when it starts to), because every node pays for what
// this binary links, in start-up time and resident memory.
//
// Build it with the grpcnotrace tag, which leaves grpc's debug tracing
// (and html/template with it) out:
//
//	go build -tags grpcnotrace ./cmd/herd-agent
package main

import (
	"os"

	"github.com/herdcm/herd/cmd/nodecmd"
)

func main() {
	root := nodecmd.NewRoot("herd-agent", "The Herd agent: converge this host and report what it did", `herd-agent keeps this host in the state its catalog says.

It enrolls with a Herd server once, then checks in on a schedule (and at once
when the server says a new catalog is ready), converges the host and reports
what it did. With --site it applies a local site checkout instead, without a
server. The full tool, herd, has these commands too, and the server's.`)
	os.Exit(nodecmd.Run(root, os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
