package dashboard

import (
	"context"
	"time"
)

// Source is what the pages read. The server implements it from its store
// and its memory; every method is read-only.
type Source interface {
	// Nodes is one page of the fleet's nodes that q selects, sorted as q
	// asks. A bad q.Where is an error the page shows (see BadQueryError).
	Nodes(ctx context.Context, q NodeQuery) (NodePage, error)
	// Node is one node with its facts, current catalog and services;
	// false when there is no such node.
	Node(ctx context.Context, name string) (NodeDetail, bool, error)
	// Reports is a node's newest reports, newest first, at most limit.
	Reports(ctx context.Context, node string, limit int) ([]Report, error)
	// Run is one run of a node by its run id; false when it is not among
	// the node's stored reports.
	Run(ctx context.Context, node, runID string) (Report, bool, error)
	// RunHistory counts the runs (of node, or of the fleet when node is
	// "") received from since on, in buckets of step, oldest first.
	RunHistory(ctx context.Context, node string, since time.Time, step time.Duration) ([]RunBucket, error)
	// Site is the site's status.
	Site(ctx context.Context) (SiteStatus, error)
	// Rollouts is the newest rollouts, newest first, at most limit.
	Rollouts(ctx context.Context, limit int) ([]Rollout, error)
	// Compliance is the fleet's audit results now, as herd audit and the
	// JSON API answer them. The value may be shared between callers:
	// read it, never change it.
	Compliance(ctx context.Context) (*Compliance, error)
	// ComplianceTrend is the fleet's compliance at the end of each of n
	// buckets of step from since, oldest first.
	ComplianceTrend(ctx context.Context, since time.Time, step time.Duration, n int) ([]ComplianceBucket, error)
}

// BadQueryError is a Nodes query the user got wrong (a where expression
// that does not compile): the page shows it rather than failing.
type BadQueryError struct{ Err error }

func (e *BadQueryError) Error() string { return e.Err.Error() }
func (e *BadQueryError) Unwrap() error { return e.Err }

// Sort orders of NodeQuery.
const (
	SortName    = "name"
	SortLastRun = "last_run"
	SortStatus  = "status"
	SortVersion = "version"
	SortDrift   = "drift"
	SortCheckin = "checkin"
	SortRollout = "rollout"
	SortAgent   = "agent"
	// SortCompliance orders by the controls a node fails (failed or in
	// error), nodes without results first.
	SortCompliance = "compliance"
	defaultPageLen = 100
	maxPageLen     = 1000
)

// sorts are the orders a NodeQuery may ask for.
var sorts = []string{SortName, SortLastRun, SortStatus, SortVersion, SortDrift, SortCheckin, SortRollout, SortAgent, SortCompliance}

// NodeQuery selects and orders nodes for the overview.
type NodeQuery struct {
	// Where is an expression in the language of site conditions over
	// facts and status (as herd nodes --where); "" selects every node.
	Where string
	// And is the page's own selection (the compliance page's "failing"),
	// compiled apart from Where so that nothing typed into Where can
	// undo it; a node must match both.
	And string
	// Sort is one of the Sort constants; Desc reverses it.
	Sort string
	Desc bool
	// Offset and Limit cut the page out of the sorted selection.
	Offset, Limit int
	// Inactive includes deactivated nodes.
	Inactive bool
}

// NodePage is one page of nodes and how many the query selects in all.
type NodePage struct {
	Nodes []NodeRow
	Total int
}

// NodeRow is one node as the overview lists it.
type NodeRow struct {
	Name        string
	LastCheckin time.Time
	LastReport  time.Time
	LastRunID   string
	// Status is unreported, failed, changed, pending or unchanged.
	Status         string
	Version        string // the site version of the node's current catalog
	AppliedVersion string // the version of its newest applied run
	AgentVersion   string
	RolloutState   string // in the newest rollout; "" when not in it
	Environment    string // the environment the server placed it in
	Drift          int
	Changed        int
	Failed         int
	CompileError   string
	Deactivated    time.Time
	// Audit counts the node's control results; all zero when the
	// controls have judged nothing of it yet ("no data").
	Audit AuditCounts
}

// AuditCounts counts one node's (or one control's) results by state.
type AuditCounts struct{ Pass, Fail, NoData, Error int }

// Failed is how many results fail or are in error.
func (c AuditCounts) Failed() int { return c.Fail + c.Error }

// Judged is how many results say pass, fail or error (no-data is not
// judged).
func (c AuditCounts) Judged() int { return c.Pass + c.Fail + c.Error }

