package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/testcontainers/testcontainers-go"
	tclog "github.com/testcontainers/testcontainers-go/log"
	tcpostgres "github.com/testcontainers/testcontainers-go/modules/postgres"
	"github.com/testcontainers/testcontainers-go/wait"
)

// Images of the container backends: the Postgres major the embedded cluster and docker-compose.yml
// run, and the Kafka release of docker-compose.yml and scripts/kafka.sh.
const (
	postgresImage = "postgres:15.18"
	kafkaImage    = "apache/kafka:4.4.0"
)

// dockerHealthTimeout bounds the engine probe, so a machine without Docker decides at once.
const dockerHealthTimeout = 3 * time.Second

// backend is where one server of the harness comes from.
type backend string

const (
	fromEnv   backend = "env"       // DATABASE_URL or KAFKA_BROKERS
	container backend = "container" // testcontainers-go on a healthy Docker engine
	embedded  backend = "embedded"  // pgembed cluster, kfake broker
)

// backends is the harness's choice for one test binary and why it was made. err is set only when
// CHOREO_TESTCONTAINERS=1 demands containers that cannot be had.
type backends struct {
	postgres, kafka backend
	reason          string
	err             error
}

// What CHOREO_TESTCONTAINERS asks for.
const (
	containersAuto     = "auto"     // unset: containers when Docker is healthy
	containersOff      = "off"      // 0 or false
	containersRequired = "required" // 1 or true: no silent fallback
)

func containersMode(getenv func(string) string) string {
	switch v := getenv("CHOREO_TESTCONTAINERS"); {
	case v == "0" || strings.EqualFold(v, "false"):
		return containersOff
	case v == "1" || strings.EqualFold(v, "true"):
		return containersRequired
	}
	return containersAuto
}

// requireContainers reports whether a container that fails to start is an error rather than a
// reason to fall back to the embedded backend.
func requireContainers() bool { return containersMode(os.Getenv) == containersRequired }

// chooseBackends decides where Postgres and Kafka come from. Containers are used only when neither
// DATABASE_URL nor KAFKA_BROKERS points at a server of its own and the Docker engine answers;
// CHOREO_TESTCONTAINERS=0 opts out, =1 makes an unhealthy engine an error instead of a fallback.
// dockerHealthy is called only when the answer depends on it.
func chooseBackends(getenv func(string) string, dockerHealthy func() error) backends {
	pick := func(env string) backend {
		if getenv(env) != "" {
			return fromEnv
		}
		return embedded
	}
	b := backends{postgres: pick("DATABASE_URL"), kafka: pick("KAFKA_BROKERS")}
	mode := containersMode(getenv)
	switch {
	case b.postgres == fromEnv || b.kafka == fromEnv:
		var set []string
		for _, env := range []string{"DATABASE_URL", "KAFKA_BROKERS"} {
			if getenv(env) != "" {
				set = append(set, env)
			}
		}
		b.reason = strings.Join(set, " and ") + " set"
	case mode == containersOff:
		b.reason = "CHOREO_TESTCONTAINERS=" + getenv("CHOREO_TESTCONTAINERS")
	default:
		if err := dockerHealthy(); err != nil {
			b.reason = fmt.Sprintf("docker not healthy (%v)", err)
			if mode == containersRequired {
				b.err = fmt.Errorf("CHOREO_TESTCONTAINERS=%s but %s", getenv("CHOREO_TESTCONTAINERS"), b.reason)
			}
			break
		}
		b.postgres, b.kafka = container, container
		b.reason = "docker healthy"
	}
	return b
}

// String is the harness's one-line account of its choice, e.g. "docker not healthy (...): using
// embedded postgres and kfake".
func (b backends) String() string {
	describe := func(kind backend, env, image, local string) string {
		switch kind {
		case fromEnv:
			return env
		case container:
			return image + " container"
		}
		return local
	}
	return fmt.Sprintf("%s: using %s and %s", b.reason,
		describe(b.postgres, "DATABASE_URL", postgresImage, "embedded postgres"),
		describe(b.kafka, "KAFKA_BROKERS", kafkaImage, "kfake"))
}

