package loadgen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/internal/kafkaadmin"
)

var (
	typeConfirmed = events.OrderConfirmed{}.EventType()
	typeCancelled = events.OrderCancelled{}.EventType()
)

// finalOf reads an order's final event from an envelope; ok is false for every other event.
func finalOf(e events.Envelope) (final, bool, error) {
	switch e.Type {
	case typeConfirmed:
		return final{orderID: e.Subject, outcome: Confirmed, at: e.Time}, true, nil
	case typeCancelled:
		var p events.OrderCancelled
		if err := json.Unmarshal(e.Data, &p); err != nil {
			return final{}, false, fmt.Errorf("decode %s of %s: %w", e.Type, e.Subject, err)
		}
		return final{orderID: e.Subject, outcome: Outcome(p.Reason), at: e.Time}, true, nil
	}
	return final{}, false, nil
}

// kafkaFinals follows the order topic from its current end, partition by partition, without a consumer
// group (nothing is joined or committed, so the system's consumers are not disturbed).
type kafkaFinals struct {
	brokers []string
	topic   string
	ends    map[int]int64
}

// openKafkaFinals finds the end of every partition of topic; an error means Kafka is not reachable.
func openKafkaFinals(ctx context.Context, brokers []string, topic string) (*kafkaFinals, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second) // a broker busy on few cores may take seconds to answer
	defer cancel()
	ends, err := kafkaadmin.EndOffsets(ctx, brokers, topic)
	if err != nil {
		return nil, err
	}
	if len(ends) == 0 {
		return nil, fmt.Errorf("topic %s has no partitions", topic)
	}
	return &kafkaFinals{brokers: brokers, topic: topic, ends: ends}, nil
}

// run delivers every final event until ctx ends.
func (k *kafkaFinals) run(ctx context.Context, deliver func(final)) error {
	var wg sync.WaitGroup
	errs := make(chan error, len(k.ends))
	for p, end := range k.ends {
		wg.Go(func() {
			if err := k.follow(ctx, p, end, deliver); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	return errors.Join(all...)
}

func (k *kafkaFinals) follow(ctx context.Context, partition int, from int64, deliver func(final)) error {
	r, err := readFrom(k.brokers, k.topic, partition, from)
	if err != nil {
		return err
	}
	defer r.Close()
	for {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("read %s/%d: %w", k.topic, partition, err)
		}
		e, err := events.FromMessage(m)
		if err != nil {
			continue // not an event of ours; the system dead-letters it, the generator ignores it
		}
		if f, ok, err := finalOf(e); err == nil && ok {
			deliver(f)
		}
	}
}

// readFrom opens a reader of one partition of topic, without a consumer group, at offset from.
func readFrom(brokers []string, topic string, partition int, from int64) (*kafka.Reader, error) {
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers: brokers, Topic: topic, Partition: partition, MaxWait: 100 * time.Millisecond, MaxBytes: 10 << 20,
	})
	if err := r.SetOffset(from); err != nil {
		r.Close()
		return nil, fmt.Errorf("read %s/%d from %d: %w", topic, partition, from, err)
	}
	return r, nil
}
