package loadgen

import (
	"fmt"
	"html/template"
	"io"
	"math"
	"strings"
	"time"
)

// Mark labels a second of a chart, such as the start of a find-max step.
type Mark struct {
	At    int // second
	Label string
}

// series is one line of a panel.
type series struct {
	Name   string
	Color  string
	Values []float64
}

// WriteChart writes a self-contained HTML page (inline SVG, no scripts or external files) with two
// panels over the seconds of a load: latency p50 and p99 of the orders sent in each second, and the
// orders offered versus finished per second.
func WriteChart(w io.Writer, title, summary string, secs []Second, marks []Mark) error {
	var p50, p99, offered, finished []float64
	for _, s := range secs {
		if s.Measured == 0 { // no latency known for this second: a gap, not a zero
			p50, p99 = append(p50, math.NaN()), append(p99, math.NaN())
		} else {
			p50 = append(p50, float64(s.P50)/float64(time.Millisecond))
			p99 = append(p99, float64(s.P99)/float64(time.Millisecond))
		}
		offered = append(offered, float64(s.Offered))
		finished = append(finished, float64(s.Finished))
	}
	page := struct {
		Title, Summary string
		Panels         []template.HTML
	}{Title: title, Summary: summary, Panels: []template.HTML{
		panel("Latency, POST to final event (ms), of the finished orders by the second they were sent", secs, marks,
			series{"p50", "#1f77b4", p50}, series{"p99", "#d62728", p99}),
		panel("Throughput (orders per second)", secs, marks,
			series{"offered", "#7f7f7f", offered}, series{"finished", "#2ca02c", finished}),
	}}
	return chartPage.Execute(w, page)
}

var chartPage = template.Must(template.New("chart").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{{.Title}}</title>
<style>body{font:14px system-ui,sans-serif;margin:2em;color:#222}pre{background:#f6f6f6;padding:1em;overflow:auto}svg{display:block;margin:1em 0}</style>
</head><body><h1>{{.Title}}</h1>
{{range .Panels}}{{.}}{{end}}
<pre>{{.Summary}}</pre>
</body></html>
`))

const (
	chartW, chartH = 900, 260
	padL, padR     = 60, 110
	padT, padB     = 30, 35
)

// panel draws one SVG line chart of several series over the seconds.
func panel(title string, secs []Second, marks []Mark, ss ...series) template.HTML {
	top := 0.0
	for _, s := range ss {
		for _, v := range s.Values {
			if !math.IsNaN(v) {
				top = math.Max(top, v)
			}
		}
	}
	top = niceCeil(top)
	n := max(len(secs), 2)
	x := func(i float64) float64 { return padL + i*(chartW-padL-padR)/float64(n-1) }
	y := func(v float64) float64 { return chartH - padB - v*(chartH-padT-padB)/top }

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %[1]d %[2]d" role="img" aria-label="%s">`, chartW, chartH, template.HTMLEscapeString(title))
	fmt.Fprintf(&b, `<text x="%d" y="18" font-weight="bold">%s</text>`, padL, template.HTMLEscapeString(title))
	for i := 0; i <= 4; i++ { // horizontal grid with values
		v := top * float64(i) / 4
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#ddd"/><text x="%d" y="%.1f" text-anchor="end" font-size="11">%s</text>`,
			padL, chartW-padR, y(v), y(v), padL-6, y(v)+4, trimFloat(v))
	}
	step := max(1, (n+9)/10)
	for i := 0; i < n; i += step { // seconds along the bottom
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle" font-size="11">%ds</text>`, x(float64(i)), chartH-padB+15, i)
	}
	for _, m := range marks {
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#999" stroke-dasharray="3,3"/><text x="%.1f" y="%d" font-size="10" fill="#555">%s</text>`,
			x(float64(m.At)), x(float64(m.At)), padT, chartH-padB, x(float64(m.At))+3, padT+10, template.HTMLEscapeString(m.Label))
	}
	for k, s := range ss {
		fmt.Fprintf(&b, `<g class="series" stroke="%s" fill="%[1]s">`, s.Color)
		var pts []string
		flush := func() { // one line per run of known values; a lone value is a dot
			switch len(pts) {
			case 0:
			case 1:
				xy := strings.Split(pts[0], ",")
				fmt.Fprintf(&b, `<circle cx="%s" cy="%s" r="2"/>`, xy[0], xy[1])
			default:
				fmt.Fprintf(&b, `<polyline fill="none" stroke-width="1.8" points="%s"/>`, strings.Join(pts, " "))
			}
			pts = pts[:0]
		}
		for i, v := range s.Values {
			if math.IsNaN(v) {
				flush()
				continue
			}
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(float64(i)), y(v)))
		}
		flush()
		b.WriteString(`</g>`)
		ly := padT + 10 + 18*k
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="%s" stroke-width="3"/><text x="%d" y="%d" font-size="12">%s</text>`,
			chartW-padR+10, chartW-padR+30, ly, ly, s.Color, chartW-padR+35, ly+4, template.HTMLEscapeString(s.Name))
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle" font-size="11">seconds since start</text></svg>`, (chartW-padR+padL)/2, chartH-4)
	return template.HTML(b.String()) // every text in it is escaped above
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten (at least 1), for the top of an axis.
func niceCeil(v float64) float64 {
	if v <= 1 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func trimFloat(v float64) string {
	if v == math.Trunc(v) {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f", v)
}
