package testenv

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/choreo-dev/choreo/internal/devstack/kafkaembed"
)

// Kafka returns the bootstrap brokers: KAFKA_BROKERS (comma-separated) when
// set, else an in-memory broker shared by the test binary. Tests share it
// safely by naming their topics and groups with Name.
func Kafka(t testing.TB) []string {
	t.Helper()
	shared.kafkaOnce.Do(shared.startKafka)
	if shared.kafkaErr != nil {
		t.Fatalf("testenv: %v", shared.kafkaErr)
	}
	return append([]string(nil), shared.brokers...)
}

func (e *env) startKafka() {
	if list := os.Getenv("KAFKA_BROKERS"); list != "" {
		for _, b := range strings.Split(list, ",") {
			if b = strings.TrimSpace(b); b != "" {
				e.brokers = append(e.brokers, b)
			}
		}
		announce("kafka=KAFKA_BROKERS(%s)", strings.Join(e.brokers, ","))
		return
	}
	if e.kafkaFromBackends() {
		return
	}
	b, err := kafkaembed.Start(kafkaembed.Config{Addr: "127.0.0.1:0", Log: zerolog.Nop()})
	if err != nil {
		e.kafkaErr = err
		return
	}
	e.broker = b
	e.brokers = b.Brokers()
	announce("kafka=kfake(%s)", strings.Join(e.brokers, ","))
}

// kafkaFromBackends starts the Kafka container when the binary's backends are containers. It
// returns false when kfake is to be used: by choice, or because the container would not start
// (an error only if CHOREO_TESTCONTAINERS=1 demanded it).
func (e *env) kafkaFromBackends() bool {
	b := e.backends()
	if b.err != nil {
		e.kafkaErr = b.err
		return true
	}
	if b.kafka != container {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	brokers, err := e.startKafkaContainer(ctx)
	if err != nil {
		if requireContainers() {
			e.kafkaErr = err
			return true
		}
		announce("%v: falling back to kfake", err)
		return false
	}
	e.brokers = brokers
	announce("kafka=container(%s, %s)", kafkaImage, strings.Join(brokers, ","))
	return true
}

// OwnKafka starts a broker for this test alone, for tests that stop and
// restart Kafka (Close, then Restart). It keeps its data in the test's temp
// directory so a restart loses nothing, and is closed when the test ends.
func OwnKafka(t testing.TB) *kafkaembed.Broker {
	t.Helper()
	// Its logs are dropped: kfake goroutines may log after the test ends,
	// when t.Log panics.
	b, err := kafkaembed.Start(kafkaembed.Config{Addr: "127.0.0.1:0", DataDir: t.TempDir(), Log: zerolog.Nop()})
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(b.Close)
	return b
}
