package loadgen

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is what became of one load.
type Report struct {
	Rate        float64       // asked, orders/s
	Offering    time.Duration // how long offering took
	Source      string        // where final events were read
	Interrupted bool          // offering stopped before the schedule ended

	Offered    int            // orders due by the schedule and offered
	Accepted   int            // answered 202
	Failures   map[string]int // not accepted, by reason: "HTTP 503", "transport: timeout", "concurrency bound"
	Unanswered int            // POSTs with no answer by the end of the drain
	Finished   int            // accepted and seen final
	InFlight   int            // accepted, not final by the end of the drain
	Wrong      int            // finished with another outcome than asked for
	Outcomes   []OutcomeCount

	Latency      Percentiles   // POST to final event, of the finished orders
	FinishedRate float64       // finished orders per second, from the first offer to the last final event (or the end of offering)
	Late         int           // sends more than the tolerance behind the schedule
	MaxLate      time.Duration // the latest send
	// HostCPU is the share of this host's CPU (all cores, all processes) busy while offering, from
	// /proc/stat; -1 where unknown. When the system runs on the same machine, a share near 1 says the
	// rate ran out of CPU.
	HostCPU  float64
	HostCPUs int // the host's cpus, with HostCPU

	Start  time.Time // of offering; Series counts seconds from here
	Series []Second

	Hops *Hops // where the time went, step by step (Config.Hops); nil: not measured
}

// OutcomeCount compares one outcome's orders with the mix.
type OutcomeCount struct {
	Outcome Outcome
	Share   float64 // of the mix, 0..1
	Asked   int     // accepted orders that were to end so
	Got     int     // finished orders that ended so
}

// AchievedRate is the rate at which orders really were offered.
func (r Report) AchievedRate() float64 { return rate(r.Offered, r.Offering) }

// Errors counts the orders that went wrong: not accepted, or ended with another outcome than asked for.
func (r Report) Errors() int {
	n := r.Wrong
	for _, c := range r.Failures {
		n += c
	}
	return n
}

// FinishedShare is the share of the offered orders that finished.
func (r Report) FinishedShare() float64 {
	if r.Offered == 0 {
		return 0
	}
	return float64(r.Finished) / float64(r.Offered)
}

func rate(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// buildReport counts the records of a phase that offered from start for offering.
func buildReport(recs []record, mix Mix, start time.Time, offering time.Duration) Report {
	r := Report{Offered: len(recs), Failures: map[string]int{}, Start: start, Offering: offering}
	asked, got := map[Outcome]int{}, map[Outcome]int{}
	var lat []time.Duration
	var last time.Time
	for _, rec := range recs {
		switch {
		case rec.failure != "":
			r.Failures[rec.failure]++
			continue
		case !rec.accepted:
			r.Unanswered++
			continue
		}
		r.Accepted++
		asked[rec.want]++
		if !rec.finished {
			r.InFlight++
			continue
		}
		r.Finished++
		got[rec.got]++
		if rec.got != rec.want {
			r.Wrong++
		}
		lat = append(lat, rec.latency())
		if rec.final.After(last) {
			last = rec.final
		}
	}
	r.Latency = summarise(lat)
	if r.Finished > 0 {
		r.FinishedRate = rate(r.Finished, max(last.Sub(start), offering))
	}
	for _, o := range outcomes {
		if mix[o] > 0 || got[o] > 0 {
			r.Outcomes = append(r.Outcomes, OutcomeCount{Outcome: o, Share: mix.share(o), Asked: asked[o], Got: got[o]})
		}
	}
	for _, o := range slices.Sorted(maps.Keys(got)) { // outcomes nobody asked for, such as expired
		if !slices.Contains(outcomes, o) {
			r.Outcomes = append(r.Outcomes, OutcomeCount{Outcome: o, Got: got[o]})
		}
	}
	r.Series = perSecond(start, recs)
	return r
}

// Print writes the report for a reader.
func (r Report) Print(w io.Writer) {
	fmt.Fprintf(w, "final events: %s\n", r.Source)
	if r.Interrupted {
		fmt.Fprintln(w, "interrupted: offering stopped early; the report covers what was offered")
	}
	fmt.Fprintf(w, "offered    %d orders in %.1fs: asked %.1f/s, achieved %.1f/s; late sends %d (latest %s)\n",
		r.Offered, r.Offering.Seconds(), r.Rate, r.AchievedRate(), r.Late, ms(r.MaxLate))
	fmt.Fprintf(w, "accepted   %d; finished %d (%.1f%% of offered) at %.1f/s; still in flight %d; no answer %d\n",
		r.Accepted, r.Finished, 100*r.FinishedShare(), r.FinishedRate, r.InFlight, r.Unanswered)
	if r.HostCPU >= 0 {
		fmt.Fprintf(w, "host CPU   %s busy while offering (this machine's %d cpus, every process on it)\n", cpuPercent(r.HostCPU), r.HostCPUs)
	}
	l := r.Latency
	fmt.Fprintf(w, "latency    POST -> final event: p50 %s  p90 %s  p99 %s  max %s  (%d orders)\n", ms(l.P50), ms(l.P90), ms(l.P99), ms(l.Max), l.N)
	fmt.Fprintf(w, "errors     %d", r.Errors())
	if r.Errors() == 0 {
		fmt.Fprintln(w)
	} else {
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(r.Failures)) {
			parts = append(parts, fmt.Sprintf("%s: %d", k, r.Failures[k]))
		}
		if r.Wrong > 0 {
			parts = append(parts, fmt.Sprintf("wrong outcome: %d", r.Wrong))
		}
		fmt.Fprintf(w, " (%s)\n", strings.Join(parts, ", "))
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "outcome\tmix\tasked\tgot\t")
	for _, o := range r.Outcomes {
		fmt.Fprintf(tw, "%s\t%.1f%%\t%d\t%d\t\n", o.Outcome, 100*o.Share, o.Asked, o.Got)
	}
	tw.Flush()
	if r.Hops != nil {
		r.Hops.Print(w)
	}
}
