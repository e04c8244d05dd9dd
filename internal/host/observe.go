package host

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/choreo-dev/choreo/internal/kafkaadmin"
	"github.com/choreo-dev/choreo/outbox"
)

// observations are a unit's histograms, filled by its relay and consumer as they work, and what the
// Kafka offsets collector needs to know about it.
type observations struct {
	handlerSeconds *prometheus.HistogramVec // by event type
	publishLatency prometheus.Histogram

	admin  kafkaadmin.Admin
	group  string   // the consumer group ("" when the unit consumes nothing)
	topics []string // the topics it consumes, namespaced
}

func newObservations(service string) observations {
	labels := prometheus.Labels{"service": service}
	return observations{
		handlerSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:        "choreo_handler_duration_seconds",
			Help:        "Time a handler took to apply one event inside its batch transaction (failed calls included), by event type.",
			ConstLabels: labels,
			Buckets:     []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10},
		}, []string{"event_type"}),
		publishLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:        "choreo_relay_publish_latency_seconds",
			Help:        "Time from an outbox row's insert (its transaction's commit, within the transaction's length) to Kafka's acknowledgement.",
			ConstLabels: labels,
			Buckets:     []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60},
		}),
	}
}

// handled is the consumer's Config.OnHandled.
func (o observations) handled(eventType string, took time.Duration) {
	o.handlerSeconds.WithLabelValues(eventType).Observe(took.Seconds())
}

// published is the relay's WithOnPublished callback.
func (o observations) published(recs []outbox.Record) {
	now := time.Now()
	for _, r := range recs {
		o.publishLatency.Observe(max(now.Sub(r.CreatedAt), 0).Seconds())
	}
}

func (o observations) collectors() []prometheus.Collector {
	return []prometheus.Collector{o.handlerSeconds, o.publishLatency}
}