// dockerHealth asks the engine testcontainers-go would use (DOCKER_HOST, the Docker context,
// ~/.testcontainers.properties or the default socket) for its info. The provider's own set-up has
// no deadline, so the whole probe runs under one.
func dockerHealth(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		p, err := testcontainers.NewDockerProvider(testcontainers.WithLogger(tclog.NewNoopLogger()))
		if err != nil {
			done <- fmt.Errorf("no Docker engine found: %w", err)
			return
		}
		if err := p.Health(ctx); err != nil { // closes the provider
			done <- fmt.Errorf("engine did not answer: %w", err)
			return
		}
		done <- nil
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("no answer within %v", timeout)
	}
}

// dockerState is the once-per-binary choice and the containers started for it.
type dockerState struct {
	once   sync.Once
	choice backends

	healthOnce sync.Once
	healthErr  error

	mu      sync.Mutex
	running []testcontainers.Container
}

// backends returns the choice, making and announcing it on first use.
func (e *env) backends() backends {
	d := &e.docker
	d.once.Do(func() {
		d.choice = chooseBackends(os.Getenv, e.dockerHealthy)
		announce("%s", d.choice)
	})
	return d.choice
}

// dockerHealthy probes the engine once per binary.
func (e *env) dockerHealthy() error {
	d := &e.docker
	d.healthOnce.Do(func() { d.healthErr = dockerHealth(dockerHealthTimeout) })
	return d.healthErr
}

func (e *env) track(c testcontainers.Container) {
	e.docker.mu.Lock()
	defer e.docker.mu.Unlock()
	e.docker.running = append(e.docker.running, c)
}

// stopContainers removes every container the binary started.
func (e *env) stopContainers(ctx context.Context) error {
	e.docker.mu.Lock()
	defer e.docker.mu.Unlock()
	var errs []error
	for _, c := range e.docker.running {
		if err := c.Terminate(ctx); err != nil {
			errs = append(errs, fmt.Errorf("remove container %s: %w", c.GetContainerID(), err))
		}
	}
	e.docker.running = nil
	return errors.Join(errs...)
}

// containerPostgres starts a Postgres container on a healthy engine, for machines without the
// PostgreSQL binaries. ok is false, with no error, when Docker is opted out of or not healthy.
func (e *env) containerPostgres(ctx context.Context) (url, desc string, ok bool, err error) {
	if containersMode(os.Getenv) == containersOff {
		return "", "", false, nil
	}
	if err := e.dockerHealthy(); err != nil {
		announce("docker not healthy (%v): no postgres container either", err)
		return "", "", false, nil
	}
	url, err = e.startPostgresContainer(ctx)
	if err != nil {
		return "", "", false, err
	}
	return url, "container(" + postgresImage + ")", true, nil
}

// startPostgresContainer runs postgres:15 and returns the URL of its "postgres" database, as the
// superuser, so tests can create and drop databases.
func (e *env) startPostgresContainer(ctx context.Context) (string, error) {
	c, err := tcpostgres.Run(ctx, postgresImage,
		testcontainers.WithLogger(tclog.NewNoopLogger()),
		tcpostgres.WithDatabase("postgres"),
		tcpostgres.BasicWaitStrategies(),
	)
	if c != nil {
		e.track(c)
	}
	if err != nil {
		return "", fmt.Errorf("start %s container: %w", postgresImage, err)
	}
	url, err := c.ConnectionString(ctx, "sslmode=disable")
	if err != nil {
		return "", fmt.Errorf("%s container URL: %w", postgresImage, err)
	}
	return url, nil
}

// kafkaClientPort is the broker's listener for clients on the host, published on a random port.
const kafkaClientPort = "9092/tcp"

