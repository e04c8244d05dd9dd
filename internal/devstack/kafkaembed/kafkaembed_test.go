package kafkaembed_test

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"

	"github.com/choreo-dev/choreo/internal/devstack/kafkaembed"
	"github.com/choreo-dev/choreo/internal/kafkaadmin"
	"github.com/choreo-dev/choreo/internal/kafkaconn"
)

const (
	topic = "orders"
	group = "billing"
	// maxWait bounds a fetch's long poll, which Reader.Close waits out
	// (kafka-go's default of 10s would dominate the test's run time).
	maxWait = 250 * time.Millisecond
)

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func start(t *testing.T, cfg kafkaembed.Config) *kafkaembed.Broker {
	t.Helper()
	cfg.Log = zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	b, err := kafkaembed.Start(cfg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(b.Close)
	return b
}

func produce(t *testing.T, brokers []string, value string) {
	t.Helper()
	w := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: topic, RequiredAcks: kafka.RequireAll}
	defer w.Close()
	if err := w.WriteMessages(testContext(t), kafka.Message{Key: []byte("order-1"), Value: []byte(value)}); err != nil {
		t.Fatalf("produce %q: %v", value, err)
	}
}

// consumeInGroup reads one message as the group and commits its offset.
func consumeInGroup(t *testing.T, brokers []string) string {
	t.Helper()
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: topic, GroupID: group, StartOffset: kafka.FirstOffset, MaxWait: maxWait})
	defer r.Close()
	m, err := r.ReadMessage(testContext(t)) // commits synchronously
	if err != nil {
		t.Fatalf("consume as %s: %v", group, err)
	}
	return string(m.Value)
}

func committedOffset(t *testing.T, brokers []string) int64 {
	t.Helper()
	// A transport of its own: the shared default one may still hold a
	// connection to the broker from before the restart.
	c := &kafka.Client{Addr: kafka.TCP(brokers...), Transport: &kafka.Transport{}}
	resp, err := c.OffsetFetch(testContext(t), &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: {0}}})
	if err != nil {
		t.Fatalf("fetch committed offset: %v", err)
	}
	return resp.Topics[topic][0].CommittedOffset
}

func TestRestartWithDataDirKeepsRecordsAndOffsets(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		restart func(t *testing.T, b *kafkaembed.Broker, dir string) []string
	}{
		{"Close then Start on a new port", func(t *testing.T, b *kafkaembed.Broker, dir string) []string {
			b.Close()
			return start(t, kafkaembed.Config{DataDir: dir}).Brokers()
		}},
		{"Restart on the same address", func(t *testing.T, b *kafkaembed.Broker, dir string) []string {
			before := b.Brokers()[0]
			if err := b.Restart(); err != nil {
				t.Fatalf("Restart: %v", err)
			}
			if after := b.Brokers()[0]; after != before {
				t.Errorf("address changed on restart: %s -> %s", before, after)
			}
			return b.Brokers()
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			b := start(t, kafkaembed.Config{DataDir: dir})
			brokers := b.Brokers()
			if err := kafkaadmin.EnsureTopics(testContext(t), brokers, kafkaadmin.Topic{Name: topic, Partitions: 1}); err != nil {
				t.Fatal(err)
			}
			produce(t, brokers, "first")
			if got := consumeInGroup(t, brokers); got != "first" {
				t.Fatalf("consumed %q, want first", got)
			}

			brokers = tt.restart(t, b, dir)

			if got := committedOffset(t, brokers); got != 1 {
				t.Errorf("committed offset after restart = %d, want 1", got)
			}
			r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: topic, Partition: 0, MaxWait: maxWait})
			defer r.Close()
			m, err := r.ReadMessage(testContext(t))
			if err != nil || string(m.Value) != "first" {
				t.Fatalf("record after restart = %q, %v; want first", m.Value, err)
			}
			produce(t, brokers, "second")
			if got := consumeInGroup(t, brokers); got != "second" {
				t.Errorf("group resumed at %q, want second", got)
			}
		})
	}
}

func TestTopicsAreNotCreatedAutomatically(t *testing.T) {
	t.Parallel()
	brokers := start(t, kafkaembed.Config{}).Brokers()
	w := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: "never.created", AllowAutoTopicCreation: true, MaxAttempts: 1}
	defer w.Close()
	err := w.WriteMessages(testContext(t), kafka.Message{Value: []byte("lost")})
	if !errors.Is(err, kafka.UnknownTopicOrPartition) {
		t.Fatalf("write to a missing topic: err = %v, want UnknownTopicOrPartition", err)
	}
}

