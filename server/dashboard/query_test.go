package dashboard

import (
	"net/url"
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

func TestVisible(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"plain text", "plain text"},
		{"two\nlines\tand a tab", "two\nlines\tand a tab"},
		{"\x1b[31mred\x1b[0m", `\x1b[31mred\x1b[0m`},
		{"bell\x07nul\x00", `bell\x07nul\x00`},
		{"c1 \u009b", `c1 \u009b`},
		{"rtl \u202egnp.exe", `rtl \u202egnp.exe`},
		{"bad \xff utf8", `bad \xff utf8`},
		{"ünïcode ✓", "ünïcode ✓"},
	} {
		if got := visible(tc.in); got != tc.want {
			t.Errorf("visible(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestParseQuery(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		raw     string
		want    NodeQuery
		wantErr string
	}{
		{"", NodeQuery{Sort: SortName, Limit: defaultPageLen}, ""},
		{"where=+a+%3D%3D+1+&sort=drift&desc=1&offset=200&limit=50&inactive=on",
			NodeQuery{Where: "a == 1", Sort: SortDrift, Desc: true, Offset: 200, Limit: 50, Inactive: true}, ""},
		{"sort=password", NodeQuery{}, `sort "password": not one of`},
		{"limit=5000", NodeQuery{}, `limit "5000"`},
		{"offset=-3", NodeQuery{}, `offset "-3"`},
		{"desc=maybe", NodeQuery{}, `desc "maybe"`},
	} {
		v, err := url.ParseQuery(tc.raw)
		if err != nil {
			t.Fatal(err)
		}
		got, err := parseQuery(v)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("parseQuery(%q) error = %v, want one containing %q", tc.raw, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("parseQuery(%q) = %v", tc.raw, err)
			continue
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("parseQuery(%q) (-want +got):\n%s", tc.raw, diff)
		}
	}
}

// FuzzQuery feeds the overview's query string, the dashboard's one
// parser of what a browser sends: it never panics, what it accepts is in
// bounds, and the links it makes from a query parse back to the same
// query.
func FuzzQuery(f *testing.F) {
	for _, s := range []string{"", "where=os.family+%3D%3D+%22debian%22&sort=checkin&desc=1", "offset=99999999999999999999",
		"limit=0", "sort=%00", "where=%3Cscript%3E&inactive=1", "%zz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		q, err := parseQuery(v)
		if err != nil {
			return
		}
		if q.Limit < 1 || q.Limit > maxPageLen || q.Offset < 0 {
			t.Fatalf("parseQuery(%q) = limit %d offset %d, out of bounds", raw, q.Limit, q.Offset)
		}
		for _, link := range []string{pageURL(q, q.Offset), sortURL(q, q.Sort), sortURL(q, SortDrift)} {
			u, err := url.Parse(link)
			if err != nil {
				t.Fatalf("link %q from %q: %v", link, raw, err)
			}
			back, err := parseQuery(u.Query())
			if err != nil {
				t.Fatalf("link %q from %q does not parse: %v", link, raw, err)
			}
			if back.Where != q.Where || back.Inactive != q.Inactive || back.Limit != q.Limit {
				t.Fatalf("link %q from %q lost the query: %+v, want %+v", link, raw, back, q)
			}
		}
		got := visible(q.Where)
		if !utf8.ValidString(got) {
			t.Fatalf("visible(%q) = %q, not UTF-8", q.Where, got)
		}
		for _, c := range got {
			if c != '\n' && c != '\t' && (unicode.IsControl(c) || unicode.Is(unicode.Bidi_Control, c)) {
				t.Fatalf("visible(%q) = %q keeps control character %U", q.Where, got, c)
			}
		}
	})
}

// FuzzComplianceQuery feeds the compliance page's query string: it never
// panics, what it accepts is in bounds and one of the known words, and
// the page's links parse back to the same query.
func FuzzComplianceQuery(f *testing.F) {
	for _, s := range []string{"", "sort=failing&desc=1&show=all&nsort=name&ndesc=1&trend=30d&offset=100&limit=50",
		"where=controls_failed+%3E+0&show=compliant", "show=%00", "trend=1y", "limit=1001", "offset=-1", "nsort=drift", "%zz&sort=id"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		q, err := parseComplianceQuery(v)
		if err != nil {
			return
		}
		if q.Limit < 1 || q.Limit > maxPageLen || q.Offset < 0 {
			t.Fatalf("parseComplianceQuery(%q) = limit %d offset %d, out of bounds", raw, q.Limit, q.Offset)
		}
		if _, ok := trends[q.Trend]; !ok || !slices.Contains(ctlSorts, q.Sort) || !slices.Contains(nodeShows, q.Show) {
			t.Fatalf("parseComplianceQuery(%q) = %+v: an unknown word", raw, q)
		}
		for _, link := range []string{q.url(), q.CtlSortURL(ctlFailing), q.NodeSortURL(SortName), q.TrendURL("30d")} {
			u, err := url.Parse(link)
			if err != nil {
				t.Fatalf("link %q from %q: %v", link, raw, err)
			}
			back, err := parseComplianceQuery(u.Query())
			if err != nil {
				t.Fatalf("link %q from %q does not parse: %v", link, raw, err)
			}
			if back.Where != q.Where || back.Show != q.Show || back.Limit != q.Limit {
				t.Fatalf("link %q from %q lost the query: %+v, want %+v", link, raw, back, q)
			}
		}
		if nq := q.nodeQuery(); q.Where != "" && !strings.Contains(nq.Where, q.Where) {
			t.Fatalf("nodeQuery of %+v dropped the where: %q", q, nq.Where)
		}
	})
}
