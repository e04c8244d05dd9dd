package consumer

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/internal/kafkaadmin"
	"github.com/choreo-dev/choreo/internal/kafkaconn"
)

// DeadLetter is one message of a dead-letter topic, with where it came from and why it failed.
type DeadLetter struct {
	Message   kafka.Message // as it sits in the dead-letter topic
	Consumer  string        // the consumer group that gave up on it
	Origin    string        // topic/partition@offset it was consumed from
	Error     string
	At        time.Time
	EventID   uuid.UUID // uuid.Nil when the message was not an event at all
	EventType string
}

func parseDeadLetter(m kafka.Message) DeadLetter {
	h := map[string]string{}
	for _, x := range m.Headers {
		h[x.Key] = string(x.Value)
	}
	d := DeadLetter{Message: m, Consumer: h[HeaderDLQConsumer], Error: h[HeaderDLQError],
		Origin: h[HeaderDLQTopic] + "/" + h[HeaderDLQPartition] + "@" + h[HeaderDLQOffset], EventType: h[events.HeaderType]}
	d.At, _ = time.Parse(time.RFC3339Nano, h[HeaderDLQTime])
	d.EventID, _ = uuid.Parse(h[events.HeaderID])
	return d
}

// ListDeadLetters reads every message dlqTopic holds now.
func ListDeadLetters(ctx context.Context, brokers []string, conn kafkaconn.Config, dlqTopic string) ([]DeadLetter, error) {
	ends, err := kafkaadmin.Admin{Brokers: brokers, Conn: conn}.EndOffsets(ctx, dlqTopic)
	if err != nil {
		return nil, err
	}
	var out []DeadLetter
	for partition, end := range ends {
		if end == 0 {
			continue
		}
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Dialer: conn.Dialer(), Topic: dlqTopic, Partition: partition, MaxWait: 250 * time.Millisecond})
		for {
			m, err := r.FetchMessage(ctx)
			if err != nil {
				r.Close()
				return nil, fmt.Errorf("read %s/%d: %w", dlqTopic, partition, err)
			}
			out = append(out, parseDeadLetter(m))
			if m.Offset+1 >= end {
				break
			}
		}
		r.Close()
	}
	return out, nil
}

// RedriveGroup is the consumer group a Redriver of group reads dead-letter topics as: its committed offset
// is how far group's dead letters have been redriven.
func RedriveGroup(group string) string { return "choreo-redrive." + group }

// Redriver hands dead letters back to the consumer that gave up on them, once their cause is fixed.
type Redriver struct {
	Brokers []string
	Conn    kafkaconn.Config // TLS and SASL to the brokers (zero: plaintext)
	Group   string           // the consumer group whose dead letters to redrive
	Pool    *pgxpool.Pool    // that consumer's database (its inbox)
}

// Redrive reads dlqTopic from where the previous redrive of Group stopped, and for each dead letter of
// Group: removes its event id from Group's inbox, publishes the original message (without the dlq_*
// headers) to its origin topic, then moves on. Other consumer groups of the origin topic see the copy as a
// duplicate and skip it. Messages that never were events cannot be redriven; they are reported and passed.
// fn, if not nil, is told about each dead letter of Group and whether it was redriven. Redrive returns once
// it has caught up with the end the topic had when it started.
func (r Redriver) Redrive(ctx context.Context, dlqTopic string, fn func(DeadLetter, bool)) (int, error) {
	reader := kafka.NewReader(kafka.ReaderConfig{
		Brokers: r.Brokers, Dialer: r.Conn.Dialer(), GroupID: RedriveGroup(r.Group), Topic: dlqTopic,
		StartOffset: kafka.FirstOffset, MaxWait: 250 * time.Millisecond, CommitInterval: 0,
	})
	defer reader.Close()
	writer := &kafka.Writer{Addr: kafka.TCP(r.Brokers...), Balancer: &kafka.Murmur2Balancer{}, RequiredAcks: kafka.RequireAll,
		BatchTimeout: time.Millisecond, Transport: r.Conn.Transport(nil)}
	defer writer.Close()

	offsets, err := kafkaadmin.Admin{Brokers: r.Brokers, Conn: r.Conn}.GroupOffsets(ctx, RedriveGroup(r.Group), dlqTopic)
	if err != nil {
		return 0, err
	}
	remaining := map[int]int64{} // partition -> the end to reach
	for _, p := range offsets {
		if p.Lag() > 0 {
			remaining[p.Partition] = p.End
		}
	}
	redriven := 0
	for len(remaining) > 0 {
		// Bounded: another redrive of the same group holds the partitions, and this one would wait for ever.
		fetchCtx, cancel := context.WithTimeout(ctx, time.Minute)
		m, err := reader.FetchMessage(fetchCtx)
		cancel()
		if err != nil {
			return redriven, fmt.Errorf("read %s (is another redrive of %s running?): %w", dlqTopic, r.Group, err)
		}
		d := parseDeadLetter(m)
		ok := d.Consumer == r.Group && d.EventID != uuid.Nil
		if ok {
			if err := r.redriveOne(ctx, writer, d); err != nil {
				return redriven, err
			}
			redriven++
		}
		if fn != nil && d.Consumer == r.Group {
			fn(d, ok)
		}
		if err := reader.CommitMessages(ctx, m); err != nil {
			return redriven, fmt.Errorf("commit %s offset %d: %w", dlqTopic, m.Offset, err)
		}
		if m.Offset+1 >= remaining[m.Partition] {
			delete(remaining, m.Partition)
		}
	}
	return redriven, nil
}

// redriveOne forgets the event in the inbox first: a crash after that and before the publish leaves the
// dead letter uncommitted, so the next redrive repeats both steps.
func (r Redriver) redriveOne(ctx context.Context, w *kafka.Writer, d DeadLetter) error {
	if _, err := r.Pool.Exec(ctx, `DELETE FROM inbox WHERE consumer = $1 AND event_id = $2`, r.Group, d.EventID); err != nil {
		return fmt.Errorf("forget %s in the inbox of %s: %w", d.EventID, r.Group, err)
	}
	origin := kafka.Message{Key: d.Message.Key, Value: d.Message.Value}
	for _, h := range d.Message.Headers {
		if !strings.HasPrefix(h.Key, "dlq_") {
			origin.Headers = append(origin.Headers, h)
		}
	}
	origin.Topic = strings.TrimSuffix(d.Message.Topic, DLQSuffix)
	if t := headerOf(d.Message, HeaderDLQTopic); t != "" {
		origin.Topic = t
	}
	if err := w.WriteMessages(ctx, origin); err != nil {
		return fmt.Errorf("republish %s to %s: %w", d.EventID, origin.Topic, err)
	}
	return nil
}

func headerOf(m kafka.Message, key string) string {
	for _, h := range m.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}
