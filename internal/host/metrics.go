package host

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics serves /metrics for the given units: each unit's relay (published rows, retries, backlog and the
// age of its oldest row, whether it is the active instance, publish latency) and consumer (applied,
// duplicate, ignored and dead-lettered events, retries, fetch errors, handler durations), read from the
// components at scrape time; consumer lag and dead-letter depth from Kafka's offsets (cached for a few
// seconds); what a service measures itself (a Service that is also a prometheus.Collector: the order
// service's saga outcomes and durations); and the Go runtime. Labels: service.
func Metrics(mux *http.ServeMux, units ...*Unit) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		unitCollector(units), &offsetsCollector{units: units})
	for _, u := range units {
		reg.MustRegister(u.obs.collectors()...)
		if c, ok := u.svc.(prometheus.Collector); ok {
			reg.MustRegister(c)
		}
	}
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
}

type unitCollector []*Unit

var (
	labels         = []string{"service"}
	relayPublished = prometheus.NewDesc("choreo_relay_published_total", "Outbox rows published to Kafka and deleted.", labels, nil)
	relayRetries   = prometheus.NewDesc("choreo_relay_retries_total", "Failed Kafka writes or database calls the relay retried.", labels, nil)
	relayActive    = prometheus.NewDesc("choreo_relay_active", "1 when this instance holds the outbox lock.", labels, nil)
	relayBacklog   = prometheus.NewDesc("choreo_outbox_backlog_rows", "Rows waiting in the outbox.", labels, nil)
	relayOldest    = prometheus.NewDesc("choreo_outbox_oldest_age_seconds", "Age of the oldest row waiting in the outbox: the publish lag.", labels, nil)
	consApplied    = prometheus.NewDesc("choreo_consumer_events_total", "Events whose offset moved on, by outcome.", []string{"service", "outcome"}, nil)
	consRetries    = prometheus.NewDesc("choreo_consumer_retries_total", "Batches retried after a failure.", labels, nil)
	consConflicts  = prometheus.NewDesc("choreo_consumer_lock_conflicts_total", "Batches retried at once after a deadlock or serialization failure.", labels, nil)
	consFetchErrs  = prometheus.NewDesc("choreo_consumer_fetch_errors_total", "Failed fetches from Kafka (broker unreachable, rebalance failures).", labels, nil)
)

func (c unitCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{relayPublished, relayRetries, relayActive, relayBacklog, relayOldest, consApplied, consRetries, consConflicts, consFetchErrs} {
		ch <- d
	}
}

func (c unitCollector) Collect(ch chan<- prometheus.Metric) {
	for _, u := range c {
		name := u.Name()
		rs := u.relay.Stats()
		ch <- prometheus.MustNewConstMetric(relayPublished, prometheus.CounterValue, float64(rs.Published), name)
		ch <- prometheus.MustNewConstMetric(relayRetries, prometheus.CounterValue, float64(rs.Retries), name)
		ch <- prometheus.MustNewConstMetric(relayActive, prometheus.GaugeValue, boolValue(rs.Active), name)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		if rows, oldest, err := u.relay.Backlog(ctx); err == nil {
			ch <- prometheus.MustNewConstMetric(relayBacklog, prometheus.GaugeValue, float64(rows), name)
			ch <- prometheus.MustNewConstMetric(relayOldest, prometheus.GaugeValue, oldest.Seconds(), name)
		}
		cancel()
		if u.consumer == nil {
			continue
		}
		cs := u.consumer.Stats()
		for outcome, v := range map[string]uint64{"handled": cs.Handled, "duplicate": cs.Duplicates, "ignored": cs.Ignored, "dead_lettered": cs.DeadLettered} {
			ch <- prometheus.MustNewConstMetric(consApplied, prometheus.CounterValue, float64(v), name, outcome)
		}
		ch <- prometheus.MustNewConstMetric(consRetries, prometheus.CounterValue, float64(cs.Retries), name)
		ch <- prometheus.MustNewConstMetric(consConflicts, prometheus.CounterValue, float64(cs.Conflicts), name)
		ch <- prometheus.MustNewConstMetric(consFetchErrs, prometheus.CounterValue, float64(cs.FetchErrors), name)
	}
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
