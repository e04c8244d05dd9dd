// Package testenv is the harness of choreo's integration tests: one Postgres
// server and one Kafka broker per test binary, started on first use, with a
// fresh database and fresh topic names for each test so tests run in
// parallel. DATABASE_URL and KAFKA_BROKERS point it at existing servers;
// with neither set and a healthy Docker engine it runs Postgres and Kafka in
// containers (CHOREO_TESTCONTAINERS=0 opts out, =1 forbids the fallback),
// and otherwise an embedded cluster and an in-process broker. It says on
// stderr which it chose and why.
//
// A test binary that uses it calls Main from TestMain:
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/choreo-dev/choreo/internal/devstack/kafkaembed"
	"github.com/choreo-dev/choreo/internal/devstack/pgembed"
)

// shared is what a test binary starts lazily and Main stops. It is package
// state on purpose: the test binary owns these servers, and testing.M
// offers no other place to keep them between tests.
var shared env

type env struct {
	mainRunning atomic.Bool

	pgOnce    sync.Once
	serverURL string
	cluster   *pgembed.Cluster
	pgErr     error

	kafkaOnce sync.Once
	brokers   []string
	broker    *kafkaembed.Broker
	kafkaErr  error

	docker dockerState // containers.go
}

// Main runs the tests, stops whatever they started and exits with their
// status (or 1 if a server would not stop).
func Main(m *testing.M) {
	shared.mainRunning.Store(true)
	code := m.Run()
	if err := shared.stop(); err != nil {
		fmt.Fprintf(os.Stderr, "testenv: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

func (e *env) stop() error {
	if e.broker != nil {
		e.broker.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := e.stopContainers(ctx)
	if e.cluster == nil {
		return err
	}
	if serr := e.cluster.Stop(ctx); serr != nil {
		return errors.Join(err, fmt.Errorf("stop embedded postgres: %w", serr))
	}
	return err
}
