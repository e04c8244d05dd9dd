package host

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/choreo-dev/choreo/consumer"
	"github.com/choreo-dev/choreo/internal/kafkaadmin"
)

// offsetsTTL is how long one reading of Kafka's offsets answers scrapes: a few requests to the brokers per
// refresh (a metadata request, two offset listings, two offset fetches per service), never a read of the
// messages.
const offsetsTTL = 5 * time.Second

var (
	consumerLag = prometheus.NewDesc("choreo_consumer_lag_messages",
		"Messages of a partition the service's consumer group has not committed yet (Kafka's end offset minus the group's committed offset).",
		[]string{"service", "group", "topic", "partition"}, nil)
	deadLetters = prometheus.NewDesc("choreo_dead_letters",
		"Messages of a dead-letter topic that the service's redrive has not passed yet (its end offset minus the committed offset of choreo-redrive.<group>); the topic holds the dead letters of every consumer of its origin topic.",
		[]string{"service", "topic"}, nil)
	offsetsUp = prometheus.NewDesc("choreo_kafka_offsets_up",
		"1 when the last reading of Kafka's offsets (lag, dead letters) succeeded.", nil, nil)
)

// offsetsCollector reports consumer lag and dead-letter depth from Kafka's offsets, cached for offsetsTTL.
type offsetsCollector struct {
	units []*Unit

	mu      sync.Mutex
	readAt  time.Time
	metrics []prometheus.Metric
}

func (c *offsetsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- consumerLag
	ch <- deadLetters
	ch <- offsetsUp
}

func (c *offsetsCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.readAt) >= offsetsTTL {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		metrics, err := c.read(ctx)
		cancel()
		up := 1.0
		if err != nil {
			up, metrics = 0, nil
		}
		c.metrics = append(metrics, prometheus.MustNewConstMetric(offsetsUp, prometheus.GaugeValue, up))
		c.readAt = time.Now()
	}
	for _, m := range c.metrics {
		ch <- m
	}
}

// read asks Kafka for the end offsets of every topic the units consume and of their dead-letter topics,
// and for the committed offsets of each unit's group and of its redrive group.
func (c *offsetsCollector) read(ctx context.Context) ([]prometheus.Metric, error) {
	var consuming []*Unit
	want := map[string]bool{}
	for _, u := range c.units {
		if u.obs.group == "" {
			continue
		}
		consuming = append(consuming, u)
		for _, t := range u.obs.topics {
			want[t], want[t+consumer.DLQSuffix] = true, true
		}
	}
	if len(consuming) == 0 {
		return nil, nil
	}
	in, err := consuming[0].obs.admin.Inspector()
	if err != nil {
		return nil, err
	}
	defer in.Close()
	infos, err := in.Topics(ctx, func(name string) bool { return want[name] })
	if err != nil {
		return nil, fmt.Errorf("read topic offsets: %w", err)
	}
	byName := map[string]kafkaadmin.TopicInfo{}
	for _, t := range infos {
		byName[t.Name] = t
	}
	var out []prometheus.Metric
	for _, u := range consuming {
		var topics, dlqs []kafkaadmin.TopicInfo
		for _, t := range u.obs.topics {
			if ti, ok := byName[t]; ok {
				topics = append(topics, ti)
			}
			if ti, ok := byName[t+consumer.DLQSuffix]; ok {
				dlqs = append(dlqs, ti)
			}
		}
		lag, err := in.GroupLag(ctx, u.obs.group, topics)
		if err != nil {
			return nil, err
		}
		for _, p := range lag {
			out = append(out, prometheus.MustNewConstMetric(consumerLag, prometheus.GaugeValue, float64(p.Lag),
				u.Name(), u.obs.group, p.Topic, strconv.Itoa(p.Partition)))
		}
		redriven, err := in.GroupLag(ctx, consumer.RedriveGroup(u.obs.group), dlqs)
		if err != nil {
			return nil, err
		}
		depth := map[string]int64{}
		for _, t := range dlqs {
			depth[t.Name] = 0
		}
		for _, p := range redriven {
			depth[p.Topic] += p.Lag
		}
		for topic, n := range depth {
			out = append(out, prometheus.MustNewConstMetric(deadLetters, prometheus.GaugeValue, float64(n), u.Name(), topic))
		}
	}
	return out, nil
}
