package system_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/choreo-dev/choreo/cmd/choreo/system"
	"github.com/choreo-dev/choreo/consumer"
	"github.com/choreo-dev/choreo/internal/host"
	"github.com/choreo-dev/choreo/internal/telemetry"
	"github.com/choreo-dev/choreo/internal/testing/testenv"
	"github.com/choreo-dev/choreo/sagas"
)

// One order is one trace: the front door's request span, and under it each service's handler span and
// each relay publish, every span's parent in the same trace, across all five services.
func TestEveryOrderIsOneTraceAcrossTheServices(t *testing.T) {
	t.Parallel()
	exp := tracetest.NewInMemoryExporter()
	cfg := baseConfig(t)
	cfg.Host.Tracing = telemetry.WithExporter(exp).Providers()
	h := start(t, cfg)
	s := sku(t)
	h.putProduct(s, 1000, 10)

	confirmed := h.place(newOrder(h.customer("alice"), s, 1, "tok_visa", "US"))
	compensated := h.place(newOrder(h.customer("bob"), s, 1, "tok_visa", "XX")) // shipping fails: refund, release
	h.settled(confirmed, "order.confirmed", "stock.sold", "notification.sent")
	h.settled(compensated, "order.cancelled", "payment.refunded", "stock.released", "notification.sent")

	every := []string{"ingress", sagas.Order, sagas.Inventory, sagas.Payment, sagas.Shipping, sagas.Notification}
	traces := map[string]trace.TraceID{}
	for _, id := range []string{confirmed, compensated} {
		// Polled: the last publishes (the notification's) may still be in flight. A timeout names the flaw.
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			tr, problem := orderTrace(exp.GetSpans(), id, every)
			if problem == "" {
				traces[id] = tr
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("after 30s: %s", problem)
			}
		}
	}
	if traces[confirmed] == traces[compensated] {
		t.Errorf("two orders share trace %s", traces[confirmed])
	}
}

// orderTrace finds the trace of order id among spans and says what is wrong with it ("" when nothing):
// every span about the order is in one trace, which is connected (each span's parent is in it, but for
// the root: the HTTP request; a handler's parent is the publish of its event), and has spans of every
// service of want.
func orderTrace(spans tracetest.SpanStubs, id string, want []string) (trace.TraceID, string) {
	var tr trace.TraceID
	for _, s := range spans {
		if attr(s, "choreo.order_id") != id {
			continue
		}
		if tr.IsValid() && s.SpanContext.TraceID() != tr {
			return tr, fmt.Sprintf("order %s has spans in traces %s and %s (%s)", id, tr, s.SpanContext.TraceID(), s.Name)
		}
		tr = s.SpanContext.TraceID()
	}
	if !tr.IsValid() {
		return tr, "no span names order " + id
	}
	ids := map[trace.SpanID]tracetest.SpanStub{}
	services := map[string]bool{}
	var in []tracetest.SpanStub
	for _, s := range spans {
		if s.SpanContext.TraceID() == tr {
			in = append(in, s)
			ids[s.SpanContext.SpanID()] = s
			services[service(s)] = true
		}
	}
	roots := 0
	for _, s := range in {
		switch {
		case !s.Parent.IsValid():
			roots++
			if service(s) != "ingress" || s.SpanKind != trace.SpanKindServer {
				return tr, fmt.Sprintf("order %s: root span %q of %s, want the HTTP request", id, s.Name, service(s))
			}
		default:
			parent, ok := ids[s.Parent.SpanID()]
			if !ok {
				return tr, fmt.Sprintf("order %s: span %q of %s has a parent not (yet) in the trace", id, s.Name, service(s))
			}
			// An event's handling follows the relay's publish of it, not the handler that caused it.
			if s.SpanKind == trace.SpanKindConsumer && parent.SpanKind != trace.SpanKindProducer {
				return tr, fmt.Sprintf("order %s: %q of %s is a child of %q, not of a publish", id, s.Name, service(s), parent.Name)
			}
		}
	}
	if roots != 1 {
		return tr, fmt.Sprintf("order %s: trace has %d roots", id, roots)
	}
	for _, w := range want {
		if !services[w] {
			return tr, fmt.Sprintf("order %s: trace has spans of %v, none of %s", id, keys(services), w)
		}
	}
	handled, published := false, false
	for _, s := range in {
		handled = handled || s.Name == "handle order.placed"
		published = published || strings.HasPrefix(s.Name, "publish ") && strings.HasSuffix(s.Name, sagas.Topic(sagas.Order))
	}
	if !handled || !published {
		return tr, fmt.Sprintf("order %s: a handler span of order.placed %v, a publish span on order.events %v", id, handled, published)
	}
	return tr, ""
}

