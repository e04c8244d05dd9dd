package outbox

import (
	"time"

	"github.com/segmentio/kafka-go"
)

// NewKafkaWriter returns the kafka-go writer the relay publishes with: every replica acknowledges
// (RequiredAcks all), keys are hashed like the Java client (murmur2) so one key always lands on one
// partition whoever produces it, and a partition's batch is flushed after a millisecond instead of
// kafka-go's default second. batchSize should equal the relay's batch size so one relay batch becomes one
// produce request per partition. Topics are never auto-created. The writer has its own transport: kafka-go's
// shared default transport caches topic metadata process-wide, and a topic created after that cache was
// filled would look unknown to every writer in the process until it expires.
func NewKafkaWriter(brokers []string, batchSize int) *kafka.Writer {
	return &kafka.Writer{
		Addr:                   kafka.TCP(brokers...),
		Balancer:               &kafka.Murmur2Balancer{},
		RequiredAcks:           kafka.RequireAll,
		BatchSize:              batchSize,
		BatchTimeout:           time.Millisecond,
		MaxAttempts:            3,
		WriteBackoffMin:        50 * time.Millisecond,
		WriteBackoffMax:        time.Second,
		AllowAutoTopicCreation: false,
		Transport:              &kafka.Transport{MetadataTTL: 10 * time.Second},
	}
}
