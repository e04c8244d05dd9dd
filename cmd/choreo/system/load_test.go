package system_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/choreo-dev/choreo/internal/loadgen"
	"github.com/choreo-dev/choreo/internal/testing/testenv"
	"github.com/choreo-dev/choreo/sagas"
)

// loadConfig is a short, bounded load against h with every outcome in the mix.
func loadConfig(t *testing.T, h *harness, count int) loadgen.Config {
	prefix := strings.ToUpper(testenv.Name(t, "ld")) + "-"
	return loadgen.Config{
		URL:      h.url,
		Brokers:  h.cfg.Brokers,
		Topic:    h.cfg.Host.Namespace + sagas.Topic(sagas.Order),
		Rate:     20,
		Count:    count,
		Mix:      loadgen.Mix{loadgen.Confirmed: 1, loadgen.PaymentDeclined: 1, loadgen.OutOfStock: 1, loadgen.ShippingFailed: 1},
		Catalog:  loadgen.Catalog{Prefix: prefix, Products: 5, HotShare: 0.5, Lines: 2},
		Drain:    90 * time.Second, // an upper bound: the run ends as soon as every order is final
		Progress: loadgen.Progress{W: testWriter{t}},
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// checkLoad asserts that every offered order was accepted and seen final with the outcome it was
// planned for, and that the report's counts add up.
func checkLoad(t *testing.T, r loadgen.Report, count int) {
	t.Helper()
	var out bytes.Buffer
	r.Print(&out)
	t.Logf("report:\n%s", out.String())
	if r.Interrupted || r.Offered != count || r.Accepted != count || r.Finished != count || r.InFlight != 0 || r.Unanswered != 0 {
		t.Fatalf("offered %d accepted %d finished %d in flight %d unanswered %d, want all %d final", r.Offered, r.Accepted, r.Finished, r.InFlight, r.Unanswered, count)
	}
	if r.Errors() != 0 || r.Wrong != 0 || len(r.Failures) != 0 {
		t.Fatalf("errors %d (failures %v, wrong outcomes %d)", r.Errors(), r.Failures, r.Wrong)
	}
	got, asked := 0, 0
	for _, o := range r.Outcomes {
		if o.Asked != count/4 || o.Got != count/4 {
			t.Errorf("%s: asked %d got %d, want %d each", o.Outcome, o.Asked, o.Got, count/4)
		}
		got, asked = got+o.Got, asked+o.Asked
	}
	if len(r.Outcomes) != 4 || got != r.Finished || asked != r.Accepted {
		t.Fatalf("outcomes %+v do not add up to finished %d / accepted %d", r.Outcomes, r.Finished, r.Accepted)
	}
	if r.Latency.N != count || r.Latency.P50 <= 0 || r.Latency.P50 > r.Latency.P99 || r.Latency.P99 > r.Latency.Max {
		t.Fatalf("latency %+v", r.Latency)
	}
	offered, finished := 0, 0
	for _, s := range r.Series {
		offered, finished = offered+s.Offered, finished+s.Finished
	}
	if offered != count || finished != count {
		t.Fatalf("the chart's seconds hold %d offered and %d finished, want %d", offered, finished, count)
	}
}

// TestLoadEveryOutcome offers 40 orders at 20/s, a quarter of each outcome over five products and a hot
// one, follows their final events on Kafka, and then reads their events back to break them down by step.
func TestLoadEveryOutcome(t *testing.T) {
	t.Parallel()
	h := start(t, baseConfig(t))
	cfg := loadConfig(t, h, 40)
	cfg.Hops = true
	for _, topic := range sagas.Topics() {
		cfg.Topics = append(cfg.Topics, h.cfg.Host.Namespace+topic)
	}
	r, err := loadgen.Run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(r.Source, "Kafka topic "+h.cfg.Host.Namespace+"order.events") {
		t.Fatalf("final events from %q, want Kafka", r.Source)
	}
	checkLoad(t, r, 40)
	checkHops(t, r.Hops, 40)
}

// checkHops asserts that the breakdown covers every order: each one's final event is traced to its cause,
// and the order service sent at least the placement and the final event of each.
func checkHops(t *testing.T, h *loadgen.Hops, count int) {
	t.Helper()
	if h == nil {
		t.Fatal("no step breakdown")
	}
	if h.Orders != count {
		t.Errorf("breakdown of %d orders, want %d", h.Orders, count)
	}
	finals, first := 0, ""
	for i, s := range h.Steps {
		if s.Delay.N == 0 || s.Service != sagas.Emitter(s.Effect) || s.Delay.P50 > s.Delay.Max {
			t.Errorf("step %+v", s)
		}
		if i == 0 {
			first = s.Cause
		}
		if s.Effect == "order.confirmed" || s.Effect == "order.cancelled" {
			finals += s.Delay.N
		}
	}
	if finals != count || first != "order.placed" {
		t.Errorf("final events traced to their cause: %d, want %d; first step from %q, want order.placed", finals, count, first)
	}
	for _, s := range h.Sends {
		if s.Service == sagas.Order && s.Delay.N < 2*count {
			t.Errorf("order sent %d events, want at least %d", s.Delay.N, 2*count)
		}
	}
}

// TestLoadFallsBackToPolling: with Kafka out of reach the generator polls the read model instead.
func TestLoadFallsBackToPolling(t *testing.T) {
	t.Parallel()
	h := start(t, baseConfig(t))
	cfg := loadConfig(t, h, 8)
	cfg.Brokers = []string{"127.0.0.1:1"} // nothing listens there
	cfg.Hops = true                       // asked for, but there is no Kafka to read the events back from
	r, err := loadgen.Run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(r.Source, "polling GET /v1/orders/{id}") {
		t.Fatalf("final events from %q, want polling", r.Source)
	}
	checkLoad(t, r, 8)
	if r.Hops != nil {
		t.Fatalf("a step breakdown without Kafka: %+v", r.Hops)
	}
}
