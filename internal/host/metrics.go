package host

import (
	"context"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/choreo-dev/choreo/internal/projection"
)

// Metrics serves /metrics for the given units: each unit's relay (published rows, retries, backlog and the
// age of its oldest row, whether it is the active instance, publish latency) and consumer (applied,
// duplicate, ignored, dead-lettered and parked events, retries, fetch errors, parked keys, handler durations), read from the
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

// MetricInfo is a metric family /metrics may serve.
type MetricInfo struct {
	Name string `json:"name"` // a histogram's series add _bucket, _sum and _count
	Help string `json:"help"`
}

// descPattern reads a prometheus.Desc's String(), the only way it tells its name.
var descPattern = regexp.MustCompile(`^Desc\{fqName: "([^"]+)", help: "((?:[^"\\]|\\.)*)"`)

// MetricFamilies lists every metric family /metrics serves for units of specs, sorted by name, from the
// collectors' descriptions (no unit needs to run).
func MetricFamilies(specs []Spec) []MetricInfo {
	cs := []prometheus.Collector{collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		unitCollector(nil), &offsetsCollector{}}
	cs = append(cs, newObservations("").collectors()...)
	for _, s := range specs {
		if s.Metrics != nil {
			cs = append(cs, s.Metrics())
		}
	}
	ch := make(chan *prometheus.Desc)
	go func() {
		for _, c := range cs {
			c.Describe(ch)
		}
		close(ch)
	}()
	seen := map[string]MetricInfo{}
	for d := range ch {
		if m := descPattern.FindStringSubmatch(d.String()); m != nil {
			help, err := strconv.Unquote(`"` + m[2] + `"`)
			if err != nil {
				help = m[2]
			}
			seen[m[1]] = MetricInfo{Name: m[1], Help: help}
		}
	}
	out := slices.Collect(maps.Values(seen))
	slices.SortFunc(out, func(a, b MetricInfo) int { return strings.Compare(a.Name, b.Name) })
	return out
}

type unitCollector []*Unit

var (
	labels         = []string{"service"}
	relayPublished = prometheus.NewDesc("choreo_relay_published_total", "Outbox rows published to Kafka and deleted.", labels, nil)
	relayRetries   = prometheus.NewDesc("choreo_relay_retries_total", "Failed Kafka writes or database calls the relay retried.", labels, nil)
	relayActive    = prometheus.NewDesc("choreo_relay_active", "1 when this instance holds the outbox lock.", labels, nil)
	relayHandOvers = prometheus.NewDesc("choreo_relay_handovers_total", "Committed transactions of this process whose rows were handed to the relay, by what the relay did: published them without reading them back (published), read instead because a lower id was not yet accounted for (read), or dropped because a read had returned them first (already_read).", []string{"service", "outcome"}, nil)
	relayBacklog   = prometheus.NewDesc("choreo_outbox_backlog_rows", "Rows waiting in the outbox.", labels, nil)
	relayOldest    = prometheus.NewDesc("choreo_outbox_oldest_age_seconds", "Age of the oldest row waiting in the outbox: the publish lag.", labels, nil)
	consApplied    = prometheus.NewDesc("choreo_consumer_events_total", "Events whose offset moved on, by outcome.", []string{"service", "outcome"}, nil)
	consRetries    = prometheus.NewDesc("choreo_consumer_retries_total", "Batches retried after a failure.", labels, nil)
	consConflicts  = prometheus.NewDesc("choreo_consumer_lock_conflicts_total", "Batches retried at once after a deadlock or serialization failure.", labels, nil)
	consLingered   = prometheus.NewDesc("choreo_consumer_lingered_batches_total", "Batches of events off the saga's critical path that waited (CONSUMER_LINGER), by what ended the wait: an event that may not wait, a full batch or shutdown (joined), or the linger (expired).", []string{"service", "ended"}, nil)
	consFetchErrs  = prometheus.NewDesc("choreo_consumer_fetch_errors_total", "Failed fetches from Kafka (broker unreachable, rebalance failures).", labels, nil)
	projLabels     = []string{"service", "projection"}
	projApplied    = prometheus.NewDesc("choreo_projection_events_total", "Events the live projection applied.", projLabels, nil)
	projSkipped    = prometheus.NewDesc("choreo_projection_skipped_total", "Messages the live projection skipped: no event, or a payload that does not decode.", projLabels, nil)
	projRestarts   = prometheus.NewDesc("choreo_projection_restarts_total", "Times the live projection started over from its stored positions (after a replay's swap or an error).", projLabels, nil)
	replayApplied  = prometheus.NewDesc("choreo_replay_applied_events", "Events the latest replay of the projection applied to its new copy (wherever the replay runs).", projLabels, nil)
	replayTotal    = prometheus.NewDesc("choreo_replay_total_events", "Events the latest replay of the projection has to apply, as far as known.", projLabels, nil)
	replayRate     = prometheus.NewDesc("choreo_replay_events_per_second", "Events a second the latest replay of the projection applied.", projLabels, nil)
	replayRunning  = prometheus.NewDesc("choreo_replay_running", "1 while a replay of the projection builds its new copy.", projLabels, nil)
	consParkedKeys = prometheus.NewDesc("choreo_consumer_parked_keys", "Keys whose events are parked after a failure outlasted its attempts (choreo dlq SERVICE parked).", labels, nil)
)

