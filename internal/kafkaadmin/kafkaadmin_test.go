package kafkaadmin_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/choreo-dev/choreo/internal/devstack/kafkaembed"
	"github.com/choreo-dev/choreo/internal/kafkaadmin"
)

func startBroker(t *testing.T) *kafkaembed.Broker {
	t.Helper()
	b, err := kafkaembed.Start(kafkaembed.Config{Addr: "127.0.0.1:0", Log: zerolog.Nop()})
	if err != nil {
		t.Fatalf("start broker: %v", err)
	}
	t.Cleanup(b.Close)
	return b
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func metadata(t *testing.T, brokers []string, topic string) kafka.Topic {
	t.Helper()
	conn, err := kafka.DialContext(testContext(t), "tcp", brokers[0])
	if err != nil {
		t.Fatalf("dial %s: %v", brokers[0], err)
	}
	defer conn.Close()
	parts, err := conn.ReadPartitions(topic)
	if err != nil {
		t.Fatalf("read partitions of %s: %v", topic, err)
	}
	return kafka.Topic{Name: topic, Partitions: parts}
}

func topicConfig(t *testing.T, brokers []string, topic, name string) string {
	t.Helper()
	c := &kafka.Client{Addr: kafka.TCP(brokers...)}
	resp, err := c.DescribeConfigs(testContext(t), &kafka.DescribeConfigsRequest{
		Resources: []kafka.DescribeConfigRequestResource{{ResourceType: kafka.ResourceTypeTopic, ResourceName: topic, ConfigNames: []string{name}}},
	})
	if err != nil {
		t.Fatalf("describe configs of %s: %v", topic, err)
	}
	for _, r := range resp.Resources {
		for _, e := range r.ConfigEntries {
			if e.ConfigName == name {
				return e.ConfigValue
			}
		}
	}
	t.Fatalf("topic %s has no config %s", topic, name)
	return ""
}

func TestEnsureTopics(t *testing.T) {
	t.Parallel()
	brokers := startBroker(t).Brokers()
	tests := []struct {
		name           string
		topic          kafkaadmin.Topic
		wantPartitions int // 0: any
		wantConfigs    map[string]string
	}{
		{name: "partitions as requested", topic: kafkaadmin.Topic{Name: "orders.events", Partitions: 6}, wantPartitions: 6},
		{name: "single partition", topic: kafkaadmin.Topic{Name: "one", Partitions: 1}, wantPartitions: 1},
		{name: "broker default partitions", topic: kafkaadmin.Topic{Name: "defaulted"}},
		{
			name:           "configs are applied",
			topic:          kafkaadmin.Topic{Name: "replayable", Partitions: 2, Configs: map[string]string{"retention.ms": "-1", "cleanup.policy": "delete"}},
			wantPartitions: 2,
			wantConfigs:    map[string]string{"retention.ms": "-1", "cleanup.policy": "delete"},
		},
		{name: "explicit replication factor", topic: kafkaadmin.Topic{Name: "replicated", Partitions: 3, ReplicationFactor: 1}, wantPartitions: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for range 2 { // the second call finds the topic and still succeeds
				if err := kafkaadmin.EnsureTopics(testContext(t), brokers, tt.topic); err != nil {
					t.Fatalf("EnsureTopics: %v", err)
				}
			}
			got := metadata(t, brokers, tt.topic.Name)
			if tt.wantPartitions > 0 && len(got.Partitions) != tt.wantPartitions {
				t.Errorf("%s has %d partitions, want %d", tt.topic.Name, len(got.Partitions), tt.wantPartitions)
			}
			if len(got.Partitions) == 0 {
				t.Errorf("%s has no partitions", tt.topic.Name)
			}
			for k, want := range tt.wantConfigs {
				if v := topicConfig(t, brokers, tt.topic.Name, k); v != want {
					t.Errorf("%s config %s = %q, want %q", tt.topic.Name, k, v, want)
				}
			}
		})
	}
}

func TestEnsureTopicsManyAtOnceIsUsableImmediately(t *testing.T) {
	t.Parallel()
	brokers := startBroker(t).Brokers()
	topics := []kafkaadmin.Topic{{Name: "a", Partitions: 3}, {Name: "b", Partitions: 3}, {Name: "a.dlq", Partitions: 1}}
	if err := kafkaadmin.EnsureTopics(testContext(t), brokers, topics...); err != nil {
		t.Fatalf("EnsureTopics: %v", err)
	}
	w := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: "b", RequiredAcks: kafka.RequireAll, MaxAttempts: 1}
	defer w.Close()
	if err := w.WriteMessages(testContext(t), kafka.Message{Key: []byte("k"), Value: []byte("v")}); err != nil {
		t.Fatalf("write to a topic just ensured: %v", err)
	}
}