func attr(s tracetest.SpanStub, key string) string {
	for _, a := range s.Attributes {
		if string(a.Key) == key {
			return a.Value.Emit()
		}
	}
	return ""
}

func service(s tracetest.SpanStub) string {
	for _, a := range s.Resource.Attributes() {
		if a.Key == "service.name" {
			return a.Value.AsString()
		}
	}
	return ""
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// /metrics serves the saga's outcomes and durations, handler and relay latencies, consumer lag and the
// depth of each service's dead letters, and nothing MetricFamilies (what `choreo help -json` lists) lacks.
func TestMetricsShowOutcomesLatenciesLagAndDeadLetters(t *testing.T) {
	t.Parallel()
	cfg := baseConfig(t)
	h := start(t, cfg)
	s := sku(t)
	h.putProduct(s, 1000, 10)
	confirmed := h.place(newOrder(h.customer("alice"), s, 1, "tok_visa", "US"))
	cancelled := h.place(newOrder(h.customer("bob"), s, 1, "tok_visa", "XX"))
	h.settled(confirmed, "order.confirmed", "notification.sent")
	h.settled(cancelled, "order.cancelled", "notification.sent")

	// A message no one can decode: every consumer of order.events dead-letters it.
	orderTopic := cfg.Host.Namespace + sagas.Topic(sagas.Order)
	w := &kafka.Writer{Addr: kafka.TCP(cfg.Brokers...), Topic: orderTopic, BatchTimeout: time.Millisecond, RequiredAcks: kafka.RequireAll}
	if err := w.WriteMessages(context.Background(), kafka.Message{Key: []byte("garbage"), Value: []byte("not an event")}); err != nil {
		t.Fatal(err)
	}
	w.Close()
	readers := 0 // each consumer group and each live projection of the topic dead-letters it once
	for _, spec := range system.Specs(cfg) {
		if slices.Contains(spec.Consumes, sagas.Topic(sagas.Order)) {
			readers++
		}
		for _, p := range spec.Projections {
			if slices.Contains(p.Topics(), sagas.Topic(sagas.Order)) {
				readers++
			}
		}
	}
	dlq := orderTopic + consumer.DLQSuffix
	inventory := model.LabelSet{"service": sagas.Inventory, "topic": model.LabelValue(dlq)}
	payment := model.LabelSet{"service": sagas.Payment, "topic": model.LabelValue(dlq)}

	var fams map[string]*dto.MetricFamily
	testenv.Eventually(t, 60*time.Second, "every consumer to dead-letter the garbage and catch up", func() bool {
		fams = scrape(t, h.url)
		return value(fams, "choreo_dead_letters", inventory) == float64(readers) && totalLag(fams) == 0
	})

	t.Run("saga outcomes and durations", func(t *testing.T) {
		if v := value(fams, "choreo_saga_outcomes_total", model.LabelSet{"outcome": "confirmed", "reason": ""}); v != 1 {
			t.Errorf("confirmed sagas %v, want 1", v)
		}
		if v := value(fams, "choreo_saga_outcomes_total", model.LabelSet{"outcome": "cancelled", "reason": "shipping_failed"}); v != 1 {
			t.Errorf("sagas cancelled for shipping_failed %v, want 1", v)
		}
		for _, outcome := range []model.LabelValue{"confirmed", "cancelled"} {
			if n := histCount(fams, "choreo_saga_duration_seconds", model.LabelSet{"outcome": outcome}); n != 1 {
				t.Errorf("%s saga durations observed %d, want 1", outcome, n)
			}
		}
	})
	t.Run("handler and relay latencies", func(t *testing.T) {
		for _, svc := range []string{sagas.Inventory, sagas.Payment, sagas.Shipping, sagas.Notification} {
			if n := histCount(fams, "choreo_handler_duration_seconds", model.LabelSet{"service": model.LabelValue(svc), "event_type": "order.placed"}); n != 2 {
				t.Errorf("%s handled order.placed %d times, want 2", svc, n)
			}
		}
		if n := histCount(fams, "choreo_relay_publish_latency_seconds", model.LabelSet{"service": sagas.Order}); n < 4 {
			t.Errorf("order relay publish latencies %d, want at least 4 (two order.placed, two outcomes)", n)
		}
	})
	t.Run("lag per group and partition", func(t *testing.T) {
		series := 0
		for _, m := range fams["choreo_consumer_lag_messages"].GetMetric() {
			if labels(m)["group"] == model.LabelValue(cfg.Host.Namespace+sagas.Payment) {
				series++
			}
		}
		want := 0
		for _, spec := range system.Specs(cfg) {
			if spec.Name == sagas.Payment {
				want = len(spec.Consumes) * cfg.Partitions
			}
		}
		if series != want {
			t.Errorf("payment's lag in %d series, want %d (topics × partitions)", series, want)
		}
	})
	t.Run("dead letters per service, until redriven", func(t *testing.T) {
		r := consumer.Redriver{Brokers: cfg.Brokers, Group: cfg.Host.Namespace + sagas.Inventory, Pool: h.pool(sagas.Inventory)}
		if _, err := r.Redrive(context.Background(), dlq, nil); err != nil {
			t.Fatal(err)
		}
		testenv.Eventually(t, 30*time.Second, "inventory's dead letters to read 0 after its redrive", func() bool {
			fams = scrape(t, h.url)
			return value(fams, "choreo_dead_letters", inventory) == 0
		})
		if v := value(fams, "choreo_dead_letters", payment); v != float64(readers) {
			t.Errorf("payment's dead letters %v after inventory's redrive, want %d", v, readers)
		}
	})
	t.Run("help lists every family served", func(t *testing.T) {
		listed := map[string]bool{}
		for _, m := range host.MetricFamilies(system.Specs(cfg)) {
			listed[m.Name] = true
		}
		for name := range fams {
			if !listed[name] {
				t.Errorf("/metrics serves %s, which host.MetricFamilies does not list", name)
			}
		}
	})
}

func scrape(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		t.Fatal(err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(&buf)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

func labels(m *dto.Metric) model.LabelSet {
	ls := model.LabelSet{}
	for _, l := range m.GetLabel() {
		ls[model.LabelName(l.GetName())] = model.LabelValue(l.GetValue())
	}
	return ls
}

// matching returns the series of family name whose labels include want.
func matching(fams map[string]*dto.MetricFamily, name string, want model.LabelSet) []*dto.Metric {
	var out []*dto.Metric
	for _, m := range fams[name].GetMetric() {
		ls := labels(m)
		ok := true
		for k, v := range want {
			ok = ok && ls[k] == v
		}
		if ok {
			out = append(out, m)
		}
	}
	return out
}

// value sums the gauges or counters of family name whose labels include want (-1: none).
func value(fams map[string]*dto.MetricFamily, name string, want model.LabelSet) float64 {
	ms := matching(fams, name, want)
	if len(ms) == 0 {
		return -1
	}
	sum := 0.0
	for _, m := range ms {
		sum += m.GetGauge().GetValue() + m.GetCounter().GetValue()
	}
	return sum
}

func histCount(fams map[string]*dto.MetricFamily, name string, want model.LabelSet) uint64 {
	var n uint64
	for _, m := range matching(fams, name, want) {
		n += m.GetHistogram().GetSampleCount()
	}
	return n
}

func totalLag(fams map[string]*dto.MetricFamily) float64 {
	if len(fams["choreo_consumer_lag_messages"].GetMetric()) == 0 {
		return -1
	}
	return value(fams, "choreo_consumer_lag_messages", nil)
}
