# choreo: `make run` starts everything, `make test` runs the whole suite. See README.md.
GO        ?= go
BIN       ?= bin/choreo
PKGS      ?= ./...
TESTFLAGS ?= -count=1 -timeout 25m

.PHONY: all build run test test-deploy load test-kafka test-race bench lint fmt up down kafka-fetch clean chaos

all: lint test

build:
	$(GO) build -trimpath -o $(BIN) ./cmd/choreo

## run: the whole system on embedded Kafka and Postgres (data in ./.data); Ctrl-C stops it
run: build
	./$(BIN) run

## load: offer orders to a running `make run` (200/s for 30s over 20 products and a hot one); prints the
## report, writes load-chart.html. More: make load LOAD_FLAGS='-rate 500 -duration 1m' or LOAD_FLAGS=-find-max
LOAD_FLAGS ?=
load: build
	./$(BIN) load $(LOAD_FLAGS)

## test: vet, then every test on the embedded broker and a throwaway Postgres cluster, and the deployment checks
test: test-deploy
	$(GO) vet $(PKGS)
	$(GO) test $(TESTFLAGS) $(PKGS)

## test-deploy: Dockerfile, docker-compose.yml and deploy/ checked offline against a freshly built binary (deploy/, a module of its own)
test-deploy:
	cd deploy && $(GO) vet ./... && $(GO) test $(TESTFLAGS) ./...

## kafka-fetch: Apache Kafka 4.4 broker jars (KAFKA_VERSION=3.9.2 for 3.9) from Maven Central into ~/.cache/choreo (once, then reused)
kafka-fetch:
	scripts/kafka.sh fetch

## test-kafka: the same suite against a real single-node Kafka 4.4 KRaft broker started for the run
##             (KAFKA_VERSION=3.9.2 make test-kafka: the Kafka 3.9 compatibility run)
test-kafka: kafka-fetch
	scripts/with-kafka.sh $(GO) test $(TESTFLAGS) $(PKGS)

## chaos: the services as separate processes on a real Kafka 4.4 broker and Postgres; during a load of orders
##        SIGKILLs and restarts services, restarts the broker and Postgres, adds an instance (a rebalance);
##        then checks every saga is final, stock and money conserved, one notification each, nothing doubled
chaos: kafka-fetch
	$(GO) test -tags chaos -run Chaos -count=1 -v -timeout 20m ./internal/testing/chaos

test-race:
	$(GO) test -race $(TESTFLAGS) $(PKGS)

## bench: relay throughput and publish lag against a raw kafka-go producer (ratio printed)
bench:
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 30m ./outbox/

lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet $(PKGS)
	cd deploy && $(GO) vet ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

## up / down: the whole stack in Docker (ingress 127.0.0.1:8080, Kafka UI 127.0.0.1:8081)
up:
	docker compose up -d --build --wait

down:
	docker compose down --remove-orphans

clean:
	rm -rf bin .data

## bench-replay: rebuild the order read model from 100k events into durable Postgres, beside a raw kafka-go read of the same partitions (ratio printed)
.PHONY: bench-replay
bench-replay:
	$(GO) test -run '^$$' -bench BenchmarkReplay -benchtime 1x -timeout 30m ./sagas/orderview/

## bench-forwarder: choreo's relay against Watermill's forwarder and raw producers in one run (bench/forwarder, a module of its own; KAFKA_BROKERS for a real broker)
.PHONY: bench-forwarder
bench-forwarder:
	cd bench/forwarder && $(GO) test -run '^$$' -bench . -benchtime 1x -timeout 60m
