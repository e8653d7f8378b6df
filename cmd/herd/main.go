// Command herd is the single binary of Herd: server, agent and the tools
// operators run against a site. Each subcommand lives in its own file and
// calls into one package; this package holds wiring only.
package main

import (
	"os"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
