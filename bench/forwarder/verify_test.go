package forwarder_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"
)

// delivery is what a topic holds after a contender ran, read back from Kafka.
type delivery struct {
	records    int // every record in the topic, duplicates included
	unique     int // distinct sequence numbers among them
	missing    int // sequence numbers in [0, n) not found
	badKey     int // records whose key is not the one their sequence number implies
	strayed    int // records on another partition than the first record of their key
	outOfOrder int // records of a key that came after a later record of the same key
}

func (d delivery) ok(n int) bool {
	return d.records == n && d.unique == n && d.missing == 0 && d.badKey == 0 && d.strayed == 0 && d.outOfOrder == 0
}

func (d delivery) String() string {
	return fmt.Sprintf("%d records, %d unique, %d missing, %d wrong key, %d off their key's partition, %d out of order",
		d.records, d.unique, d.missing, d.badKey, d.strayed, d.outOfOrder)
}

// readBack reads every partition of topic from its first to its last offset and checks the records
// against the n messages of the workload with keys distinct keys.
func readBack(ctx context.Context, brokers []string, topic string, n, keys int) (delivery, error) {
	conn, err := kafka.DialContext(ctx, "tcp", brokers[0])
	if err != nil {
		return delivery{}, fmt.Errorf("dial %s: %w", brokers[0], err)
	}
	parts, err := conn.ReadPartitions(topic)
	conn.Close()
	if err != nil {
		return delivery{}, fmt.Errorf("read partitions of %s: %w", topic, err)
	}
	var d delivery
	seen := make([]bool, n)
	partitionOfKey := map[string]int{}
	lastSeqOfKey := map[string]int{}
	for _, p := range parts {
		first, last, err := offsets(ctx, p)
		if err != nil {
			return delivery{}, err
		}
		if last <= first {
			continue
		}
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: topic, Partition: p.ID, MaxBytes: 10 << 20, MaxWait: 100 * time.Millisecond})
		if err := r.SetOffset(first); err != nil {
			r.Close()
			return delivery{}, err
		}
		for off := first; off < last; {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				r.Close()
				return delivery{}, fmt.Errorf("read %s/%d at %d of %d: %w", topic, p.ID, off, last, err)
			}
			off = m.Offset + 1
			d.records++
			seq := -1
			for _, h := range m.Headers {
				if h.Key == seqHeader {
					if s, ok := parseSeq(h.Value); ok && s >= 0 && s < n {
						seq = s
					}
				}
			}
			if seq < 0 {
				d.badKey++ // not a message of the workload at all
				continue
			}
			if !seen[seq] {
				seen[seq] = true
				d.unique++
			}
			if !bytes.Equal(m.Key, keyOf(seq, keys)) {
				d.badKey++
			}
			key := string(m.Key)
			if part, ok := partitionOfKey[key]; !ok {
				partitionOfKey[key] = p.ID
			} else if part != p.ID {
				d.strayed++
			}
			if prev, ok := lastSeqOfKey[key]; ok && seq < prev {
				d.outOfOrder++
			} else {
				lastSeqOfKey[key] = seq
			}
		}
		r.Close()
	}
	d.missing = n - d.unique
	return d, nil
}

// offsets returns the first and the next offset of partition p, asking its leader.
func offsets(ctx context.Context, p kafka.Partition) (first, last int64, err error) {
	addr := net.JoinHostPort(p.Leader.Host, strconv.Itoa(p.Leader.Port))
	conn, err := kafka.DialLeader(ctx, "tcp", addr, p.Topic, p.ID)
	if err != nil {
		return 0, 0, fmt.Errorf("dial leader of %s/%d: %w", p.Topic, p.ID, err)
	}
	defer conn.Close()
	first, last, err = conn.ReadOffsets()
	if err != nil {
		return 0, 0, fmt.Errorf("read offsets of %s/%d: %w", p.Topic, p.ID, err)
	}
	return first, last, nil
}

// waitWritable returns once every partition of topic has a leader that answers for it. A topic the
// controller just created may still be electing leaders; the contender that happened to start first
// would pay for that in retries, so every contender gets a topic that is ready.
func waitWritable(ctx context.Context, brokers []string, topic string, partitions int) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var lastErr error
	for {
		if lastErr = partitionsReady(ctx, brokers, topic, partitions); lastErr == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("topic %s not ready: %w (last error: %v)", topic, ctx.Err(), lastErr)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func partitionsReady(ctx context.Context, brokers []string, topic string, partitions int) error {
	conn, err := kafka.DialContext(ctx, "tcp", brokers[0])
	if err != nil {
		return err
	}
	parts, err := conn.ReadPartitions(topic)
	conn.Close()
	if err != nil {
		return err
	}
	if len(parts) != partitions {
		return fmt.Errorf("%d of %d partitions listed", len(parts), partitions)
	}
	for _, p := range parts {
		if p.Leader.Host == "" {
			return fmt.Errorf("partition %d has no leader", p.ID)
		}
		if _, _, err := offsets(ctx, p); err != nil {
			return err
		}
	}
	return nil
}