func TestInMemoryRestartStartsEmpty(t *testing.T) {
	t.Parallel()
	b := start(t, kafkaembed.Config{Addr: "127.0.0.1:0"})
	if err := kafkaadmin.EnsureTopics(testContext(t), b.Brokers(), kafkaadmin.Topic{Name: topic, Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	if err := b.Restart(); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	conn, err := kafka.DialContext(testContext(t), "tcp", b.Brokers()[0])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ReadPartitions(topic); !errors.Is(err, kafka.UnknownTopicOrPartition) {
		t.Errorf("topic after in-memory restart: err = %v, want UnknownTopicOrPartition", err)
	}
	b.Close()
	b.Close() // a second Close does nothing
}

// Two brokers on one DataDir would corrupt it: the second waits for the first
// to let go, and fails naming it when it does not.
func TestDataDirHasOneOwner(t *testing.T) {
	dir := t.TempDir()
	first := start(t, kafkaembed.Config{DataDir: dir})

	_, err := kafkaembed.Start(kafkaembed.Config{DataDir: dir, PreviousRunWait: 100 * time.Millisecond, Log: zerolog.Nop()})
	if err == nil || !strings.Contains(err.Error(), "held by another running process") {
		t.Fatalf("second Start on a DataDir in use: err = %v, want 'held by another running process'", err)
	}

	first.Close()
	start(t, kafkaembed.Config{DataDir: dir})
}

// A previous run that is going away may still hold the fixed port for a
// moment: Start waits for it instead of failing.
func TestStartWaitsForThePortToBeFreed(t *testing.T) {
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := held.Addr().String()
	waiting := make(chan struct{})
	var once sync.Once
	log := zerolog.New(io.Discard).Hook(zerolog.HookFunc(func(_ *zerolog.Event, _ zerolog.Level, msg string) {
		if strings.Contains(msg, "waiting for it to be freed") {
			once.Do(func() { close(waiting) })
		}
	}))
	started := make(chan error, 1)
	go func() {
		b, err := kafkaembed.Start(kafkaembed.Config{Addr: addr, DataDir: t.TempDir(), Log: log})
		if err == nil {
			b.Close()
		}
		started <- err
	}()
	select {
	case <-waiting:
	case err := <-started:
		t.Fatalf("Start returned while the port was held: %v", err)
	}
	held.Close()
	if err := <-started; err != nil {
		t.Fatalf("Start on a port freed meanwhile: %v", err)
	}
}

// TestClientsInTheProcessConnectInMemory: a client given Broker.Dial reaches the broker through an
// in-memory connection (produce, group consume and commit work over it) while other processes' clients
// still connect over TCP; Dial reaches the broker again after a Restart, reaches other addresses over the
// network, and fails once the broker is closed.
func TestClientsInTheProcessConnectInMemory(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	b := start(t, kafkaembed.Config{DataDir: t.TempDir()}) // the topic outlives the Restart
	brokers := b.Brokers()
	if err := kafkaadmin.EnsureTopics(ctx, brokers, kafkaadmin.Topic{Name: topic, Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	c, err := b.Dial(ctx, "tcp", brokers[0])
	if err != nil {
		t.Fatal(err)
	}
	if got := c.RemoteAddr().Network(); got != "pipe" {
		t.Errorf("Dial to the broker gave a %q connection, want an in-memory pipe", got)
	}
	_ = c.Close()

	var pipes, others atomic.Int64 // the connections the clients below open, by kind
	mem := kafkaconn.Config{Dial: func(ctx context.Context, network, address string) (net.Conn, error) {
		c, err := b.Dial(ctx, network, address)
		if err == nil && c.RemoteAddr().Network() == "pipe" {
			pipes.Add(1)
		} else {
			others.Add(1)
		}
		return c, err
	}}
	inMemory := func(value string) {
		w := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: topic, RequiredAcks: kafka.RequireAll, Transport: mem.Transport(nil)}
		defer w.Close()
		if err := w.WriteMessages(ctx, kafka.Message{Key: []byte("order-1"), Value: []byte(value)}); err != nil {
			t.Fatalf("produce %q in memory: %v", value, err)
		}
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: topic, GroupID: group, StartOffset: kafka.FirstOffset,
			MaxWait: maxWait, Dialer: mem.Dialer()})
		defer r.Close()
		m, err := r.ReadMessage(ctx)
		if err != nil || string(m.Value) != value {
			t.Fatalf("consumed %q, %v in memory; want %q", m.Value, err, value)
		}
	}
	inMemory("first")
	if got := committedOffset(t, brokers); got != 1 { // over TCP, as another process sees it
		t.Errorf("committed offset seen over TCP = %d, want 1", got)
	}
	if err := b.Restart(); err != nil {
		t.Fatal(err)
	}
	inMemory("second")
	if pipes.Load() == 0 || others.Load() != 0 {
		t.Errorf("the clients opened %d in-memory connections and %d others; want all in memory", pipes.Load(), others.Load())
	}

	other, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	c, err = b.Dial(ctx, "tcp", other.Addr().String())
	if err != nil {
		t.Fatalf("Dial to another address: %v", err)
	}
	if got := c.RemoteAddr().String(); got != other.Addr().String() {
		t.Errorf("Dial to %s reached %s", other.Addr(), got)
	}
	_ = c.Close()

	b.Close()
	if c, err := b.Dial(ctx, "tcp", brokers[0]); err == nil {
		_ = c.Close()
		t.Error("Dial to a closed broker succeeded")
	}
}
