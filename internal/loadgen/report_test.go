package loadgen

import (
	"bytes"
	"encoding/xml"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestTrackerMatchesFinalsWhicheverComesFirst(t *testing.T) {
	tr := newTracker()
	now := time.Now()
	a, b, c := &record{want: Confirmed, offered: now}, &record{want: OutOfStock, offered: now}, &record{want: Confirmed, offered: now}
	for _, r := range []*record{a, b, c} {
		tr.offer(r)
	}
	tr.answered(a, "A", "")
	tr.finished(final{orderID: "B", outcome: OutOfStock, at: now.Add(5 * time.Millisecond)}, now) // before B's POST answered
	if tr.settled() {
		t.Fatal("settled with answers missing")
	}
	tr.answered(b, "B", "")
	tr.answered(c, "", "HTTP 503")
	tr.finished(final{orderID: "A", outcome: Confirmed, at: now.Add(20 * time.Millisecond)}, now)
	tr.finished(final{orderID: "A", outcome: PaymentDeclined, at: now.Add(time.Second)}, now) // a redelivery changes nothing
	if !tr.settled() {
		t.Fatalf("not settled: %+v", tr.snapshot())
	}
	if !b.finished || b.latency() != 5*time.Millisecond || a.got != Confirmed || a.latency() != 20*time.Millisecond {
		t.Fatalf("a %+v b %+v", a, b)
	}
	if ids := tr.pendingIDs(); len(ids) != 0 {
		t.Fatalf("pending %v", ids)
	}
}

func TestReportCountsAddUp(t *testing.T) {
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return start.Add(time.Duration(ms) * time.Millisecond) }
	recs := []record{
		{want: Confirmed, offered: at(0), accepted: true, finished: true, final: at(30), got: Confirmed},
		{want: Confirmed, offered: at(10), accepted: true, finished: true, final: at(2000), got: "expired"},
		{want: ShippingFailed, offered: at(20), accepted: true, finished: true, final: at(70), got: ShippingFailed},
		{want: ShippingFailed, offered: at(30), accepted: true},                 // in flight at the end
		{want: Confirmed, offered: at(40), failure: "HTTP 503"},                 // refused
		{want: Confirmed, offered: at(50), failure: boundHit},                   // never sent
		{want: Confirmed, offered: at(60)},                                      // no answer
		{want: PaymentDeclined, offered: at(70), failure: "transport: timeout"}, // nothing finished of this outcome
	}
	r := buildReport(recs, Mix{Confirmed: 3, ShippingFailed: 1, PaymentDeclined: 1}, start, 80*time.Millisecond)
	failures := 0
	for _, n := range r.Failures {
		failures += n
	}
	if r.Offered != 8 || r.Accepted != 4 || failures != 3 || r.Unanswered != 1 || r.Offered != r.Accepted+failures+r.Unanswered {
		t.Fatalf("offered %d = accepted %d + failures %v + unanswered %d?", r.Offered, r.Accepted, r.Failures, r.Unanswered)
	}
	if r.Finished != 3 || r.InFlight != 1 || r.Wrong != 1 || r.Errors() != 4 {
		t.Fatalf("finished %d in flight %d wrong %d errors %d", r.Finished, r.InFlight, r.Wrong, r.Errors())
	}
	got := map[Outcome]OutcomeCount{}
	sum := 0
	for _, o := range r.Outcomes {
		got[o.Outcome] = o
		sum += o.Got
	}
	if sum != r.Finished || got[Confirmed].Asked != 2 || got[Confirmed].Got != 1 || got["expired"].Got != 1 || got[ShippingFailed].Asked != 2 || got[PaymentDeclined].Share != 0.2 {
		t.Fatalf("outcomes %+v", r.Outcomes)
	}
	if r.Latency.N != 3 || r.Latency.Max != 1990*time.Millisecond || r.Latency.P50 != 50*time.Millisecond {
		t.Fatalf("latency %+v", r.Latency)
	}
	var out bytes.Buffer
	r.Print(&out)
	for _, want := range []string{"offered    8 orders", "HTTP 503: 1", "concurrency bound: 1", "wrong outcome: 1", "expired", "p99 1.99s"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

func TestChartIsSelfContained(t *testing.T) {
	secs := []Second{
		{Offered: 20, Finished: 18, Measured: 20, P50: 20 * time.Millisecond, P99: 80 * time.Millisecond},
		{Offered: 20, Finished: 22, Measured: 20, P50: 25 * time.Millisecond, P99: 300 * time.Millisecond},
		{Offered: 20, Finished: 5}, // none of this second's orders finished: a gap in the latency lines
		{Offered: 20, Finished: 20, Measured: 20, P50: 25 * time.Millisecond, P99: 30 * time.Millisecond},
	}
	var b bytes.Buffer
	if err := WriteChart(&b, "load <test>", "summary & table", secs, []Mark{{At: 1, Label: "75/s"}}); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	svgs := regexp.MustCompile(`(?s)<svg.*?</svg>`).FindAllString(page, -1)
	if len(svgs) != 2 {
		t.Fatalf("%d inline SVG panels, want 2", len(svgs))
	}
	for _, svg := range svgs {
		if err := xml.Unmarshal([]byte(svg), new(struct{})); err != nil {
			t.Fatalf("SVG is not well-formed: %v\n%s", err, svg)
		}
		if strings.Count(svg, `<g class="series"`) != 2 {
			t.Fatalf("want two series per panel:\n%s", svg)
		}
	}
	// Latency: each series is a line over seconds 0-1 and a dot at second 3; throughput: one line each.
	if lat, thr := svgs[0], svgs[1]; strings.Count(lat, "<polyline") != 2 || strings.Count(lat, "<circle") != 2 || strings.Count(thr, "<polyline") != 2 || strings.Contains(lat, "NaN") {
		t.Fatalf("gaps not drawn as gaps:\n%s\n%s", lat, thr)
	}
	for _, external := range []string{"<script", "src=", "href=", "@import", "url("} {
		if strings.Contains(page, external) {
			t.Fatalf("chart refers to something outside itself (%s)", external)
		}
	}
	if !strings.Contains(page, "load &lt;test&gt;") || !strings.Contains(page, "75/s") {
		t.Fatal("title or step mark missing or unescaped")
	}
}
