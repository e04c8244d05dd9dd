package consumer

import (
	"context"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/choreo-dev/choreo/outbox"
)

// DLQSuffix names a topic's dead-letter topic: "<topic>.dlq".
const DLQSuffix = ".dlq"

// Headers a dead letter carries besides the original message's own.
const (
	HeaderDLQError     = "dlq_error"
	HeaderDLQTopic     = "dlq_origin_topic"
	HeaderDLQPartition = "dlq_origin_partition"
	HeaderDLQOffset    = "dlq_origin_offset"
	HeaderDLQConsumer  = "dlq_consumer"
	HeaderDLQTime      = "dlq_time"
)

// AppendDeadLetter writes m, unchanged but for the dlq_* headers naming reason and consumer, to the outbox
// for m's dead-letter topic, in tx: for runtimes other than Consumer (a projection) that meet an event
// they cannot apply.
func AppendDeadLetter(ctx context.Context, tx outbox.Execer, m kafka.Message, consumer string, reason error) error {
	return appendDeadLetter(ctx, tx, m, consumer, reason)
}

// appendDeadLetter writes m, unchanged but for the dlq_* headers, to the outbox for m's dead-letter topic.
func appendDeadLetter(ctx context.Context, tx outbox.Execer, m kafka.Message, group string, reason error) error {
	headers := make([]kafka.Header, 0, len(m.Headers)+6)
	headers = append(headers, m.Headers...)
	headers = append(headers,
		kafka.Header{Key: HeaderDLQError, Value: []byte(reason.Error())},
		kafka.Header{Key: HeaderDLQTopic, Value: []byte(m.Topic)},
		kafka.Header{Key: HeaderDLQPartition, Value: []byte(strconv.Itoa(m.Partition))},
		kafka.Header{Key: HeaderDLQOffset, Value: []byte(strconv.FormatInt(m.Offset, 10))},
		kafka.Header{Key: HeaderDLQConsumer, Value: []byte(group)},
		kafka.Header{Key: HeaderDLQTime, Value: []byte(time.Now().UTC().Format(time.RFC3339Nano))},
	)
	return outbox.AppendMessages(ctx, tx, kafka.Message{Topic: m.Topic + DLQSuffix, Key: m.Key, Value: m.Value, Headers: headers})
}