// Total is how many results there are.
func (c AuditCounts) Total() int { return c.Judged() + c.NoData }

// NodeDetail is a node's page: its row, facts, catalog and services.
type NodeDetail struct {
	Row          NodeRow
	Facts        []Fact // sorted by path
	FactsUpdated time.Time
	Catalog      *Catalog // nil when the node has none
	Services     []Service
	// Controls is every control's result on the node, most serious
	// first, then by id.
	Controls []ControlResult
}

// Fact is one leaf of a node's facts: its dotted path and its value as
// JSON.
type Fact struct{ Path, Value string }

// Catalog is a node's current catalog.
type Catalog struct {
	Etag, Version string
	Resources     []Resource
}

// Resource is one resource of a catalog, its attributes as JSON text.
type Resource struct {
	ID, Source string
	Attrs      []Fact
}

// Service is what a service's health check said at the node's newest
// report.
type Service struct{ Name, Health, Detail string }

// Report is one run.
type Report struct {
	Node, RunID, Version string
	Noop, Audit          bool
	Started, Received    time.Time
	Duration             time.Duration
	Summary              Summary
	Events               []Event
}

// Summary counts a run's events by outcome.
type Summary struct {
	Resources, InSync, Changed, Failed, Skipped, Unknown, Refreshed, Drift int
}

// Event is what a run says about one resource.
type Event struct {
	ID, Type, Status, Refresh string
	Noop                      bool
	Error, Cause, Output      string
	// Source is where the site declares the resource (file:line); ""
	// in reports of agents that did not say.
	Source   string
	Duration time.Duration
	Changes  []Change
}

// Change is one attribute an event changed (or would change).
type Change struct {
	Attr, From, To, Diff, Action string
	Sensitive                    bool
}

// RunBucket counts the runs received in [Start, Start+step).
type RunBucket struct {
	Start  time.Time
	Runs   int
	Failed int
}

// SiteStatus is the site the server serves and the newest it tried.
type SiteStatus struct {
	Version       string
	Loaded        time.Time
	LoadError     string // of the newest attempt, when it failed
	Newest        string
	NewestAttempt time.Time
	CompileErrors []CompileError // sorted by node
}

// CompileError is why one node's catalog does not compile.
type CompileError struct{ Node, Error string }

// Rollout is one rollout with its stages.
type Rollout struct {
	ID               int64
	Version          string
	PreviousVersion  string
	State, Reason    string
	Created, Updated time.Time
	Stages           []Stage
	// Blocking are messages that hold the rollout: policy denials and
	// node failures, "node: message".
	Blocking []string
}

// Stage is one stage of a rollout and how far it is.
type Stage struct {
	Name, State string
	// Nodes is how many nodes the stage has; Done those healthy or
	// unchanged, Failed those failed, denied or not compiling.
	Nodes, Done, Failed int
}

// Compliance is the fleet's audit results at one moment.
type Compliance struct {
	// Version is the site version served; AuditError why its audit
	// controls do not compile (the results are then the last judged).
	Version, AuditError string
	// Controls are most serious first, then by id.
	Controls []Control
	// Nodes are every node with results, by name.
	Nodes []NodeCompliance
}

// Control is one audit control and how the fleet fares against it.
type Control struct {
	ID, Title, Severity, Reference, Remediation, Description string
	// Location is the control's file:line in the site.
	Location string
	AuditCounts
	// Percent is Pass * 100 / Judged; meaningless when nothing is judged.
	Percent float64
	// Failing are the results that fail or are in error, by node.
	Failing []ControlResult
}

// NodeCompliance is one node's results counted, and the controls it
// fails (failed or in error), most serious first.
type NodeCompliance struct {
	Node string
	AuditCounts
	Failing []string
}

// ControlResult is one control's state on one node.
type ControlResult struct {
	Node, Control string
	// Title and Severity are the control's, for pages that list one
	// node's results.
	Title, Severity string
	// State is pass, fail, error or no-data.
	State string
	// Since is when the state (or its evidence) last changed, Version
	// the site version it was judged at.
	Since    time.Time
	Version  string
	Evidence []Evidence
	// Error is why the control could not be evaluated (state error).
	Error string
}

// Evidence is one violation a failing control found.
type Evidence struct{ Message, Resource string }

// ComplianceBucket is the fleet's compliance as it stood at End: nodes
// by class (a node complies when a control judged it and none failed or
// erred) and results by state.
type ComplianceBucket struct {
	End                                  time.Time
	Compliant, NonCompliant, NodesNoData int
	Results                              AuditCounts
}
