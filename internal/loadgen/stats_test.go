package loadgen

import (
	"testing"
	"time"
)

func msList(vs ...int) []time.Duration {
	var ds []time.Duration
	for _, v := range vs {
		ds = append(ds, time.Duration(v)*time.Millisecond)
	}
	return ds
}

func TestPercentiles(t *testing.T) {
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = 100 - i // 100..1, unsorted
	}
	cases := []struct {
		name               string
		in                 []time.Duration
		p50, p90, p99, max int
	}{
		{"none", nil, 0, 0, 0, 0},
		{"one", msList(7), 7, 7, 7, 7},
		{"two", msList(9, 1), 1, 9, 9, 9},
		{"1..100", msList(hundred...), 50, 90, 99, 100},
		{"outlier", msList(5, 5, 5, 5, 5, 5, 5, 5, 5, 1000), 5, 5, 1000, 1000},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := summarise(c.in)
			got := []time.Duration{p.P50, p.P90, p.P99, p.Max}
			want := msList(c.p50, c.p90, c.p99, c.max)
			for i := range got {
				if got[i] != want[i] {
					t.Fatalf("p50/p90/p99/max = %v, want %v", got, want)
				}
			}
			if p.N != len(c.in) {
				t.Fatalf("N %d", p.N)
			}
		})
	}
}

func TestPerSecond(t *testing.T) {
	origin := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return origin.Add(time.Duration(ms) * time.Millisecond) }
	recs := []record{
		{offered: at(100), finished: true, final: at(150)},  // second 0, 50ms
		{offered: at(900), finished: true, final: at(1300)}, // sent in 0, finished in 1, 400ms
		{offered: at(1200)}, // second 1, never finished
		{offered: at(2500), finished: true, final: at(2510)},
	}
	secs := perSecond(origin, recs)
	if len(secs) != 3 {
		t.Fatalf("%d seconds: %+v", len(secs), secs)
	}
	want := []Second{
		{Offered: 2, Finished: 1, Measured: 2, P50: 50 * time.Millisecond, P99: 400 * time.Millisecond},
		{Offered: 1, Finished: 1},
		{Offered: 1, Finished: 1, Measured: 1, P50: 10 * time.Millisecond, P99: 10 * time.Millisecond},
	}
	for i := range want {
		if secs[i] != want[i] {
			t.Fatalf("second %d: %+v, want %+v", i, secs[i], want[i])
		}
	}
}
