package order

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// sagaMetrics count how sagas end and how long they took, as the order service settles them; the host
// serves them on /metrics (Service is a prometheus.Collector). Counted only once the settling transaction
// committed, so a retried batch does not count twice.
type sagaMetrics struct {
	outcomes  *prometheus.CounterVec
	durations *prometheus.HistogramVec
}

func newSagaMetrics() sagaMetrics {
	return sagaMetrics{
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "choreo_saga_outcomes_total",
			Help: "Orders settled, by outcome (confirmed, cancelled) and reason (out_of_stock, payment_declined, shipping_failed, expired; empty when confirmed).",
		}, []string{"outcome", "reason"}),
		durations: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "choreo_saga_duration_seconds",
			Help:    "Time from order.placed to the order's final event (order.confirmed or order.cancelled), by outcome.",
			Buckets: []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600},
		}, []string{"outcome"}),
	}
}

func (m sagaMetrics) observe(st settlement) {
	outcome := strings.ToLower(st.status)
	m.outcomes.WithLabelValues(outcome, st.reason).Inc()
	m.durations.WithLabelValues(outcome).Observe(st.took.Seconds())
}

// Describe is part of prometheus.Collector: the saga metrics.
func (m sagaMetrics) Describe(ch chan<- *prometheus.Desc) {
	m.outcomes.Describe(ch)
	m.durations.Describe(ch)
}

// Collect is part of prometheus.Collector.
func (m sagaMetrics) Collect(ch chan<- prometheus.Metric) {
	m.outcomes.Collect(ch)
	m.durations.Collect(ch)
}

// Describe is part of prometheus.Collector: the service serves its saga metrics.
func (s *Service) Describe(ch chan<- *prometheus.Desc) { s.metrics.Describe(ch) }

// Collect is part of prometheus.Collector.
func (s *Service) Collect(ch chan<- prometheus.Metric) { s.metrics.Collect(ch) }
