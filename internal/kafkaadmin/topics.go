package kafkaadmin

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/segmentio/kafka-go"
)

// EnsureTopics creates the topics that do not exist yet (an existing topic
// is left as it is) and returns once metadata lists every one of them with
// its partitions, since a topic is not usable the moment it is created.
func (a Admin) EnsureTopics(ctx context.Context, topics ...Topic) error {
	if len(topics) == 0 {
		return nil
	}
	c, err := a.newClient()
	if err != nil {
		return err
	}
	defer c.close()
	created, err := create(ctx, c, topics)
	if err != nil {
		return err
	}
	return waitListed(ctx, c, topics, created)
}

// create sends one CreateTopics request and returns the names it created.
// Brokers before Kafka 2.4 reject replication factor -1; for those the
// topics asking for the default are sent again with 1, which is what a
// single-broker cluster needs.
func create(ctx context.Context, c *client, topics []Topic) (map[string]bool, error) {
	created := map[string]bool{}
	pending := topics
	for attempt := 0; len(pending) > 0 && attempt < 2; attempt++ {
		configs := make([]kafka.TopicConfig, len(pending))
		for i, t := range pending {
			configs[i] = topicConfig(t, attempt > 0)
		}
		resp, err := c.create(ctx, configs)
		if err != nil {
			return nil, fmt.Errorf("create kafka topics %v: %w", names(pending), err)
		}
		var retry []Topic
		var errs []error
		for _, t := range pending {
			err := resp.Errors[t.Name]
			switch {
			case err == nil:
				created[t.Name] = true
			case errors.Is(err, kafka.TopicAlreadyExists):
			case errors.Is(err, kafka.InvalidReplicationFactor) && t.ReplicationFactor == 0 && attempt == 0:
				retry = append(retry, t)
			default:
				errs = append(errs, fmt.Errorf("create kafka topic %s: %w", t.Name, err))
			}
		}
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
		pending = retry
	}
	return created, nil
}

func topicConfig(t Topic, explicitReplication bool) kafka.TopicConfig {
	tc := kafka.TopicConfig{Topic: t.Name, NumPartitions: t.Partitions, ReplicationFactor: t.ReplicationFactor}
	if tc.NumPartitions == 0 {
		tc.NumPartitions = -1
	}
	if tc.ReplicationFactor == 0 {
		tc.ReplicationFactor = -1
		if explicitReplication {
			tc.ReplicationFactor = 1
		}
	}
	for _, k := range slices.Sorted(maps.Keys(t.Configs)) {
		tc.ConfigEntries = append(tc.ConfigEntries, kafka.ConfigEntry{ConfigName: k, ConfigValue: t.Configs[k]})
	}
	return tc
}

// waitListed polls metadata until each topic is listed with a leader for
// every partition: exactly the partitions asked for when we created it, at
// least one when it already existed.
func waitListed(ctx context.Context, c *client, topics []Topic, created map[string]bool) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		missing, err := unlisted(ctx, c, topics, created)
		if err == nil && len(missing) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			if err == nil {
				err = fmt.Errorf("not yet listed: %v", missing)
			}
			return fmt.Errorf("wait for kafka topics %v: %w (%v)", names(topics), ctx.Err(), err)
		case <-tick.C:
		}
	}
}

func unlisted(ctx context.Context, c *client, topics []Topic, created map[string]bool) ([]string, error) {
	resp, err := c.Metadata(ctx, &kafka.MetadataRequest{Topics: names(topics)})
	if err != nil {
		return nil, fmt.Errorf("fetch metadata: %w", err)
	}
	byName := make(map[string]kafka.Topic, len(resp.Topics))
	for _, t := range resp.Topics {
		byName[t.Name] = t
	}
	var missing []string
	for _, t := range topics {
		if !ready(byName[t.Name], t.Partitions, created[t.Name]) {
			missing = append(missing, t.Name)
		}
	}
	return missing, nil
}

func ready(t kafka.Topic, partitions int, created bool) bool {
	if t.Error != nil || len(t.Partitions) == 0 {
		return false
	}
	if created && partitions > 0 && len(t.Partitions) != partitions {
		return false
	}
	for _, p := range t.Partitions {
		if p.Error != nil || p.Leader.Host == "" {
			return false
		}
	}
	return true
}

func names(topics []Topic) []string {
	out := make([]string, len(topics))
	for i, t := range topics {
		out[i] = t.Name
	}
	return out
}
