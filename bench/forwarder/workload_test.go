package forwarder_test

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/segmentio/kafka-go"
)

// Every message carries its sequence number in the ce_id header and its key is derived from it, so the
// read-back can tell a missing, a duplicated, a misplaced or a reordered message apart.
const (
	seqHeader  = "ce_id"
	typeHeader = "ce_type"
)

func keyOf(seq, keys int) []byte { return fmt.Appendf(nil, "order-%06d", seq%keys) }

// workload returns n messages for topic: ~size-byte JSON values (valid JSON, as Watermill's default
// Postgres schema stores payloads in a JSON column), keys spread over keys distinct values, and the two
// headers choreo's events carry.
func workload(topic string, n, size, keys int) []kafka.Message {
	payload := []byte(`{"order_id":"` + strings.Repeat("x", size-15) + `"}`)
	msgs := make([]kafka.Message, n)
	for i := range msgs {
		msgs[i] = kafka.Message{
			Topic: topic,
			Key:   keyOf(i, keys),
			Value: payload,
			Headers: []kafka.Header{
				{Key: typeHeader, Value: []byte("order.placed")},
				{Key: seqHeader, Value: fmt.Appendf(nil, "%036d", i)},
			},
		}
	}
	return msgs
}

func parseSeq(v []byte) (int, bool) {
	n, err := strconv.Atoi(string(v)) // leading zeros are fine
	return n, err == nil
}
