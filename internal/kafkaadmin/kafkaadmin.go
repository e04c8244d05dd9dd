// Package kafkaadmin creates Kafka topics explicitly, with their partition
// counts and configs, and waits until the cluster serves them; choreo never
// relies on automatic topic creation.
package kafkaadmin

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
)

// Topic describes a topic to create.
type Topic struct {
	Name string
	// Partitions is the partition count; 0 takes the broker's default.
	Partitions int
	// ReplicationFactor 0 takes the broker's default (-1 in the request).
	ReplicationFactor int
	// Configs are topic configs such as "retention.ms": "-1".
	Configs map[string]string
}

// client is a kafka-go client with a transport of its own, so metadata
// comes fresh from the broker instead of a cache shared with other clients.
type client struct {
	*kafka.Client
	transport *kafka.Transport
}

func newClient(brokers []string) (*client, error) {
	if len(brokers) == 0 {
		return nil, errors.New("no kafka brokers given")
	}
	t := &kafka.Transport{
		ClientID:    "choreo-admin",
		DialTimeout: 2 * time.Second,
		MetadataTTL: 200 * time.Millisecond,
	}
	return &client{Client: &kafka.Client{Addr: kafka.TCP(brokers...), Transport: t}, transport: t}, nil
}

func (c *client) close() { c.transport.CloseIdleConnections() }

// create sends CreateTopics through kafka.DefaultTransport, which every
// kafka-go Reader, Writer and Client without a Transport of their own
// shares: kafka-go refreshes a transport's metadata cache when topics are
// created through it, so those clients can use the topics at once instead
// of failing with UnknownTopicOrPartition until the cache expires.
func (c *client) create(ctx context.Context, topics []kafka.TopicConfig) (*kafka.CreateTopicsResponse, error) {
	shared := &kafka.Client{Addr: c.Addr, Transport: kafka.DefaultTransport}
	return shared.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: topics})
}

// WaitReady returns once a broker answers a metadata request, retrying with
// backoff until ctx ends.
func WaitReady(ctx context.Context, brokers []string) error {
	var lastErr error
	for backoff := 100 * time.Millisecond; ; backoff = min(2*backoff, 2*time.Second) {
		lastErr = ping(ctx, brokers)
		if lastErr == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for kafka at %s: %w (last error: %v)", strings.Join(brokers, ","), ctx.Err(), lastErr)
		case <-time.After(backoff):
		}
	}
}

func ping(ctx context.Context, brokers []string) error {
	c, err := newClient(brokers)
	if err != nil {
		return err
	}
	defer c.close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := c.Metadata(ctx, &kafka.MetadataRequest{}); err != nil {
		return fmt.Errorf("fetch metadata: %w", err)
	}
	return nil
}

// Ping returns a readiness check of the brokers: does a metadata request answer.
func Ping(brokers []string) func(ctx context.Context) error {
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 2 * time.Second}
	return func(ctx context.Context) error {
		if _, err := client.Metadata(ctx, &kafka.MetadataRequest{}); err != nil {
			return fmt.Errorf("kafka: %w", err)
		}
		return nil
	}
}
