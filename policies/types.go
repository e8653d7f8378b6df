package policies

import (
	"strings"

	"github.com/herdcm/herd/catalogs"
	"github.com/herdcm/herd/facts"
)

// Input is what a gate reads for one node: input.node, input.facts,
// input.catalog, input.previous (null for a node without one),
// input.change, input.fleet, and input.judge (the catalog's resources to
// judge, see Judged).
type Input struct {
	Node     string
	Facts    facts.Facts
	Catalog  *catalogs.Catalog
	Previous *catalogs.Catalog
	Change   catalogs.Change
	Fleet    *Fleet
	// Judged says the node's previous catalog was allowed by policies
	// of the same Digest: input.judge then lists only the resources
	// Change adds or changes, since a resource the node runs unchanged
	// was judged by the same rules then. Otherwise it lists them all.
	Judged bool
}

// Fleet summarizes a whole rollout for gates that bound its blast radius.
// It is computed once per rollout, before any node is gated.
type Fleet struct {
	Version         string `json:"version"`
	PreviousVersion string `json:"previous_version"`
	// Nodes is how many nodes the rollout covers; Changing how many of
	// them get a different catalog.
	Nodes    int `json:"nodes"`
	Changing int `json:"changing"`
	// Resources counts, per resource id, the nodes that add, remove or
	// change it.
	Resources map[string]ResourceCount `json:"resources"`
	// Packages counts, per package name, the nodes whose version (or
	// ensure) of it changes, and how many move to each "from -> to".
	Packages map[string]PackageCount `json:"packages"`
}

// ResourceCount is one resource id's share of a rollout.
type ResourceCount struct {
	Added   int `json:"added"`
	Removed int `json:"removed"`
	Changed int `json:"changed"`
}

// PackageCount is one package's share of a rollout.
type PackageCount struct {
	Nodes    int            `json:"nodes"`
	Versions map[string]int `json:"versions"` // "1.24 -> 1.26" → nodes
}

// Decision is a gate's verdict on one node's catalog.
type Decision struct {
	Deny []Message
	Warn []Message
}

// Denied reports whether any deny rule fired.
func (d Decision) Denied() bool { return len(d.Deny) > 0 }

// Message is one deny or warn message, with the resource it is about
// when the rule returned an object with a resource.
type Message struct {
	Message  string `json:"message"`
	Resource string `json:"resource,omitempty"`
}

// String is the message as one line: the resource first when the rule
// named one the message does not already contain.
func (m Message) String() string {
	if m.Resource == "" || strings.Contains(m.Message, m.Resource) {
		return m.Message
	}
	return m.Resource + ": " + m.Message
}
