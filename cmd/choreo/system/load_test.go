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
// one, and follows their final events on Kafka.
func TestLoadEveryOutcome(t *testing.T) {
	t.Parallel()
	h := start(t, baseConfig(t))
	r, err := loadgen.Run(t.Context(), loadConfig(t, h, 40))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(r.Source, "Kafka topic "+h.cfg.Host.Namespace+"order.events") {
		t.Fatalf("final events from %q, want Kafka", r.Source)
	}
	checkLoad(t, r, 40)
}

// TestLoadFallsBackToPolling: with Kafka out of reach the generator polls the read model instead.
func TestLoadFallsBackToPolling(t *testing.T) {
	t.Parallel()
	h := start(t, baseConfig(t))
	cfg := loadConfig(t, h, 8)
	cfg.Brokers = []string{"127.0.0.1:1"} // nothing listens there
	r, err := loadgen.Run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(r.Source, "polling GET /v1/orders/{id}") {
		t.Fatalf("final events from %q, want polling", r.Source)
	}
	checkLoad(t, r, 8)
}
