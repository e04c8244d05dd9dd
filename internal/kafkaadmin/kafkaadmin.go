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

	"github.com/choreo-dev/choreo/internal/kafkaconn"
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

// Admin administers one Kafka cluster: its Brokers, connected to with Conn's TLS and SASL. The
// package-level functions of the same names are its plaintext shorthands.
type Admin struct {
	Brokers []string
	Conn    kafkaconn.Config
}

// client is a kafka-go client with a transport of its own, so metadata
// comes fresh from the broker instead of a cache shared with other clients.
type client struct {
	*kafka.Client
	transport *kafka.Transport
	secured   bool
}

func (a Admin) newClient() (*client, error) {
	if len(a.Brokers) == 0 {
		return nil, errors.New("no kafka brokers given")
	}
	t := a.Conn.Transport(&kafka.Transport{
		ClientID:    "choreo-admin",
		DialTimeout: 2 * time.Second,
		MetadataTTL: 200 * time.Millisecond,
	})
	return &client{Client: &kafka.Client{Addr: kafka.TCP(a.Brokers...), Transport: t}, transport: t, secured: a.Conn.Secured()}, nil
}

func (c *client) close() { c.transport.CloseIdleConnections() }

// create sends CreateTopics through kafka.DefaultTransport, which every
// kafka-go Reader, Writer and Client without a Transport of their own
// shares: kafka-go refreshes a transport's metadata cache when topics are
// created through it, so those clients can use the topics at once instead
// of failing with UnknownTopicOrPartition until the cache expires. Over TLS or
// SASL no client can use the default transport, so there is nothing to share.
func (c *client) create(ctx context.Context, topics []kafka.TopicConfig) (*kafka.CreateTopicsResponse, error) {
	if c.secured {
		return c.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: topics})
	}
	shared := &kafka.Client{Addr: c.Addr, Transport: kafka.DefaultTransport}
	return shared.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: topics})
}

// WaitReady returns once a broker answers a metadata request, retrying with
// backoff until ctx ends.
func (a Admin) WaitReady(ctx context.Context) error {
	var lastErr error
	for backoff := 100 * time.Millisecond; ; backoff = min(2*backoff, 2*time.Second) {
		lastErr = a.ping(ctx)
		if lastErr == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for kafka at %s: %w (last error: %v)", strings.Join(a.Brokers, ","), ctx.Err(), lastErr)
		case <-time.After(backoff):
		}
	}
}

func (a Admin) ping(ctx context.Context) error {
	c, err := a.newClient()
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
func (a Admin) Ping() func(ctx context.Context) error {
	client := &kafka.Client{Addr: kafka.TCP(a.Brokers...), Timeout: 2 * time.Second}
	if a.Conn.Secured() {
		client.Transport = a.Conn.Transport(nil)
	}
	return func(ctx context.Context) error {
		if _, err := client.Metadata(ctx, &kafka.MetadataRequest{}); err != nil {
			return fmt.Errorf("kafka: %w", err)
		}
		return nil
	}
}
