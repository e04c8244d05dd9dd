// Package forwarder benchmarks choreo's outbox relay against Watermill's forwarder and raw Kafka producers,
// in one run, on one durable Postgres cluster and one Kafka. It is a module of its own so that choreo's
// go.mod never carries Watermill's dependencies; everything lives in its _test.go files (see README.md).
package forwarder
