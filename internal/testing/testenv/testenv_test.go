package testenv_test

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/segmentio/kafka-go"

	"github.com/choreo-dev/choreo/internal/kafkaadmin"
	"github.com/choreo-dev/choreo/internal/testing/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var validName = regexp.MustCompile(`^[a-z0-9_.-]{1,60}$`)

func TestName(t *testing.T) {
	t.Parallel()
	tests := []struct {
		test, base, wantPrefix string
	}{
		{"plain", "order.events", "order.events_testname_plain_"},
		{"Mixed Case & symbols!/sub-test", "db", "db_testname_mixed_case_symbols_sub_test_"},
		{"ümlaut", "Group-A", "group-a_testname_mlaut_"},
		{strings.Repeat("very_long_", 20), "payment.events.dlq", "payment.events.dlq_testname_very_long_"},
		{"empty base", "", "testname_empty_base_"},
	}
	for _, tt := range tests {
		t.Run(tt.test, func(t *testing.T) {
			a, b := testenv.Name(t, tt.base), testenv.Name(t, tt.base)
			for _, n := range []string{a, b} {
				if !validName.MatchString(n) {
					t.Errorf("Name = %q: not [a-z0-9_.-], 1..60 characters", n)
				}
				if !strings.HasPrefix(n, tt.wantPrefix[:min(len(tt.wantPrefix), 40)]) {
					t.Errorf("Name = %q, want prefix %q", n, tt.wantPrefix)
				}
			}
			if a == b {
				t.Errorf("two calls gave the same name %q", a)
			}
		})
	}
}

func currentDatabase(t *testing.T, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}) string {
	t.Helper()
	var name string
	if err := q.QueryRow(t.Context(), "SELECT current_database()").Scan(&name); err != nil {
		t.Fatalf("current_database: %v", err)
	}
	return name
}

func databaseExists(t *testing.T, name string) bool {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), testenv.ServerURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var exists bool
	if err := conn.QueryRow(t.Context(), "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		t.Fatal(err)
	}
	return exists
}

func TestPostgresGivesEachCallAFreshDatabase(t *testing.T) {
	t.Parallel()
	var first, second string
	t.Run("use", func(t *testing.T) {
		a, b := testenv.Postgres(t), testenv.Postgres(t)
		first, second = currentDatabase(t, a), currentDatabase(t, b)
		if first == second {
			t.Fatalf("both pools on database %s", first)
		}
		if _, err := a.Exec(t.Context(), "CREATE TABLE only_in_a (id int)"); err != nil {
			t.Fatal(err)
		}
		var n int
		if err := b.QueryRow(t.Context(), "SELECT count(*) FROM pg_tables WHERE tablename = 'only_in_a'").Scan(&n); err != nil || n != 0 {
			t.Errorf("table of one database visible in the other: count %d, err %v", n, err)
		}
	})
	for _, db := range []string{first, second} {
		if databaseExists(t, db) {
			t.Errorf("database %s still exists after its test ended", db)
		}
	}
}

func TestDatabaseURL(t *testing.T) {
	t.Parallel()
	url := testenv.DatabaseURL(t)
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatalf("connect to %s: %v", url, err)
	}
	defer conn.Close(context.Background())
	if db := currentDatabase(t, conn); !strings.HasPrefix(db, "db_testdatabaseurl_") {
		t.Errorf("database %q is not named after the test", db)
	}
	if os.Getenv("DATABASE_URL") == "" && !strings.HasSuffix(strings.Split(testenv.ServerURL(t), "?")[0], "/postgres") {
		t.Errorf("ServerURL = %s, want the postgres database", testenv.ServerURL(t))
	}
}

func TestKafkaIsSharedAndServes(t *testing.T) {
	t.Parallel()
	brokers := testenv.Kafka(t)
	if again := testenv.Kafka(t); fmt.Sprint(again) != fmt.Sprint(brokers) {
		t.Errorf("Kafka gave %v then %v", brokers, again)
	}
	topic := testenv.Name(t, "events")
	if err := kafkaadmin.EnsureTopics(t.Context(), brokers, kafkaadmin.Topic{Name: topic, Partitions: 2}); err != nil {
		t.Fatalf("EnsureTopics on shared broker: %v", err)
	}
}

func TestOwnKafkaSurvivesRestart(t *testing.T) {
	t.Parallel()
	b := testenv.OwnKafka(t)
	if shared := testenv.Kafka(t); os.Getenv("KAFKA_BROKERS") == "" && shared[0] == b.Brokers()[0] {
		t.Fatalf("OwnKafka returned the shared broker %s", shared[0])
	}
	topic := testenv.Name(t, "events")
	if err := kafkaadmin.EnsureTopics(t.Context(), b.Brokers(), kafkaadmin.Topic{Name: topic, Partitions: 3}); err != nil {
		t.Fatal(err)
	}
	b.Close()
	if err := b.Restart(); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	// EnsureTopics waits for the topic to be listed; a lost topic would be
	// recreated, so check that it already existed with its partitions.
	if err := kafkaadmin.WaitReady(t.Context(), b.Brokers()); err != nil {
		t.Fatal(err)
	}
	conn, err := dialKafka(t, b.Brokers()[0])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	parts, err := conn.ReadPartitions(topic)
	if err != nil || len(parts) != 3 {
		t.Errorf("after restart %s has %d partitions (err %v), want 3", topic, len(parts), err)
	}
}

func dialKafka(t *testing.T, addr string) (*kafka.Conn, error) {
	t.Helper()
	return kafka.DialContext(t.Context(), "tcp", addr)
}
