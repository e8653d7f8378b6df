package dashboard

import (
	"cmp"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The compliance page: the fleet's audit controls, each with its counts
// and its failing nodes; the nodes, filtered and sorted as on the
// overview, each with the controls it fails; and a chart of the fleet's
// compliance over time.

// Control orders on the compliance page, and node orders and selections.
const (
	ctlSeverity  = "severity"
	ctlID        = "id"
	ctlCompliant = "compliant"
	ctlFailing   = "failing"

	showFailing   = "failing"
	showCompliant = "compliant"
	showNoData    = "no-data"
	showAll       = "all"

	// failingShown is how many failing nodes a control lists on the
	// compliance page; its own page lists them all, a page at a time.
	failingShown = 10
	// evidenceShown is how many violations a result lists.
	evidenceShown = 10
)

var (
	ctlSorts  = []string{ctlSeverity, ctlID, ctlCompliant, ctlFailing}
	nodeShows = []string{showFailing, showCompliant, showNoData, showAll}
	// showWhere is what each selection adds to the where expression.
	showWhere = map[string]string{
		showFailing:   "controls_failed > 0",
		showCompliant: "controls_failed == 0 && controls_passed > 0",
		showNoData:    "controls_failed == 0 && controls_passed == 0",
	}
	// trends are the chart's ranges: by the hour over a day, by the day
	// over 30 days.
	trends = map[string]struct {
		step  time.Duration
		n     int
		title string
	}{
		"24h": {time.Hour, 24, "nodes compliant per hour, last 24 hours"},
		"30d": {24 * time.Hour, 30, "nodes compliant per day, last 30 days"},
	}
)

// complianceQuery is what the compliance page's query string asks.
type complianceQuery struct {
	// Sort orders the controls; Desc reverses it.
	Sort string
	Desc bool
	// Show selects nodes by their results, Where by the overview's
	// expression; NSort (name or compliance) and NDesc order them.
	Show, Where string
	NSort       string
	NDesc       bool
	// Offset and Limit cut the page of nodes.
	Offset, Limit int
	// Trend is the chart's range: 24h or 30d.
	Trend string
}

func parseComplianceQuery(v url.Values) (complianceQuery, error) {
	q := complianceQuery{Sort: cmp.Or(v.Get("sort"), ctlSeverity), Show: cmp.Or(v.Get("show"), showFailing),
		Where: strings.TrimSpace(v.Get("where")), NSort: cmp.Or(v.Get("nsort"), SortCompliance), Trend: cmp.Or(v.Get("trend"), "24h"),
		Limit: defaultPageLen}
	if !slices.Contains(ctlSorts, q.Sort) {
		return q, fmt.Errorf("sort %q: not one of %s", q.Sort, strings.Join(ctlSorts, ", "))
	}
	if !slices.Contains(nodeShows, q.Show) {
		return q, fmt.Errorf("show %q: not one of %s", q.Show, strings.Join(nodeShows, ", "))
	}
	if q.NSort != SortName && q.NSort != SortCompliance {
		return q, fmt.Errorf("nsort %q: not one of name, compliance", q.NSort)
	}
	if _, ok := trends[q.Trend]; !ok {
		return q, fmt.Errorf("trend %q: not one of 24h, 30d", q.Trend)
	}
	var err error
	if q.Offset, q.Limit, err = pageArgs(v, q.Limit); err != nil {
		return q, err
	}
	if q.Desc, err = flag(v, "desc"); err != nil {
		return q, err
	}
	if q.NDesc, err = flag(v, "ndesc"); err != nil {
		return q, err
	}
	return q, nil
}

// pageArgs reads offset and limit strictly.
func pageArgs(v url.Values, limit int) (offset, lim int, err error) {
	lim = limit
	for _, f := range []struct {
		name string
		to   *int
		most int
	}{{"offset", &offset, 1 << 30}, {"limit", &lim, maxPageLen}} {
		s := v.Get(f.name)
		if s == "" {
			continue
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 || n > f.most {
			return 0, 0, fmt.Errorf("%s %q: want a whole number from 0 to %d", f.name, s, f.most)
		}
		*f.to = n
	}
	if lim == 0 {
		lim = limit
	}
	return offset, lim, nil
}

func (q complianceQuery) values() url.Values {
	v := url.Values{}
	for _, kv := range [][2]string{{"sort", q.Sort}, {"show", q.Show}, {"where", q.Where}, {"nsort", q.NSort}, {"trend", q.Trend}} {
		def := map[string]string{"sort": ctlSeverity, "show": showFailing, "where": "", "nsort": SortCompliance, "trend": "24h"}[kv[0]]
		if kv[1] != def {
			v.Set(kv[0], kv[1])
		}
	}
	if q.Desc {
		v.Set("desc", "1")
	}
	if q.NDesc {
		v.Set("ndesc", "1")
	}
	if q.Limit != defaultPageLen {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	if q.Offset > 0 {
		v.Set("offset", strconv.Itoa(q.Offset))
	}
	return v
}

func (q complianceQuery) url() string {
	if e := q.values().Encode(); e != "" {
		return "/compliance?" + e
	}
	return "/compliance"
}

// CtlSortURL orders the controls by key; again reverses.
func (q complianceQuery) CtlSortURL(key string) string {
	q.Desc = key == q.Sort && !q.Desc
	q.Sort = key
	return q.url()
}

// NodeSortURL orders the nodes by key; again reverses. From the first
// page.
func (q complianceQuery) NodeSortURL(key string) string {
	q.NDesc = key == q.NSort && !q.NDesc
	q.NSort, q.Offset = key, 0
	return q.url()
}

// TrendURL shows the chart over span.
func (q complianceQuery) TrendURL(span string) string {
	q.Trend = span
	return q.url()
}

// nodeQuery is the overview's query that selects the page's nodes.
func (q complianceQuery) nodeQuery() NodeQuery {
	return NodeQuery{Where: q.Where, And: showWhere[q.Show], Sort: q.NSort, Desc: q.NSort == SortCompliance != q.NDesc, Offset: q.Offset, Limit: q.Limit}
}

// controlView is a control as the page lists it: with at most shown of
// its failing results.
type controlView struct {
	*Control
	Shown []ControlResult
}

// nodeView is a node of the page's list with the controls it fails.
type nodeView struct {
	Row     NodeRow
	Failing []string
}

type complianceData struct {
	Title    string
	Query    complianceQuery
	C        *Compliance
	Controls []controlView
	Failing  []controlView // the controls some node fails, in the table's order
	Nodes    []nodeView
	Total    int
	From, To int
	Prev     string
	Next     string
	WhereErr string
	Chart    template.HTML
	Trend    *ComplianceBucket // the newest point, nil when none
	TrendErr string
	Shows    []string
	PageLens []int
}

func (h *handler) compliance(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := h.ctx(r)
	defer cancel()
	q, err := parseComplianceQuery(r.URL.Query())
	if err != nil {
		h.fail(w, r, http.StatusBadRequest, err.Error(), nil)
		return
	}
	c, err := h.src.Compliance(ctx)
	if err != nil {
		h.fail(w, r, http.StatusInternalServerError, "reading the audit results failed", err)
		return
	}
	d := complianceData{Title: "Compliance", Query: q, C: c, Shows: nodeShows, PageLens: []int{50, 100, 500, 1000}}
	for i := range c.Controls {
		ctl := &c.Controls[i]
		d.Controls = append(d.Controls, controlView{Control: ctl, Shown: ctl.Failing[:min(len(ctl.Failing), failingShown)]})
	}
	sortControls(d.Controls, q.Sort, q.Desc)
	for _, cv := range d.Controls {
		if len(cv.Failing) > 0 {
			d.Failing = append(d.Failing, cv)
		}
	}
	code := http.StatusOK
	var page NodePage
	if q.Where == "" && (q.Show == showFailing || q.Show == showCompliant) {
		// Nodes that fail or comply all have results: the view lists
		// them, without reading the fleet again.
		page = complianceNodes(c, q)
	} else {
		page, err = h.src.Nodes(ctx, q.nodeQuery())
		var bad *BadQueryError
		switch {
		case errors.As(err, &bad):
			d.WhereErr, code = bad.Error(), http.StatusBadRequest
		case err != nil:
			h.fail(w, r, http.StatusInternalServerError, "listing the nodes failed", err)
			return
		}
	}
	d.Total = page.Total
	for _, row := range page.Nodes {
		nv := nodeView{Row: row}
		if i, ok := slices.BinarySearchFunc(c.Nodes, row.Name, func(n NodeCompliance, name string) int { return strings.Compare(n.Node, name) }); ok {
			nv.Failing = c.Nodes[i].Failing
		}
		d.Nodes = append(d.Nodes, nv)
	}
	if len(page.Nodes) > 0 {
		d.From, d.To = q.Offset+1, q.Offset+len(page.Nodes)
	}
	if q.Offset > 0 {
		p := q
		p.Offset = max(0, q.Offset-q.Limit)
		d.Prev = p.url()
	}
	if q.Offset+len(page.Nodes) < page.Total {
		p := q
		p.Offset = q.Offset + q.Limit
		d.Next = p.url()
	}
	tr := trends[q.Trend]
	// Buckets end on whole steps, the last one at the end of the
	// current: the trend's key stays the same within a step.
	end := h.opts.Now().Truncate(tr.step).Add(tr.step)
	bs, err := h.src.ComplianceTrend(ctx, end.Add(-time.Duration(tr.n)*tr.step), tr.step, tr.n)
	if err != nil {
		// The page without its chart is still the page.
		h.opts.Log.Error("reading the compliance history", "err", err)
		d.TrendErr = "the compliance history could not be read (the server's log says why)"
	}
	if len(bs) > 0 {
		d.Trend = &bs[len(bs)-1]
	}
	d.Chart = complianceChart(bs, tr.step, tr.title)
	h.render(w, r, "compliance", code, d)
}

// complianceNodes is the page of nodes q selects (failing or compliant,
// no where) from the view, ordered as Source.Nodes orders them.
func complianceNodes(c *Compliance, q complianceQuery) NodePage {
	var rows []NodeRow
	for _, n := range c.Nodes {
		failing := n.Failed() > 0
		if q.Show == showFailing && failing || q.Show == showCompliant && !failing && n.Pass > 0 {
			rows = append(rows, NodeRow{Name: n.Node, Audit: n.AuditCounts})
		}
	}
	nq := q.nodeQuery()
	slices.SortStableFunc(rows, func(a, b NodeRow) int {
		c := 0
		if nq.Sort == SortCompliance {
			c = cmp.Compare(complianceKey(a.Audit), complianceKey(b.Audit))
		}
		c = cmp.Or(c, strings.Compare(a.Name, b.Name))
		if nq.Desc {
			return -c
		}
		return c
	})
	page := NodePage{Total: len(rows)}
	if q.Offset < len(rows) {
		page.Nodes = rows[q.Offset:min(len(rows), q.Offset+q.Limit)]
	}
	return page
}

// complianceKey orders nodes by the controls they fail; a node no
// control judged comes before one that passes them all (as the server
// sorts SortCompliance).
func complianceKey(c AuditCounts) int {
	if c.Judged() == 0 {
		return -1
	}
	return c.Failed()
}

// sortControls orders the controls by key, then as the source gave
// them (most serious first, then by id).
func sortControls(cs []controlView, key string, desc bool) {
	by := func(a, b controlView) int {
		switch key {
		case ctlID:
			return strings.Compare(a.ID, b.ID)
		case ctlCompliant:
			return cmp.Compare(percentKey(a.Control), percentKey(b.Control))
		case ctlFailing:
			// Most failing first.
			return -cmp.Compare(a.Control.Failed(), b.Control.Failed())
		}
		return 0
	}
	slices.SortStableFunc(cs, func(a, b controlView) int {
		c := by(a, b)
		if desc {
			return -c
		}
		return c
	})
}

// percentKey orders controls by percent compliant, those that judged
// nothing first.
func percentKey(c *Control) float64 {
	if c.Judged() == 0 {
		return -1
	}
	return c.Percent
}

type controlData struct {
	Title    string
	Control  *Control
	Results  []ControlResult
	From, To int
	Prev     string
	Next     string
}

// control is one control's page: its description and every failing
// node, a page at a time.
func (h *handler) control(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := h.ctx(r)
	defer cancel()
	id := r.PathValue("id")
	offset, limit, err := pageArgs(r.URL.Query(), defaultPageLen)
	if err != nil {
		h.fail(w, r, http.StatusBadRequest, err.Error(), nil)
		return
	}
	c, err := h.src.Compliance(ctx)
	if err != nil {
		h.fail(w, r, http.StatusInternalServerError, "reading the audit results failed", err)
		return
	}
	i := slices.IndexFunc(c.Controls, func(c Control) bool { return c.ID == id })
	if i < 0 {
		h.fail(w, r, http.StatusNotFound, "no audit control "+visible(id), nil)
		return
	}
	ctl := &c.Controls[i]
	d := controlData{Title: "control " + id, Control: ctl}
	if offset < len(ctl.Failing) {
		d.Results = ctl.Failing[offset:min(len(ctl.Failing), offset+limit)]
		d.From, d.To = offset+1, offset+len(d.Results)
	}
	at := func(o int) string {
		v := url.Values{}
		if o > 0 {
			v.Set("offset", strconv.Itoa(o))
		}
		if limit != defaultPageLen {
			v.Set("limit", strconv.Itoa(limit))
		}
		u := controlURL(id)
		if e := v.Encode(); e != "" {
			u += "?" + e
		}
		return u
	}
	if offset > 0 {
		d.Prev = at(max(0, offset-limit))
	}
	if offset+len(d.Results) < len(ctl.Failing) {
		d.Next = at(offset + limit)
	}
	h.render(w, r, "control", http.StatusOK, d)
}

func controlURL(id string) string { return "/compliance/controls/" + url.PathEscape(id) }

// percent is a control's percent compliant, or a dash when it judged
// nothing.
func percent(c AuditCounts, p float64) string {
	if c.Judged() == 0 {
		return "—"
	}
	return strconv.FormatFloat(p, 'f', 1, 64) + "%"
}

// firstEvidence is at most evidenceShown violations.
func firstEvidence(es []Evidence) []Evidence { return es[:min(len(es), evidenceShown)] }

// stateClass is the CSS class of an audit state: one of a fixed set.
func stateClass(state string) string {
	switch state {
	case "pass", "fail", "error", "no-data":
		return "au-" + state
	}
	return "st-other"
}

// sevClass is the CSS class of a severity: one of a fixed set.
func sevClass(sev string) string {
	switch sev {
	case "low", "medium", "high", "critical":
		return "sev-" + sev
	}
	return "st-other"
}
