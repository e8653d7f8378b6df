package dashboard

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Options tune the dashboard.
type Options struct {
	// Log receives the errors of pages that fail; nil discards them.
	Log *slog.Logger
	// Now is the clock (time.Now when nil); tests fix it.
	Now func() time.Time
	// Timeout bounds the work of one page (default 10 seconds).
	Timeout time.Duration
	// User names who is signed in, for the header's "Signed in as" and
	// its sign-out button; nil (or ok false) shows neither.
	User func(r *http.Request) (name string, ok bool)
}

// Chart ranges: the overview shows the fleet's last day by the hour, a
// node page the node's last week by six hours.
const (
	fleetSpan = 24 * time.Hour
	fleetStep = time.Hour
	nodeSpan  = 7 * 24 * time.Hour
	nodeStep  = 6 * time.Hour
	// nodeReports is how many reports a node page lists.
	nodeReports = 20
	// listRollouts is how many rollouts the rollouts page lists.
	listRollouts = 20
)

type handler struct {
	src   Source
	opts  Options
	pages map[string]*template.Template
	mux   *http.ServeMux
}

// New returns the dashboard's handler, serving its pages under "/" and its
// assets under "/static/". It reads the fleet through src.
func New(src Source, opts Options) http.Handler {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	h := &handler{src: src, opts: opts, pages: map[string]*template.Template{}, mux: http.NewServeMux()}
	funcs := template.FuncMap{
		"vis":           visible,
		"when":          h.when,
		"ago":           h.ago,
		"dur":           duration,
		"short":         short,
		"nodeURL":       func(n string) string { return "/nodes/" + url.PathEscape(n) },
		"runURL":        func(n, r string) string { return "/nodes/" + url.PathEscape(n) + "/runs/" + url.PathEscape(r) },
		"sortURL":       sortURL,
		"pageURL":       pageURL,
		"chart":         chart,
		"statusOf":      eventClass,
		"controlURL":    controlURL,
		"percent":       percent,
		"firstEvidence": firstEvidence,
		"stateClass":    stateClass,
		"sevClass":      sevClass,
		"contains":      strings.Contains,
		"add":           func(a, b int) int { return a + b },
		"sub":           func(a, b int) int { return a - b },
		"pct": func(a, b int) int {
			if b == 0 {
				return 0
			}
			return a * 100 / b
		},
	}
	// The templates are part of the binary: a parse error is a bug that
	// every test finds, so it panics here, once, at start.
	for _, page := range []string{"overview", "node", "run", "site", "rollouts", "compliance", "control", "error"} {
		h.pages[page] = template.Must(template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/parts.html", "templates/"+page+".html"))
	}
	h.mux.HandleFunc("GET /static/{file}", h.static)
	h.mux.HandleFunc("GET /{$}", h.overview)
	h.mux.HandleFunc("GET /nodes/{node}", h.node)
	h.mux.HandleFunc("GET /nodes/{node}/runs/{run}", h.run)
	h.mux.HandleFunc("GET /site", h.site)
	h.mux.HandleFunc("GET /rollouts", h.rollouts)
	h.mux.HandleFunc("GET /compliance", h.compliance)
	h.mux.HandleFunc("GET /compliance/controls/{id}", h.control)
	return h
}

// ServeHTTP sets the security headers on every answer and serves the page.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	// No script at all, nothing from elsewhere, no framing: a string a
	// node sent that escaped html/template still could not run.
	hd.Set("Content-Security-Policy", "default-src 'self'; script-src 'none'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("Cache-Control", "no-store")
	h.mux.ServeHTTP(w, r)
}

// render executes a page into a buffer first, so that a failure midway
// is a clean 500, not half a page.
func (h *handler) render(w http.ResponseWriter, r *http.Request, page string, code int, data any) {
	var buf bytes.Buffer
	var user string
	if h.opts.User != nil {
		user, _ = h.opts.User(r)
	}
	frame := struct {
		User string
		Page any
	}{user, data}
	if err := h.pages[page].Execute(&buf, frame); err != nil {
		h.opts.Log.Error("rendering a dashboard page", "page", page, "path", r.URL.Path, "err", err)
		http.Error(w, "rendering the page failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	w.Write(buf.Bytes())
}

// fail shows an error page: not found, a bad request, or the server's own
// failure (whose detail goes to the log, not the page).
func (h *handler) fail(w http.ResponseWriter, r *http.Request, code int, msg string, err error) {
	if err != nil {
		h.opts.Log.Error("serving a dashboard page", "path", r.URL.Path, "err", err)
	}
	h.render(w, r, "error", code, struct {
		Title, Message string
		Code           int
	}{http.StatusText(code), msg, code})
}

func (h *handler) ctx(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), h.opts.Timeout)
}

// static serves an embedded asset. Not http.FileServerFS: it answers a
// name that is no valid fs path (invalid UTF-8) with a 500.
func (h *handler) static(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("file")
	var b []byte
	err := fs.ErrNotExist
	if fs.ValidPath(name) {
		b, err = fs.ReadFile(staticFS, "static/"+name)
	}
	if err != nil {
		http.NotFound(w, r)
		return
	}
	ctype := mime.TypeByExtension(path.Ext(name))
	if ctype == "" {
		ctype = "application/octet-stream"
	}
	w.Header().Set("Content-Type", ctype)
	// Assets change only with the binary.
	w.Header().Set("Cache-Control", "max-age=3600")
	w.Write(b)
}

type overviewData struct {
	Title    string
	Query    NodeQuery
	Page     NodePage
	Sorts    []string
	WhereErr string
	From, To int
	Prev     string
	Next     string
	Chart    template.HTML
	PageLens []int
}

func (h *handler) overview(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := h.ctx(r)
	defer cancel()
	q, err := parseQuery(r.URL.Query())
	if err != nil {
		h.fail(w, r, http.StatusBadRequest, err.Error(), nil)
		return
	}
	d := overviewData{Title: "Fleet", Query: q, Sorts: sorts, PageLens: []int{50, 100, 500, 1000}}
	code := http.StatusOK
	page, err := h.src.Nodes(ctx, q)
	var bad *BadQueryError
	switch {
	case errors.As(err, &bad):
		d.WhereErr, code = bad.Error(), http.StatusBadRequest
	case err != nil:
		h.fail(w, r, http.StatusInternalServerError, "listing the nodes failed", err)
		return
	}
	d.Page = page
	if len(page.Nodes) > 0 {
		d.From, d.To = q.Offset+1, q.Offset+len(page.Nodes)
	}
	if q.Offset > 0 {
		d.Prev = pageURL(q, max(0, q.Offset-q.Limit))
	}
	if q.Offset+len(page.Nodes) < page.Total {
		d.Next = pageURL(q, q.Offset+q.Limit)
	}
	now := h.opts.Now()
	hist, err := h.src.RunHistory(ctx, "", now.Add(-fleetSpan), fleetStep)
	if err != nil {
		h.fail(w, r, http.StatusInternalServerError, "counting runs failed", err)
		return
	}
	d.Chart = chart(fillBuckets(hist, now.Add(-fleetSpan), fleetStep, int(fleetSpan/fleetStep)), "runs per hour, last 24 hours")
	h.render(w, r, "overview", code, d)
}

// parseQuery reads the overview's query string strictly: an unknown sort
// or a bad number is an error, not a silent default.
func parseQuery(v url.Values) (NodeQuery, error) {
	q := NodeQuery{Where: strings.TrimSpace(v.Get("where")), Sort: v.Get("sort"), Limit: defaultPageLen}
	if q.Sort == "" {
		q.Sort = SortName
	}
	if !slices.Contains(sorts, q.Sort) {
		return q, fmt.Errorf("sort %q: not one of %s", q.Sort, strings.Join(sorts, ", "))
	}
	for _, f := range []struct {
		name string
		to   *int
		most int
	}{{"offset", &q.Offset, 1 << 30}, {"limit", &q.Limit, maxPageLen}} {
		s := v.Get(f.name)
		if s == "" {
			continue
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 || n > f.most {
			return q, fmt.Errorf("%s %q: want a whole number from 0 to %d", f.name, s, f.most)
		}
		*f.to = n
	}
	if q.Limit == 0 {
		q.Limit = defaultPageLen
	}
	var err error
	if q.Desc, err = flag(v, "desc"); err != nil {
		return q, err
	}
	if q.Inactive, err = flag(v, "inactive"); err != nil {
		return q, err
	}
	return q, nil
}

func flag(v url.Values, name string) (bool, error) {
	switch v.Get(name) {
	case "", "0", "false":
		return false, nil
	case "1", "true", "on":
		return true, nil
	}
	return false, fmt.Errorf("%s %q: want 1 or 0", name, v.Get(name))
}

// queryValues is q as a query string, for links that keep it.
func queryValues(q NodeQuery) url.Values {
	v := url.Values{}
	if q.Where != "" {
		v.Set("where", q.Where)
	}
	if q.Sort != SortName {
		v.Set("sort", q.Sort)
	}
	if q.Desc {
		v.Set("desc", "1")
	}
	if q.Inactive {
		v.Set("inactive", "1")
	}
	if q.Limit != defaultPageLen {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	return v
}

// sortURL is the overview sorted by key: a second click on the current
// key reverses it. Sorting starts from the first page.
func sortURL(q NodeQuery, key string) string {
	q.Desc = key == q.Sort && !q.Desc
	q.Sort = key
	return "/?" + queryValues(q).Encode()
}

// pageURL is the overview at offset.
func pageURL(q NodeQuery, offset int) string {
	v := queryValues(q)
	if offset > 0 {
		v.Set("offset", strconv.Itoa(offset))
	}
	return "/?" + v.Encode()
}

type nodeData struct {
	Title   string
	Node    NodeDetail
	Reports []Report
	Chart   template.HTML
}

func (h *handler) node(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := h.ctx(r)
	defer cancel()
	name := r.PathValue("node")
	n, ok, err := h.src.Node(ctx, name)
	if err != nil {
		h.fail(w, r, http.StatusInternalServerError, "reading the node failed", err)
		return
	}
	if !ok {
		h.fail(w, r, http.StatusNotFound, "no node named "+visible(name), nil)
		return
	}
	reps, err := h.src.Reports(ctx, name, nodeReports)
	if err != nil {
		h.fail(w, r, http.StatusInternalServerError, "listing the node's reports failed", err)
		return
	}
	now := h.opts.Now()
	hist, err := h.src.RunHistory(ctx, name, now.Add(-nodeSpan), nodeStep)
	if err != nil {
		h.fail(w, r, http.StatusInternalServerError, "counting the node's runs failed", err)
		return
	}
	d := nodeData{Title: name, Node: n, Reports: reps,
		Chart: chart(fillBuckets(hist, now.Add(-nodeSpan), nodeStep, int(nodeSpan/nodeStep)), "runs per 6 hours, last 7 days")}
	h.render(w, r, "node", http.StatusOK, d)
}

func (h *handler) run(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := h.ctx(r)
	defer cancel()
	name, id := r.PathValue("node"), r.PathValue("run")
	rep, ok, err := h.src.Run(ctx, name, id)
	if err != nil {
		h.fail(w, r, http.StatusInternalServerError, "reading the run failed", err)
		return
	}
	if !ok {
		h.fail(w, r, http.StatusNotFound, "no run "+visible(id)+" of node "+visible(name), nil)
		return
	}
	h.render(w, r, "run", http.StatusOK, struct {
		Title string
		Run   Report
	}{"run " + id, rep})
}

func (h *handler) site(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := h.ctx(r)
	defer cancel()
	st, err := h.src.Site(ctx)
	if err != nil {
		h.fail(w, r, http.StatusInternalServerError, "reading the site's status failed", err)
		return
	}
	h.render(w, r, "site", http.StatusOK, struct {
		Title string
		Site  SiteStatus
	}{"Site", st})
}

func (h *handler) rollouts(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := h.ctx(r)
	defer cancel()
	rs, err := h.src.Rollouts(ctx, listRollouts)
	if err != nil {
		h.fail(w, r, http.StatusInternalServerError, "listing rollouts failed", err)
		return
	}
	h.render(w, r, "rollouts", http.StatusOK, struct {
		Title    string
		Rollouts []Rollout
	}{"Rollouts", rs})
}

// visible shows s with its control characters (terminal escapes, NULs,
// bidi overrides) and invalid UTF-8 spelled out, so that a string a node
// sent cannot move the reader's cursor or reorder what is shown. Newlines
// and tabs stay.
func visible(s string) string {
	clean := true
	for _, c := range s {
		if c == utf8.RuneError || (c != '\n' && c != '\t' && (unicode.IsControl(c) || unicode.Is(unicode.Bidi_Control, c))) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i, w := 0, 0; i < len(s); i += w {
		c, n := utf8.DecodeRuneInString(s[i:])
		w = n
		switch {
		case c == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case c == '\n' || c == '\t':
			b.WriteRune(c)
		case c < 0x80 && unicode.IsControl(c):
			fmt.Fprintf(&b, `\x%02x`, c)
		case unicode.IsControl(c) || unicode.Is(unicode.Bidi_Control, c):
			fmt.Fprintf(&b, `\u%04x`, c)
		default:
			b.WriteRune(c)
		}
	}
	return b.String()
}

func (h *handler) when(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

// ago is how long before now t was, coarsely.
func (h *handler) ago(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := h.opts.Now().Sub(t)
	switch {
	case d < 0:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return fmt.Sprintf("%dd ago", int(d.Hours()/24))
}

func duration(d time.Duration) string {
	if d < time.Second {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(10 * time.Millisecond).String()
}

// short is a digest or id cut to what a reader compares.
func short(s string) string {
	s = strings.TrimPrefix(s, "sha256:")
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

// eventClass is the CSS class of a status word: one of a fixed set, so
// that a status a node made up styles nothing.
func eventClass(status string) string {
	switch status {
	case "failed", "changed", "pending", "unchanged", "unreported", "drift", "skipped", "in-sync", "healthy", "unhealthy":
		return "st-" + status
	}
	return "st-other"
}