func TestEnsureTopicsReportsRejectedTopic(t *testing.T) {
	t.Parallel()
	brokers := startBroker(t).Brokers()
	err := kafkaadmin.EnsureTopics(testContext(t), brokers,
		kafkaadmin.Topic{Name: "fine", Partitions: 1},
		kafkaadmin.Topic{Name: "overreplicated", Partitions: 1, ReplicationFactor: 3})
	// An explicit factor is never lowered behind the caller's back.
	if !errors.Is(err, kafka.InvalidReplicationFactor) || !strings.Contains(err.Error(), "overreplicated") {
		t.Fatalf("err = %v, want InvalidReplicationFactor naming the topic", err)
	}
}

// A broker older than Kafka 2.4 rejects replication factor -1.
func TestEnsureTopicsFallsBackToReplicationFactorOne(t *testing.T) {
	t.Parallel()
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	var sawDefault, sawOne bool
	c.ControlKey(int16(kmsg.CreateTopics), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		create := req.(*kmsg.CreateTopicsRequest)
		if create.Topics[0].ReplicationFactor != -1 {
			sawOne = create.Topics[0].ReplicationFactor == 1
			return nil, nil, false
		}
		sawDefault = true
		resp := create.ResponseKind().(*kmsg.CreateTopicsResponse)
		for _, rt := range create.Topics {
			st := kmsg.NewCreateTopicsResponseTopic()
			st.Topic = rt.Topic
			st.ErrorCode = kerr.InvalidReplicationFactor.Code
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	brokers := c.ListenAddrs()
	if err := kafkaadmin.EnsureTopics(testContext(t), brokers, kafkaadmin.Topic{Name: "legacy", Partitions: 2}); err != nil {
		t.Fatalf("EnsureTopics: %v", err)
	}
	if !sawDefault || !sawOne {
		t.Errorf("requests: replication -1 sent=%v, then 1 sent=%v; want both", sawDefault, sawOne)
	}
	if got := len(metadata(t, brokers, "legacy").Partitions); got != 2 {
		t.Errorf("legacy has %d partitions, want 2", got)
	}
}

func TestWaitReady(t *testing.T) {
	t.Parallel()
	t.Run("broker up", func(t *testing.T) {
		t.Parallel()
		if err := kafkaadmin.WaitReady(testContext(t), startBroker(t).Brokers()); err != nil {
			t.Fatalf("WaitReady: %v", err)
		}
	})
	t.Run("nothing listening", func(t *testing.T) {
		t.Parallel()
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		ctx, cancel := context.WithTimeout(t.Context(), 700*time.Millisecond)
		defer cancel()
		err = kafkaadmin.WaitReady(ctx, []string{addr})
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), addr) {
			t.Fatalf("err = %v, want deadline exceeded naming %s", err, addr)
		}
	})
	t.Run("broker comes up while waiting", func(t *testing.T) {
		t.Parallel()
		b := startBroker(t)
		b.Close()
		done := make(chan error, 1)
		go func() { done <- kafkaadmin.WaitReady(testContext(t), b.Brokers()) }()
		if err := b.Restart(); err != nil {
			t.Fatalf("restart broker: %v", err)
		}
		if err := <-done; err != nil {
			t.Fatalf("WaitReady: %v", err)
		}
	})
}

// kafka-go clients without a Transport of their own share
// kafka.DefaultTransport, whose metadata cache knows the topics of its last
// refresh; a topic ensured afterwards must still be usable at once.
func TestEnsuredTopicIsUsableThroughWarmDefaultTransport(t *testing.T) {
	t.Parallel()
	brokers := startBroker(t).Brokers()
	write := func(topic string) error {
		w := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: topic, RequiredAcks: kafka.RequireAll, MaxAttempts: 1}
		defer w.Close()
		return w.WriteMessages(testContext(t), kafka.Message{Key: []byte("k"), Value: []byte(topic)})
	}
	if err := kafkaadmin.EnsureTopics(testContext(t), brokers, kafkaadmin.Topic{Name: "earlier", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	if err := write("earlier"); err != nil {
		t.Fatalf("write to earlier: %v", err)
	}
	if err := kafkaadmin.EnsureTopics(testContext(t), brokers, kafkaadmin.Topic{Name: "later", Partitions: 4}); err != nil {
		t.Fatal(err)
	}
	if err := write("later"); err != nil {
		t.Fatalf("write to a topic ensured after the default transport cached metadata: %v", err)
	}
}
