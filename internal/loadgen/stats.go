package loadgen

import (
	"math"
	"slices"
	"time"
)

// Percentiles summarise a set of latencies.
type Percentiles struct {
	N                  int
	P50, P90, P99, Max time.Duration
}

// percentile is the nearest-rank percentile p (0 < p <= 100) of sorted: the smallest value that at
// least p% of the values are at or below. Zero for no values.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// summarise sorts ds in place and returns its percentiles.
func summarise(ds []time.Duration) Percentiles {
	slices.Sort(ds)
	p := Percentiles{N: len(ds), P50: percentile(ds, 50), P90: percentile(ds, 90), P99: percentile(ds, 99)}
	if len(ds) > 0 {
		p.Max = ds[len(ds)-1]
	}
	return p
}

// Second is one second of a run, for the chart.
type Second struct {
	Offered  int           // orders sent in this second
	Finished int           // orders whose final event is in this second
	Measured int           // orders sent in this second that finished: P50 and P99 are theirs
	P50, P99 time.Duration // latency of the orders sent in this second that finished
}

// perSecond buckets records by the second, since origin, in which they were sent (offered, latency) and
// in which their final event happened (finished).
func perSecond(origin time.Time, recs []record) []Second {
	var secs []Second
	at := func(t time.Time) *Second {
		i := max(int(t.Sub(origin)/time.Second), 0)
		for len(secs) <= i {
			secs = append(secs, Second{})
		}
		return &secs[i]
	}
	lat := map[int][]time.Duration{}
	for _, r := range recs {
		if r.offered.IsZero() {
			continue
		}
		at(r.offered).Offered++
		if r.finished {
			at(r.final).Finished++
			i := max(int(r.offered.Sub(origin)/time.Second), 0)
			lat[i] = append(lat[i], r.latency())
		}
	}
	for i, ds := range lat {
		p := summarise(ds)
		secs[i].Measured, secs[i].P50, secs[i].P99 = p.N, p.P50, p.P99
	}
	return secs
}
