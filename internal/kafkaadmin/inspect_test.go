package kafkaadmin_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/choreo-dev/choreo/internal/kafkaadmin"
)

// seed creates topic with partitions and writes n keyed messages to it with choreo's partitioner.
func seed(t *testing.T, brokers []string, topic string, partitions, n int) []kafka.Message {
	t.Helper()
	ctx := testContext(t)
	if err := kafkaadmin.EnsureTopics(ctx, brokers, kafkaadmin.Topic{Name: topic, Partitions: partitions}); err != nil {
		t.Fatal(err)
	}
	w := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: topic, Balancer: &kafka.Murmur2Balancer{}, BatchTimeout: time.Millisecond, RequiredAcks: kafka.RequireAll}
	defer w.Close()
	msgs := make([]kafka.Message, n)
	for i := range msgs {
		msgs[i] = kafka.Message{Key: fmt.Appendf(nil, "key-%d", i), Value: fmt.Appendf(nil, `{"n":%d}`, i),
			Headers: []kafka.Header{{Key: "ce_type", Value: []byte("test.seeded")}}}
	}
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatalf("write %s: %v", topic, err)
	}
	return msgs
}

func TestInspectorReadsTopicsMessagesAndGroupsWithoutJoining(t *testing.T) {
	t.Parallel()
	brokers := startBroker(t).Brokers()
	ctx := testContext(t)
	before := time.Now().Add(-time.Second)
	seed(t, brokers, "inspect.events", 3, 30)

	in, err := kafkaadmin.NewInspector(brokers)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()

	topic, err := in.Topic(ctx, "inspect.events")
	if err != nil {
		t.Fatal(err)
	}
	if len(topic.Partitions) != 3 {
		t.Fatalf("partitions %+v, want 3", topic.Partitions)
	}
	var total int64
	for _, p := range topic.Partitions {
		if p.Start != 0 {
			t.Errorf("partition %d starts at %d, want 0", p.ID, p.Start)
		}
		total += p.Messages()
	}
	if total != 30 {
		t.Errorf("topic holds %d messages, want 30", total)
	}

	t.Run("every key is where PartitionOf says", func(t *testing.T) {
		seen := 0
		for _, p := range topic.Partitions {
			msgs, end, err := in.Read(ctx, topic.Name, p.ID, 0, 100, 0)
			if err != nil {
				t.Fatal(err)
			}
			if end != p.End || int64(len(msgs)) != p.End {
				t.Errorf("partition %d: read %d messages up to %d, want %d", p.ID, len(msgs), end, p.End)
			}
			for i, m := range msgs {
				seen++
				if m.Offset != int64(i) || m.Partition != p.ID {
					t.Errorf("message %d of partition %d is at %d/%d", i, p.ID, m.Partition, m.Offset)
				}
				if got := kafkaadmin.PartitionOf(m.Key, 3); got != p.ID {
					t.Errorf("key %s is on partition %d, PartitionOf says %d", m.Key, p.ID, got)
				}
				if len(m.Headers) != 1 || string(m.Headers[0].Value) != "test.seeded" || m.Time.Before(before) {
					t.Errorf("message %s: headers %v, time %v", m.Key, m.Headers, m.Time)
				}
			}
		}
		if seen != 30 {
			t.Errorf("read %d messages, want 30", seen)
		}
	})

	t.Run("read is bounded and starts at the offset asked for", func(t *testing.T) {
		p := topic.Partitions[0]
		msgs, _, err := in.Read(ctx, topic.Name, p.ID, 1, 2, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) != 2 || msgs[0].Offset != 1 || msgs[1].Offset != 2 {
			t.Errorf("read from 1, max 2: %d messages %v", len(msgs), offsets(msgs))
		}
		msgs, _, err = in.Read(ctx, topic.Name, p.ID, p.End, 10, 0)
		if err != nil || len(msgs) != 0 {
			t.Errorf("read at the end: %d messages, %v", len(msgs), err)
		}
	})

	t.Run("offsets by time", func(t *testing.T) {
		offs, err := in.OffsetsAt(ctx, topic.Name, []int{0, 1, 2}, before)
		if err != nil {
			t.Fatal(err)
		}
		for p, o := range offs {
			if o != 0 {
				t.Errorf("partition %d: first offset after %v is %d, want 0", p, before, o)
			}
		}
		offs, err = in.OffsetsAt(ctx, topic.Name, []int{0, 1, 2}, time.Now().Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		for p, o := range offs {
			if o != -1 {
				t.Errorf("partition %d: offset after an hour from now is %d, want -1", p, o)
			}
		}
	})

	t.Run("groups: state, members and lag", func(t *testing.T) {
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, GroupID: "inspect-group", Topic: topic.Name, StartOffset: kafka.FirstOffset, MaxWait: 100 * time.Millisecond})
		m, err := r.FetchMessage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.CommitMessages(ctx, m); err != nil {
			t.Fatal(err)
		}
		groups, err := in.Groups(ctx, nil, []kafkaadmin.TopicInfo{topic})
		if err != nil {
			t.Fatal(err)
		}
		if len(groups) != 1 || groups[0].ID != "inspect-group" {
			t.Fatalf("groups %+v, want only inspect-group (the inspector joins none)", groups)
		}
		g := groups[0]
		if g.State != "Stable" || len(g.Members) != 1 {
			t.Errorf("group state %q with %d members, want Stable with 1", g.State, len(g.Members))
		}
		if len(g.Offsets) != 3 || g.TotalLag() != 29 {
			t.Errorf("group offsets %+v (lag %d), want 3 partitions and lag 29", g.Offsets, g.TotalLag())
		}
		r.Close()

		lag, err := in.GroupLag(ctx, "inspect-group", []kafkaadmin.TopicInfo{topic})
		if err != nil {
			t.Fatal(err)
		}
		total := int64(0)
		for _, p := range lag {
			total += p.Lag
		}
		if len(lag) != 3 || total != 29 {
			t.Errorf("GroupLag %+v (lag %d), want 3 partitions and lag 29", lag, total)
		}
		lag, err = in.GroupLag(ctx, "never-committed", []kafkaadmin.TopicInfo{topic})
		if err != nil {
			t.Fatal(err)
		}
		total = 0
		for _, p := range lag {
			total += p.Lag
			if p.Committed != -1 {
				t.Errorf("a group that never committed has committed %d on partition %d", p.Committed, p.Partition)
			}
		}
		if len(lag) != 3 || total != 30 {
			t.Errorf("GroupLag of a group that never committed: %+v (lag %d), want the whole topic, 30", lag, total)
		}
	})

	t.Run("log dir sizes", func(t *testing.T) {
		sizes, err := in.LogDirSizes(ctx, []kafkaadmin.TopicInfo{topic})
		if err != nil {
			t.Fatal(err)
		}
		var sum int64
		for _, s := range sizes[topic.Name] {
			sum += s
		}
		if sum < 30*8 {
			t.Errorf("topic size %d bytes (%v), want at least the values' size", sum, sizes)
		}
	})

	groups, err := in.Groups(ctx, func(id string) bool { return id != "inspect-group" }, nil)
	if err != nil || len(groups) != 0 {
		t.Errorf("groups other than the test's own: %+v, %v", groups, err)
	}
}

func offsets(msgs []kafka.Message) []int64 {
	var out []int64
	for _, m := range msgs {
		out = append(out, m.Offset)
	}
	return out
}
