package outbox

import (
	"context"
	"errors"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/choreo-dev/choreo/internal/kafkaconn"
)

// MaxBatchBytes bounds the bytes of one relay batch, and is the writer's BatchBytes: kafka-go splits a
// partition's batch that grows past BatchBytes into several produce requests and sends the later ones
// even when an earlier one failed, which would reorder a key's events on the retry. Keeping every relay
// batch within one request per partition keeps the order.
const MaxBatchBytes = 1 << 20

// MaxMessageBytes is the largest message Append accepts: Kafka refuses record batches over its default
// message.max.bytes (1 MiB and a few bytes), and a message it refuses would stop the relay for good.
const MaxMessageBytes = 1_000_000

// messageSize is kafka-go's own estimate of a message's size in a produce request (Message.totalSize),
// rounded up.
func messageSize(m kafka.Message) int {
	n := 4 + 1 + 1 + 4 + len(m.Key) + 4 + len(m.Value) + 8 + 5
	for _, h := range m.Headers {
		n += 10 + len(h.Key) + len(h.Value)
	}
	return n
}

// NewKafkaWriter returns the kafka-go writer the relay publishes with: every replica acknowledges
// (RequiredAcks all), keys are hashed like the Java client (murmur2) so one key always lands on one
// partition whoever produces it, and a partition's batch is flushed after 100µs instead of kafka-go's
// default second: the relay hands the writer a whole batch at once and waits for it, so waiting for more
// would only add latency to every hop of a saga (a call's messages still go out together: kafka-go adds
// them to their batches under the lock its batch timer needs). batchSize should equal the relay's batch size so one relay batch becomes one
// produce request per partition (and must not be below it). Topics are never auto-created. The writer has its own transport: kafka-go's
// shared default transport caches topic metadata process-wide, and a topic created after that cache was
// filled would look unknown to every writer in the process until it expires. conn is its TLS and SASL.
func NewKafkaWriter(brokers []string, batchSize int, conn kafkaconn.Config) *kafka.Writer {
	return &kafka.Writer{
		Addr:                   kafka.TCP(brokers...),
		Balancer:               &kafka.Murmur2Balancer{},
		RequiredAcks:           kafka.RequireAll,
		BatchSize:              batchSize,
		BatchBytes:             MaxBatchBytes,
		BatchTimeout:           100 * time.Microsecond,
		MaxAttempts:            3,
		WriteBackoffMin:        50 * time.Millisecond,
		WriteBackoffMax:        time.Second,
		AllowAutoTopicCreation: false,
		Transport:              conn.Transport(&kafka.Transport{MetadataTTL: 10 * time.Second}),
	}
}

// Writer is the relay's Publisher: two writers with NewKafkaWriter's settings, one for batches of up to
// smallBatch messages and one for the larger. kafka-go allocates room for BatchSize messages for every
// partition a call touches, so with one 1,000-message writer a steady trickle of small relay batches
// allocated about 150 KB per partition per batch: half of all the process's allocations at 150 orders/s.
// The relay publishes one batch at a time and waits for its acknowledgement, so using two writers never
// reorders a key's events.
type Writer struct {
	small, large *kafka.Writer
}

// smallBatch is the most messages Writer sends through its small writer.
const smallBatch = 32

// NewWriter returns a Writer for relay batches of up to batchSize messages (see NewKafkaWriter).
func NewWriter(brokers []string, batchSize int, conn kafkaconn.Config) *Writer {
	return &Writer{small: NewKafkaWriter(brokers, min(smallBatch, batchSize), conn), large: NewKafkaWriter(brokers, batchSize, conn)}
}

// WriteMessages writes msgs and returns once every one is acknowledged.
func (w *Writer) WriteMessages(ctx context.Context, msgs ...kafka.Message) error {
	if len(msgs) <= w.small.BatchSize {
		return w.small.WriteMessages(ctx, msgs...)
	}
	return w.large.WriteMessages(ctx, msgs...)
}

// BatchSize is the most messages one call may carry in one produce request per partition.
func (w *Writer) BatchSize() int { return w.large.BatchSize }

// Close closes both writers.
func (w *Writer) Close() error { return errors.Join(w.small.Close(), w.large.Close()) }