func (c unitCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{relayPublished, relayRetries, relayActive, relayHandOvers, relayBacklog, relayOldest, consApplied, consRetries, consConflicts, consLingered, consFetchErrs,
		projApplied, projSkipped, projRestarts, replayApplied, replayTotal, replayRate, replayRunning, consParkedKeys} {
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
		ch <- prometheus.MustNewConstMetric(relayHandOvers, prometheus.CounterValue, float64(rs.HandOvers), name, "published")
		ch <- prometheus.MustNewConstMetric(relayHandOvers, prometheus.CounterValue, float64(rs.HandOversRead), name, "read")
		ch <- prometheus.MustNewConstMetric(relayHandOvers, prometheus.CounterValue, float64(rs.HandOversSeen), name, "already_read")
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		if rows, oldest, err := u.relay.Backlog(ctx); err == nil {
			ch <- prometheus.MustNewConstMetric(relayBacklog, prometheus.GaugeValue, float64(rows), name)
			ch <- prometheus.MustNewConstMetric(relayOldest, prometheus.GaugeValue, oldest.Seconds(), name)
		}
		cancel()
		c.collectProjections(ch, u)
		if u.consumer == nil {
			continue
		}
		cs := u.consumer.Stats()
		for outcome, v := range map[string]uint64{"handled": cs.Handled, "duplicate": cs.Duplicates, "ignored": cs.Ignored, "dead_lettered": cs.DeadLettered} {
			ch <- prometheus.MustNewConstMetric(consApplied, prometheus.CounterValue, float64(v), name, outcome)
		}
		ch <- prometheus.MustNewConstMetric(consRetries, prometheus.CounterValue, float64(cs.Retries), name)
		ch <- prometheus.MustNewConstMetric(consConflicts, prometheus.CounterValue, float64(cs.Conflicts), name)
		ch <- prometheus.MustNewConstMetric(consLingered, prometheus.CounterValue, float64(cs.LingerJoined), name, "joined")
		ch <- prometheus.MustNewConstMetric(consLingered, prometheus.CounterValue, float64(cs.LingerExpired), name, "expired")
		ch <- prometheus.MustNewConstMetric(consFetchErrs, prometheus.CounterValue, float64(cs.FetchErrors), name)
		ctx, cancel = context.WithTimeout(context.Background(), 2*time.Second)
		if n, err := u.consumer.ParkedKeys(ctx); err == nil {
			ch <- prometheus.MustNewConstMetric(consParkedKeys, prometheus.GaugeValue, float64(n), name)
		}
		cancel()
	}
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// collectProjections reports u's live projections and the progress of their latest replays, which the
// replay records in the unit's database, so that it shows here wherever it runs.
func (c unitCollector) collectProjections(ch chan<- prometheus.Metric, u *Unit) {
	if len(u.runners) == 0 {
		return
	}
	for _, r := range u.runners {
		st, name := r.Stats(), r.Projection().Name()
		ch <- prometheus.MustNewConstMetric(projApplied, prometheus.CounterValue, float64(st.Applied), u.Name(), name)
		ch <- prometheus.MustNewConstMetric(projSkipped, prometheus.CounterValue, float64(st.Skipped), u.Name(), name)
		ch <- prometheus.MustNewConstMetric(projRestarts, prometheus.CounterValue, float64(st.Restarts), u.Name(), name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	replays, err := projection.Replays(ctx, u.pool)
	if err != nil {
		return
	}
	for _, rp := range replays {
		ch <- prometheus.MustNewConstMetric(replayApplied, prometheus.GaugeValue, float64(rp.Applied), u.Name(), rp.Projection)
		ch <- prometheus.MustNewConstMetric(replayTotal, prometheus.GaugeValue, float64(rp.Total), u.Name(), rp.Projection)
		ch <- prometheus.MustNewConstMetric(replayRate, prometheus.GaugeValue, rp.Rate, u.Name(), rp.Projection)
		ch <- prometheus.MustNewConstMetric(replayRunning, prometheus.GaugeValue, boolValue(rp.Running), u.Name(), rp.Projection)
	}
}
