package kafkaadmin

import "context"

// The shorthands below administer brokers in plaintext, without authentication: the embedded and test
// brokers. Production code goes through an Admin with the configured kafkaconn.Config.

// EnsureTopics is Admin{Brokers: brokers}.EnsureTopics.
func EnsureTopics(ctx context.Context, brokers []string, topics ...Topic) error {
	return Admin{Brokers: brokers}.EnsureTopics(ctx, topics...)
}

// WaitReady is Admin{Brokers: brokers}.WaitReady.
func WaitReady(ctx context.Context, brokers []string) error {
	return Admin{Brokers: brokers}.WaitReady(ctx)
}

// Ping is Admin{Brokers: brokers}.Ping.
func Ping(brokers []string) func(ctx context.Context) error { return Admin{Brokers: brokers}.Ping() }

// DeleteGroup is Admin{Brokers: brokers}.DeleteGroup.
func DeleteGroup(ctx context.Context, brokers []string, group string) error {
	return Admin{Brokers: brokers}.DeleteGroup(ctx, group)
}

// EndOffsets is Admin{Brokers: brokers}.EndOffsets.
func EndOffsets(ctx context.Context, brokers []string, topic string) (map[int]int64, error) {
	return Admin{Brokers: brokers}.EndOffsets(ctx, topic)
}

// GroupOffsets is Admin{Brokers: brokers}.GroupOffsets.
func GroupOffsets(ctx context.Context, brokers []string, group, topic string) ([]PartitionOffsets, error) {
	return Admin{Brokers: brokers}.GroupOffsets(ctx, group, topic)
}
