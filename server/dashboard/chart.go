package dashboard

import (
	"fmt"
	"html"
	"html/template"
	"strings"
	"time"
)

// fillBuckets lays the counted buckets on n slots of step from since, so
// that an hour without runs shows as an empty bar, not as no bar.
func fillBuckets(got []RunBucket, since time.Time, step time.Duration, n int) []RunBucket {
	out := make([]RunBucket, n)
	for i := range out {
		out[i].Start = since.Add(time.Duration(i) * step)
	}
	for _, b := range got {
		i := int(b.Start.Sub(since) / step)
		if i >= 0 && i < n {
			out[i].Runs += b.Runs
			out[i].Failed += b.Failed
		}
	}
	return out
}

// Chart geometry, in SVG user units.
const (
	chartW, chartH = 720, 160
	chartPad       = 24 // room for the axis labels
)

// chart draws runs and failures per bucket as an SVG bar chart: a bar per
// bucket, its failed part in red. It is built from numbers and times
// only (title is the caller's constant, escaped all the same), and
// styled by attributes and the stylesheet, as the page's CSP forbids
// inline styles.
func chart(bs []RunBucket, title string) template.HTML {
	most := 1
	total, failed := 0, 0
	for _, b := range bs {
		most = max(most, b.Runs)
		total += b.Runs
		failed += b.Failed
	}
	var s strings.Builder
	fmt.Fprintf(&s, `<svg class="chart" viewBox="0 0 %d %d" role="img" aria-label="%s" xmlns="http://www.w3.org/2000/svg">`,
		chartW, chartH+chartPad, html.EscapeString(title))
	fmt.Fprintf(&s, `<title>%s: %d runs, %d failed</title>`, html.EscapeString(title), total, failed)
	plotH := chartH - chartPad/2
	fmt.Fprintf(&s, `<line class="axis" x1="%d" y1="%d" x2="%d" y2="%d"/>`, chartPad, plotH, chartW, plotH)
	fmt.Fprintf(&s, `<text class="label" x="2" y="%d">%d</text>`, chartPad/2+4, most)
	fmt.Fprintf(&s, `<text class="label" x="2" y="%d">0</text>`, plotH)
	if n := len(bs); n > 0 {
		slot := float64(chartW-chartPad) / float64(n)
		barW := max(slot*0.8, 1)
		scale := float64(plotH-chartPad/2) / float64(most)
		for i, b := range bs {
			x := float64(chartPad) + float64(i)*slot + (slot-barW)/2
			ok := float64(b.Runs-b.Failed) * scale
			bad := float64(b.Failed) * scale
			fmt.Fprintf(&s, `<g><title>%s: %d runs, %d failed</title>`, b.Start.UTC().Format("2006-01-02 15:04Z"), b.Runs, b.Failed)
			fmt.Fprintf(&s, `<rect class="ok" x="%.1f" y="%.1f" width="%.1f" height="%.1f"/>`, x, float64(plotH)-ok-bad, barW, ok)
			fmt.Fprintf(&s, `<rect class="bad" x="%.1f" y="%.1f" width="%.1f" height="%.1f"/>`, x, float64(plotH)-bad, barW, bad)
			s.WriteString(`</g>`)
		}
		first, last := bs[0].Start.UTC(), bs[n-1].Start.UTC()
		fmt.Fprintf(&s, `<text class="label" x="%d" y="%d">%s</text>`, chartPad, chartH+chartPad/2, first.Format("Jan 2 15:04Z"))
		fmt.Fprintf(&s, `<text class="label" x="%d" y="%d" text-anchor="end">%s</text>`, chartW, chartH+chartPad/2, last.Format("Jan 2 15:04Z"))
	}
	s.WriteString(`</svg>`)
	// Safe: every piece above is a number, a formatted time or escaped.
	return template.HTML(s.String())
}

// complianceChart draws the fleet's compliance per bucket as bars of
// 100 %: the part of the nodes that complies in green, that does not in
// red, without data in grey; a bucket with no node is an empty slot. Like
// chart, it is built from numbers and times only.
func complianceChart(bs []ComplianceBucket, step time.Duration, title string) template.HTML {
	var s strings.Builder
	last := "no results yet"
	if n := len(bs); n > 0 {
		if b := bs[n-1]; b.Compliant+b.NonCompliant > 0 {
			last = fmt.Sprintf("now %d of %d judged nodes compliant", b.Compliant, b.Compliant+b.NonCompliant)
		}
	}
	fmt.Fprintf(&s, `<svg class="chart" id="trend" viewBox="0 0 %d %d" role="img" aria-label="%s" xmlns="http://www.w3.org/2000/svg">`,
		chartW, chartH+chartPad, html.EscapeString(title))
	fmt.Fprintf(&s, `<title>%s: %s</title>`, html.EscapeString(title), last)
	plotH := chartH - chartPad/2
	top := chartPad / 2
	fmt.Fprintf(&s, `<line class="axis" x1="%d" y1="%d" x2="%d" y2="%d"/>`, chartPad, plotH, chartW, plotH)
	fmt.Fprintf(&s, `<text class="label" x="2" y="%d">100%%</text>`, top+4)
	fmt.Fprintf(&s, `<text class="label" x="2" y="%d">0</text>`, plotH)
	if n := len(bs); n > 0 {
		slot := float64(chartW-chartPad) / float64(n)
		barW := max(slot*0.8, 1)
		full := float64(plotH - top)
		for i, b := range bs {
			nodes := b.Compliant + b.NonCompliant + b.NodesNoData
			x := float64(chartPad) + float64(i)*slot + (slot-barW)/2
			judged := b.Compliant + b.NonCompliant
			pct := "no data"
			if judged > 0 {
				pct = fmt.Sprintf("%.1f%% compliant", float64(b.Compliant)*100/float64(judged))
			}
			fmt.Fprintf(&s, `<g class="bucket"><title>until %s: %s (%d compliant, %d not, %d without data; %d results pass, %d fail, %d error)</title>`,
				b.End.UTC().Format("2006-01-02 15:04Z"), pct, b.Compliant, b.NonCompliant, b.NodesNoData, b.Results.Pass, b.Results.Fail, b.Results.Error)
			if nodes > 0 {
				y := float64(plotH)
				for _, part := range []struct {
					class string
					n     int
				}{{"ok", b.Compliant}, {"bad", b.NonCompliant}, {"nodata", b.NodesNoData}} {
					h := full * float64(part.n) / float64(nodes)
					y -= h
					fmt.Fprintf(&s, `<rect class="%s" x="%.1f" y="%.1f" width="%.1f" height="%.1f"/>`, part.class, x, y, barW, h)
				}
			}
			s.WriteString(`</g>`)
		}
		first := bs[0].End.Add(-step).UTC()
		fmt.Fprintf(&s, `<text class="label" x="%d" y="%d">%s</text>`, chartPad, chartH+chartPad/2, first.Format("Jan 2 15:04Z"))
		fmt.Fprintf(&s, `<text class="label" x="%d" y="%d" text-anchor="end">now</text>`, chartW, chartH+chartPad/2)
	}
	s.WriteString(`</svg>`)
	// Safe: every piece above is a number, a formatted time, a fixed word
	// or escaped.
	return template.HTML(s.String())
}
