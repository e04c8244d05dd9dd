package testenv

import (
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

func TestChooseBackends(t *testing.T) {
	engineDown := errors.New("Cannot connect to the Docker daemon at unix:///var/run/docker.sock")
	tests := []struct {
		name        string
		env         map[string]string
		docker      error // the engine's answer
		wantProbe   bool  // whether the engine may be asked at all
		wantPG      backend
		wantKafka   backend
		wantReason  string
		wantErrText string // non-empty: the choice must carry this error
	}{
		{"both set", map[string]string{"DATABASE_URL": "postgres://db", "KAFKA_BROKERS": "k:9092"}, nil, false,
			fromEnv, fromEnv, "DATABASE_URL and KAFKA_BROKERS set", ""},
		{"database set", map[string]string{"DATABASE_URL": "postgres://db"}, nil, false,
			fromEnv, embedded, "DATABASE_URL set", ""},
		{"brokers set", map[string]string{"KAFKA_BROKERS": "k:9092"}, nil, false,
			embedded, fromEnv, "KAFKA_BROKERS set", ""},
		{"env wins over required", map[string]string{"KAFKA_BROKERS": "k:9092", "CHOREO_TESTCONTAINERS": "1"}, engineDown, false,
			embedded, fromEnv, "KAFKA_BROKERS set", ""},
		{"docker healthy", nil, nil, true,
			container, container, "docker healthy", ""},
		{"docker unhealthy", nil, engineDown, true,
			embedded, embedded, "docker not healthy (" + engineDown.Error() + ")", ""},
		{"opt out 0", map[string]string{"CHOREO_TESTCONTAINERS": "0"}, nil, false,
			embedded, embedded, "CHOREO_TESTCONTAINERS=0", ""},
		{"opt out false", map[string]string{"CHOREO_TESTCONTAINERS": "false"}, nil, false,
			embedded, embedded, "CHOREO_TESTCONTAINERS=false", ""},
		{"required and healthy", map[string]string{"CHOREO_TESTCONTAINERS": "1"}, nil, true,
			container, container, "docker healthy", ""},
		{"required but unhealthy", map[string]string{"CHOREO_TESTCONTAINERS": "true"}, engineDown, true,
			embedded, embedded, "docker not healthy (" + engineDown.Error() + ")", "CHOREO_TESTCONTAINERS=true but docker not healthy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			probed := false
			got := chooseBackends(func(k string) string { return tt.env[k] }, func() error {
				probed = true
				return tt.docker
			})
			if probed != tt.wantProbe {
				t.Errorf("docker probed = %v, want %v", probed, tt.wantProbe)
			}
			if got.postgres != tt.wantPG || got.kafka != tt.wantKafka {
				t.Errorf("postgres=%s kafka=%s, want postgres=%s kafka=%s", got.postgres, got.kafka, tt.wantPG, tt.wantKafka)
			}
			if got.reason != tt.wantReason {
				t.Errorf("reason %q, want %q", got.reason, tt.wantReason)
			}
			switch {
			case tt.wantErrText == "" && got.err != nil:
				t.Errorf("unexpected error %v", got.err)
			case tt.wantErrText != "" && (got.err == nil || !strings.Contains(got.err.Error(), tt.wantErrText)):
				t.Errorf("error %v, want one containing %q", got.err, tt.wantErrText)
			}
		})
	}
}

func TestBackendsString(t *testing.T) {
	tests := []struct {
		b    backends
		want string
	}{
		{backends{postgres: embedded, kafka: embedded, reason: "docker not healthy (no socket)"},
			"docker not healthy (no socket): using embedded postgres and kfake"},
		{backends{postgres: container, kafka: container, reason: "docker healthy"},
			"docker healthy: using postgres:15.18 container and apache/kafka:4.4.0 container"},
		{backends{postgres: fromEnv, kafka: embedded, reason: "DATABASE_URL set"},
			"DATABASE_URL set: using DATABASE_URL and kfake"},
	}
	for _, tt := range tests {
		if got := tt.b.String(); got != tt.want {
			t.Errorf("String() = %q, want %q", got, tt.want)
		}
	}
}

// TestDockerHealthHere runs the real probe. Where no engine can be reached through the default
// socket (this project's machines: the docker CLI, no daemon), it must say so, with a reason,
// within its deadline, and the harness must then choose the embedded backends.
func TestDockerHealthHere(t *testing.T) {
	start := time.Now()
	err := dockerHealth(dockerHealthTimeout)
	took := time.Since(start)
	if took > dockerHealthTimeout+time.Second {
		t.Errorf("probe took %v, want at most its %v deadline", took, dockerHealthTimeout)
	}
	choice := chooseBackends(func(string) string { return "" }, func() error { return err })
	t.Logf("docker health: %v (%v); harness would log %q", err, took, choice)

	_, statErr := os.Stat("/var/run/docker.sock")
	noEngine := errors.Is(statErr, os.ErrNotExist) && os.Getenv("DOCKER_HOST") == ""
	if noEngine {
		if err == nil || strings.TrimSpace(err.Error()) == "" {
			t.Fatalf("no /var/run/docker.sock and no DOCKER_HOST, yet the probe reports healthy (err %v)", err)
		}
		if choice.postgres != embedded || choice.kafka != embedded || !strings.HasPrefix(choice.String(), "docker not healthy (") {
			t.Errorf("without an engine the harness chose %q, want embedded postgres and kfake", choice)
		}
		return
	}
	if (err == nil) != (choice.postgres == container && choice.kafka == container) {
		t.Errorf("engine answered %v but the harness chose %q", err, choice)
	}
}