// kafkaContainerEnv configures the broker like scripts/kafka.sh (the image turns KAFKA_FOO_BAR into
// foo.bar): clients on PLAINTEXT (9092, published), replication on BROKER, KRaft on CONTROLLER.
func kafkaContainerEnv() map[string]string {
	return map[string]string{
		"CLUSTER_ID":                                     "dGVzdGVudi1jaG9yZW8tMQ",
		"KAFKA_NODE_ID":                                  "1",
		"KAFKA_PROCESS_ROLES":                            "broker,controller",
		"KAFKA_CONTROLLER_QUORUM_VOTERS":                 "1@localhost:9094",
		"KAFKA_LISTENERS":                                "PLAINTEXT://0.0.0.0:9092,BROKER://0.0.0.0:9093,CONTROLLER://0.0.0.0:9094",
		"KAFKA_LISTENER_SECURITY_PROTOCOL_MAP":           "PLAINTEXT:PLAINTEXT,BROKER:PLAINTEXT,CONTROLLER:PLAINTEXT",
		"KAFKA_CONTROLLER_LISTENER_NAMES":                "CONTROLLER",
		"KAFKA_INTER_BROKER_LISTENER_NAME":               "BROKER",
		"KAFKA_LOG_DIRS":                                 "/tmp/kraft-combined-logs", // writable by the image's user
		"KAFKA_AUTO_CREATE_TOPICS_ENABLE":                "false",
		"KAFKA_NUM_PARTITIONS":                           "1",
		"KAFKA_DEFAULT_REPLICATION_FACTOR":               "1",
		"KAFKA_MIN_INSYNC_REPLICAS":                      "1",
		"KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR":         "1",
		"KAFKA_OFFSETS_TOPIC_NUM_PARTITIONS":             "6",
		"KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
		"KAFKA_TRANSACTION_STATE_LOG_MIN_ISR":            "1",
		"KAFKA_TRANSACTION_STATE_LOG_NUM_PARTITIONS":     "6",
		"KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS":         "0",
		"KAFKA_DELETE_TOPIC_ENABLE":                      "true",
	}
}

// kafkaAdvertised is advertised.listeners for a broker that the host reaches at host:port.
func kafkaAdvertised(host, port string) string {
	return fmt.Sprintf("PLAINTEXT://%s:%s,BROKER://localhost:9093", host, port)
}

// kafkaAdvertisedFile is where the broker's entrypoint waits for its advertised listener: the
// host port Docker maps is known only once the container has started.
const kafkaAdvertisedFile = "/tmp/testenv-advertised-listeners"

// startKafkaContainer runs a single-node KRaft broker with the settings of scripts/kafka.sh and
// returns its bootstrap address as seen from the host.
func (e *env) startKafkaContainer(ctx context.Context) ([]string, error) {
	advertise := func(ctx context.Context, c testcontainers.Container) error {
		host, err := c.Host(ctx)
		if err != nil {
			return err
		}
		port, err := c.MappedPort(ctx, kafkaClientPort)
		if err != nil {
			return err
		}
		return c.CopyToContainer(ctx, []byte(kafkaAdvertised(host, port.Port())), kafkaAdvertisedFile, 0o644)
	}
	c, err := testcontainers.Run(ctx, kafkaImage,
		testcontainers.WithLogger(tclog.NewNoopLogger()),
		testcontainers.WithExposedPorts(kafkaClientPort),
		testcontainers.WithEnv(kafkaContainerEnv()),
		testcontainers.WithEntrypoint("/bin/bash", "-c",
			"while [ ! -s "+kafkaAdvertisedFile+" ]; do sleep 0.1; done; "+
				`export KAFKA_ADVERTISED_LISTENERS="$(cat `+kafkaAdvertisedFile+`)"; exec /etc/kafka/docker/run`),
		testcontainers.WithLifecycleHooks(testcontainers.ContainerLifecycleHooks{
			PostStarts: []testcontainers.ContainerHook{advertise},
		}),
		testcontainers.WithWaitStrategyAndDeadline(2*time.Minute, wait.ForLog("Kafka Server started")),
	)
	if c != nil {
		e.track(c)
	}
	if err != nil {
		return nil, fmt.Errorf("start %s container: %w", kafkaImage, err)
	}
	addr, err := c.PortEndpoint(ctx, kafkaClientPort, "")
	if err != nil {
		return nil, fmt.Errorf("%s container address: %w", kafkaImage, err)
	}
	return []string{addr}, nil
}
