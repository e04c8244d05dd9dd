package loadgen

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeIngress accepts every order and confirms it at once, but takes slow after the first fast orders
// (the final event is stamped slow after the POST): a system whose knee is known in advance. With cold,
// its first orders are slow too, as a system that starts cold.
type fakeIngress struct {
	mu        sync.Mutex
	cold      int           // the first orders, slow
	fast      int           // orders confirmed 1ms after their POST, after the cold ones
	slow      time.Duration // the latency of the cold orders and of every order after the fast ones
	n         int
	customers int
	finals    map[string]time.Time
	seeded    map[string]int
}

func (f *fakeIngress) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, "/v1/products/"):
		var p struct{ Stock int }
		_ = json.NewDecoder(r.Body).Decode(&p)
		f.seeded[strings.TrimPrefix(r.URL.Path, "/v1/products/")] = p.Stock
		w.WriteHeader(http.StatusOK)
	case r.Method == http.MethodPost && r.URL.Path == "/v1/customers":
		f.customers++
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"id":"customer-%d"}`, f.customers)
	case r.Method == http.MethodPost && r.URL.Path == "/v1/orders":
		f.n++
		id := fmt.Sprintf("order-%d", f.n)
		lat := f.slow
		if f.n > f.cold && f.n <= f.cold+f.fast {
			lat = time.Millisecond
		}
		f.finals[id] = time.Now().Add(lat)
		w.WriteHeader(http.StatusAccepted)
		fmt.Fprintf(w, `{"id":%q,"status":"PENDING"}`, id)
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/v1/orders/"):
		at, ok := f.finals[strings.TrimPrefix(r.URL.Path, "/v1/orders/")]
		if !ok {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintf(w, `{"status":"CONFIRMED","timeline":[{"type":"order.placed","time":%q},{"type":"order.confirmed","time":%q}]}`,
			at.Add(-time.Millisecond).Format(time.RFC3339Nano), at.Format(time.RFC3339Nano))
	default:
		http.Error(w, "unexpected "+r.Method+" "+r.URL.Path, http.StatusTeapot)
	}
}

// TestFindMaxStopsAtTheKnee: steps of 50, 75 and 113 orders/s, 0.4s each; the fake's first 50 orders
// (steps 1 and 2) are fast, then every order takes 5s: step 3 fails on p99 and the knee is 75/s.
func TestFindMaxStopsAtTheKnee(t *testing.T) {
	fake := &fakeIngress{fast: 50, slow: 5 * time.Second, finals: map[string]time.Time{}, seeded: map[string]int{}}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	var progress bytes.Buffer
	m, err := FindMax(t.Context(), Config{
		URL:          srv.URL,
		Brokers:      []string{"127.0.0.1:1"}, // no Kafka: the read model is polled
		Catalog:      Catalog{Products: 3, Lines: 1},
		Drain:        30 * time.Second, // an upper bound; a step ends once all its orders are final
		PollInterval: 10 * time.Millisecond,
		Progress:     Progress{W: &progress},
		FindMax:      FindMaxConfig{Start: 50, Factor: 1.5, Step: 400 * time.Millisecond, MaxP99: time.Second},
	})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	m.Print(&out)
	t.Logf("%s\n%s", progress.String(), out.String())
	if len(m.Steps) != 3 || m.Knee != 1 {
		t.Fatalf("%d steps, knee at %d; want 3 steps and the knee at the second", len(m.Steps), m.Knee)
	}
	for i, want := range []struct {
		rate    float64
		offered int
		passed  bool
	}{{50, 20, true}, {75, 30, true}, {113, 45, false}} {
		s := m.Steps[i]
		if s.Rate != want.rate || s.Offered != want.offered || s.Passed != want.passed || s.Finished != s.Offered {
			t.Errorf("step %d: rate %v offered %d finished %d passed %v (%s); want rate %v offered %d passed %v",
				i+1, s.Rate, s.Offered, s.Finished, s.Passed, s.Why, want.rate, want.offered, want.passed)
		}
	}
	if !strings.Contains(m.Steps[2].Why, "p99") || !strings.Contains(out.String(), "knee: 75 orders/s") {
		t.Fatalf("step 3 failed for %q; report:\n%s", m.Steps[2].Why, out.String())
	}
	if fake.seeded["LOAD-NOSTOCK"] != 0 || fake.seeded["LOAD-P01"] != seedStock || len(fake.seeded) != 4 {
		t.Fatalf("seeded %v", fake.seeded)
	}
	if len(m.Marks) != 3 || m.Marks[1].At < m.Marks[0].At || len(m.Series) < m.Marks[2].At {
		t.Fatalf("marks %+v over %d seconds", m.Marks, len(m.Series))
	}
}

// TestTheWarmUpIsOfferedButNotJudged: a system whose first 10 orders are slow fails the first step
// without a warm-up; with one, the warm-up takes them, is reported, and the steps after it pass.
func TestTheWarmUpIsOfferedButNotJudged(t *testing.T) {
	run := func(warmup time.Duration) (MaxReport, string) {
		fake := &fakeIngress{cold: 10, fast: 1000, slow: 1500 * time.Millisecond, finals: map[string]time.Time{}, seeded: map[string]int{}}
		srv := httptest.NewServer(fake)
		defer srv.Close()
		m, err := FindMax(t.Context(), Config{
			URL:          srv.URL,
			Brokers:      []string{"127.0.0.1:1"},
			Catalog:      Catalog{Products: 3, Lines: 1},
			Drain:        30 * time.Second,
			PollInterval: 10 * time.Millisecond,
			FindMax:      FindMaxConfig{Start: 50, Factor: 1.5, Step: 400 * time.Millisecond, MaxP99: time.Second, MaxRate: 75, Warmup: warmup},
		})
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		m.Print(&out)
		return m, out.String()
	}
	cold, out := run(0)
	if cold.Warmup != nil || cold.Knee != -1 || len(cold.Steps) != 1 || !strings.Contains(cold.Steps[0].Why, "p99") {
		t.Fatalf("without a warm-up: knee %d after %d steps, first step %q; want it failed on p99\n%s", cold.Knee, len(cold.Steps), cold.Steps[0].Why, out)
	}
	// A negative warm-up is refused before anything is offered.
	if _, err := FindMax(t.Context(), Config{URL: "http://127.0.0.1:1", Catalog: Catalog{Products: 3, Lines: 1},
		FindMax: FindMaxConfig{Start: 50, Factor: 1.5, Step: time.Second, MaxP99: time.Second, Warmup: -time.Second}}); err == nil || !strings.Contains(err.Error(), "warm-up") {
		t.Fatalf("a negative warm-up: err %v, want it refused", err)
	}
	warm, out := run(400 * time.Millisecond)
	if w := warm.Warmup; w == nil || w.Rate != 50 || w.Offered != 20 || w.Latency.P99 < time.Second || !strings.Contains(out, "warm-up: 50/s for 400ms, not judged") {
		t.Fatalf("warm-up %+v; report:\n%s", warm.Warmup, out)
	}
	if len(warm.Steps) != 2 || warm.Knee != 1 || !warm.Steps[0].Passed {
		t.Fatalf("after a warm-up: %d steps, knee at %d; want both steps (50/s, 75/s) passed\n%s", len(warm.Steps), warm.Knee, out)
	}
	// Stopped during the warm-up: no step ran, and the report does not call the first rate failed.
	var stopped bytes.Buffer
	MaxReport{Config: FindMaxConfig{Start: 50}, Knee: -1, Warmup: warm.Warmup}.Print(&stopped)
	if !strings.Contains(stopped.String(), "stopped before the first step") || strings.Contains(stopped.String(), "failed") {
		t.Fatalf("report of a run stopped in its warm-up:\n%s", stopped.String())
	}
}

func TestFindMaxJudge(t *testing.T) {
	f := FindMaxConfig{MaxP99: 250 * time.Millisecond, MinFinished: 0.95}
	cases := []struct {
		name string
		r    Report
		pass bool
	}{
		{"fast, all finished", Report{Offered: 100, Finished: 100, Latency: Percentiles{P99: 100 * time.Millisecond}}, true},
		{"exactly at the limits", Report{Offered: 100, Finished: 95, Latency: Percentiles{P99: 250 * time.Millisecond}}, true},
		{"p99 too high", Report{Offered: 100, Finished: 100, Latency: Percentiles{P99: 251 * time.Millisecond}}, false},
		{"too few finished", Report{Offered: 100, Finished: 94, Latency: Percentiles{P99: 10 * time.Millisecond}}, false},
		{"interrupted", Report{Offered: 10, Finished: 10, Interrupted: true}, false},
		{"nothing offered", Report{}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if pass, why := f.judge(c.r); pass != c.pass || (!pass && why == "") {
				t.Fatalf("judge = %v %q, want %v", pass, why, c.pass)
			}
		})
	}
}
