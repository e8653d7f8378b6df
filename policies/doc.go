// Package policies decides whether a catalog may ship and whether a node
// complies. It loads a site version's policies/**/*.rego once (Rego v1,
// with OPA), prepares the gate queries once, and evaluates
// data.herd.gate.deny and data.herd.gate.warn per node over the node's
// facts, its new catalog, its previous catalog, the change between them
// and a summary of the whole rollout. Apart from the gate it compiles the
// audit controls (packages under herd.audit, PrepareAudit) and evaluates
// them per node over its facts, catalog, last run and drift: pass, fail
// with evidence, or error. It also runs the site's policy tests
// (*_test.rego). It is linked into the server and the operator's
// commands only, never into the node binary.
package policies
