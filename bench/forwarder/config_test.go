package forwarder_test

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// config is the workload and the knobs of the run. Each field has a flag, whose default comes from an
// environment variable so that `FORWARDER_EVENTS=50000 make bench-forwarder` works as well as
// `go test -bench . -events 50000`.
type config struct {
	events     int           // messages per contender per round
	payload    int           // value size in bytes
	keys       int           // distinct Kafka keys
	partitions int           // partitions of every topic
	batch      int           // rows per load transaction, relay batch, raw writer batch
	rounds     int           // measurements per contender
	only       []string      // contenders to run (all when empty)
	wmBatch    int           // Watermill SQL subscriber's SubscribeBatchSize
	wmPoll     time.Duration // Watermill SQL subscriber's PollInterval
	timeout    time.Duration // longest a drain may take
}

var cfg = func() *config {
	c := &config{}
	flag.IntVar(&c.events, "events", envInt("FORWARDER_EVENTS", 20_000), "messages per contender per round (FORWARDER_EVENTS)")
	flag.IntVar(&c.payload, "payload", envInt("FORWARDER_PAYLOAD", 500), "message value size in bytes (FORWARDER_PAYLOAD)")
	flag.IntVar(&c.keys, "keys", envInt("FORWARDER_KEYS", 1000), "distinct Kafka keys (FORWARDER_KEYS)")
	flag.IntVar(&c.partitions, "partitions", envInt("FORWARDER_PARTITIONS", 6), "partitions of every topic (FORWARDER_PARTITIONS)")
	flag.IntVar(&c.batch, "batch", envInt("FORWARDER_BATCH", 1000), "rows per load transaction, relay batch and raw writer batch (FORWARDER_BATCH)")
	flag.IntVar(&c.rounds, "rounds", envInt("FORWARDER_ROUNDS", 3), "measurements of each contender; the order rotates each round (FORWARDER_ROUNDS)")
	flag.Func("only", "comma-separated contenders to run: "+strings.Join(contenderIDs(), ",")+" (FORWARDER_ONLY; default all)", func(s string) error {
		c.only = splitList(s)
		return nil
	})
	c.only = splitList(os.Getenv("FORWARDER_ONLY"))
	flag.IntVar(&c.wmBatch, "wm-batch", envInt("FORWARDER_WATERMILL_BATCH", 1000), "Watermill SQL subscriber SubscribeBatchSize (FORWARDER_WATERMILL_BATCH)")
	flag.DurationVar(&c.wmPoll, "wm-poll", envDuration("FORWARDER_WATERMILL_POLL", 10*time.Millisecond), "Watermill SQL subscriber PollInterval (FORWARDER_WATERMILL_POLL)")
	flag.DurationVar(&c.timeout, "drain-timeout", envDuration("FORWARDER_DRAIN_TIMEOUT", 10*time.Minute), "longest one drain may take (FORWARDER_DRAIN_TIMEOUT)")
	return c
}()

func (c *config) validate() error {
	var errs []error
	for _, v := range []struct {
		name string
		n    int
	}{{"events", c.events}, {"payload", c.payload}, {"keys", c.keys}, {"partitions", c.partitions}, {"batch", c.batch}, {"rounds", c.rounds}, {"wm-batch", c.wmBatch}} {
		if v.n <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive, got %d", v.name, v.n))
		}
	}
	if c.payload < 32 {
		errs = append(errs, fmt.Errorf("payload must be at least 32 bytes, got %d", c.payload))
	}
	if c.wmPoll <= 0 || c.timeout <= 0 {
		errs = append(errs, errors.New("wm-poll and drain-timeout must be positive"))
	}
	for _, id := range c.only {
		if !slices.Contains(contenderIDs(), id) {
			errs = append(errs, fmt.Errorf("unknown contender %q (known: %s)", id, strings.Join(contenderIDs(), ",")))
		}
	}
	return errors.Join(errs...)
}

func envInt(name string, def int) int {
	if s := os.Getenv(name); s != "" {
		if n, err := strconv.Atoi(s); err == nil {
			return n
		}
		fmt.Fprintf(os.Stderr, "forwarder bench: ignoring %s=%q: not an integer\n", name, s)
	}
	return def
}

func envDuration(name string, def time.Duration) time.Duration {
	if s := os.Getenv(name); s != "" {
		if d, err := time.ParseDuration(s); err == nil {
			return d
		}
		fmt.Fprintf(os.Stderr, "forwarder bench: ignoring %s=%q: not a duration\n", name, s)
	}
	return def
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
