package forwarder_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/choreo-dev/choreo/internal/devstack/kafkaembed"
)

// kafkaBrokers is the Kafka that choreo's tests use (internal/testing/testenv.Kafka): KAFKA_BROKERS when set
// (scripts/with-kafka.sh starts a real broker and sets it), else the in-process kfake broker. It is
// repeated here rather than imported because testenv drags in dependencies (container backends) that
// this module has no use for; the behaviour is the same.
func kafkaBrokers(tb testing.TB) (brokers []string, desc string) {
	tb.Helper()
	if list := os.Getenv("KAFKA_BROKERS"); list != "" {
		for _, b := range strings.Split(list, ",") {
			if b = strings.TrimSpace(b); b != "" {
				brokers = append(brokers, b)
			}
		}
		return brokers, "KAFKA_BROKERS " + strings.Join(brokers, ",")
	}
	b, err := kafkaembed.Start(kafkaembed.Config{Addr: "127.0.0.1:0", Log: zerolog.Nop()})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(b.Close)
	return b.Brokers(), "in-process kfake " + strings.Join(b.Brokers(), ",")
}

// uniqueName is base with a random suffix, valid as a Kafka topic and a Postgres database name.
func uniqueName(base string) string { return fmt.Sprintf("%s_%08x", base, rand.Uint32()) }

// logger writes through tb.Log at TEST_LOG_LEVEL (default warn), like choreo's test logger.
func logger(tb testing.TB) zerolog.Logger {
	level := zerolog.WarnLevel
	if l, err := zerolog.ParseLevel(os.Getenv("TEST_LOG_LEVEL")); err == nil && os.Getenv("TEST_LOG_LEVEL") != "" {
		level = l
	}
	return zerolog.New(zerolog.NewTestWriter(tb)).Level(level).With().Timestamp().Logger()
}