// TestFallbackWiring drives a private env through the decision: an unhealthy engine with
// CHOREO_TESTCONTAINERS=1 is an error, opting out starts kfake as before.
func TestFallbackWiring(t *testing.T) {
	t.Setenv("DATABASE_URL", "")
	t.Setenv("KAFKA_BROKERS", "")
	unhealthy := func(e *env) {
		e.docker.healthOnce.Do(func() { e.docker.healthErr = errors.New("no engine here") })
	}

	t.Run("required", func(t *testing.T) {
		t.Setenv("CHOREO_TESTCONTAINERS", "1")
		var e env
		unhealthy(&e)
		e.startKafka()
		if e.kafkaErr == nil || !strings.Contains(e.kafkaErr.Error(), "docker not healthy (no engine here)") {
			t.Fatalf("kafka error %v, want the unhealthy engine named", e.kafkaErr)
		}
		if e.broker != nil || len(e.brokers) != 0 {
			t.Errorf("a broker was started (%v) although containers were required", e.brokers)
		}
	})
	t.Run("auto falls back", func(t *testing.T) {
		t.Setenv("CHOREO_TESTCONTAINERS", "")
		var e env
		unhealthy(&e)
		e.startKafka()
		if e.broker != nil {
			t.Cleanup(e.broker.Close)
		}
		if e.kafkaErr != nil || e.broker == nil || len(e.brokers) != 1 {
			t.Fatalf("want kfake after an unhealthy engine: err %v, brokers %v", e.kafkaErr, e.brokers)
		}
		if b := e.backends(); b.kafka != embedded || b.reason != "docker not healthy (no engine here)" {
			t.Errorf("choice %q", b)
		}
	})
	t.Run("opt out never probes", func(t *testing.T) {
		t.Setenv("CHOREO_TESTCONTAINERS", "0")
		var e env
		e.startKafka()
		if e.broker != nil {
			t.Cleanup(e.broker.Close)
		}
		if e.kafkaErr != nil || e.broker == nil {
			t.Fatalf("want kfake when opted out: err %v", e.kafkaErr)
		}
		probed := true
		e.docker.healthOnce.Do(func() { probed = false })
		if probed {
			t.Errorf("the docker engine was probed although CHOREO_TESTCONTAINERS=0")
		}
	})
}

// TestKafkaContainerListeners checks the broker configuration that only a Docker engine would
// otherwise exercise: every advertised listener exists and has a protocol, clients get the
// published port, replication and the KRaft quorum use their own listeners.
func TestKafkaContainerListeners(t *testing.T) {
	env := kafkaContainerEnv()
	parse := func(list string) map[string]string { // listener name → port
		out := map[string]string{}
		for _, l := range strings.Split(list, ",") {
			name, addr, _ := strings.Cut(l, "://")
			_, port, err := net.SplitHostPort(addr)
			if err != nil {
				t.Fatalf("listener %q: %v", l, err)
			}
			out[name] = port
		}
		return out
	}
	listeners := parse(env["KAFKA_LISTENERS"])
	advertised := parse(kafkaAdvertised("localhost", "32768"))
	protocols := map[string]bool{}
	for _, pair := range strings.Split(env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"], ",") {
		name, _, _ := strings.Cut(pair, ":")
		protocols[name] = true
	}
	for name := range listeners {
		if !protocols[name] {
			t.Errorf("listener %s has no security protocol", name)
		}
	}
	controller := env["KAFKA_CONTROLLER_LISTENER_NAMES"]
	for name, port := range advertised {
		switch {
		case listeners[name] == "":
			t.Errorf("advertised listener %s is not a listener", name)
		case name == controller:
			t.Errorf("the controller listener %s must not be advertised", name)
		case name == "PLAINTEXT" && port != "32768":
			t.Errorf("clients are sent to port %s, not the published one", port)
		case name != "PLAINTEXT" && port != listeners[name]:
			t.Errorf("listener %s is advertised on %s but listens on %s", name, port, listeners[name])
		}
	}
	if port, _, _ := strings.Cut(kafkaClientPort, "/"); listeners["PLAINTEXT"] != port {
		t.Errorf("published port %s is not the client listener's %s", kafkaClientPort, listeners["PLAINTEXT"])
	}
	if ibl := env["KAFKA_INTER_BROKER_LISTENER_NAME"]; advertised[ibl] == "" {
		t.Errorf("inter-broker listener %s is not advertised", ibl)
	}
	if _, voter, _ := strings.Cut(env["KAFKA_CONTROLLER_QUORUM_VOTERS"], "@"); !strings.HasSuffix(voter, ":"+listeners[controller]) {
		t.Errorf("quorum voter %s is not on the controller listener's port %s", voter, listeners[controller])
	}
}
