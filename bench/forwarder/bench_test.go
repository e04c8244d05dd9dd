package forwarder_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/choreo-dev/choreo/internal/kafkaadmin"
)

// BenchmarkForwarders drains the same backlog to the same Kafka with each contender, cfg.rounds times in
// rotating order, and prints a table per round and a summary. Run it with -benchtime 1x (see README.md).
func BenchmarkForwarders(b *testing.B) {
	if err := cfg.validate(); err != nil {
		b.Fatal(err)
	}
	selected := selectContenders(cfg.only)
	bench := newBench(b, cfg)
	bench.warmUp(b, selected)
	for range b.N {
		var rounds [][]result
		for round := range cfg.rounds {
			order := append(slices.Clone(selected[round%len(selected):]), selected[:round%len(selected)]...)
			var results []result
			for _, c := range order {
				results = append(results, bench.measure(b, c))
			}
			rounds = append(rounds, results)
			printRound(os.Stdout, round, cfg.rounds, selected, results)
		}
		s := summarize(selected, rounds)
		printSummary(os.Stdout, bench, s)
		for _, c := range s {
			b.ReportMetric(c.rate.median, c.id+"_events/s")
		}
		for _, wm := range []string{"watermill", "watermill-queue"} {
			if ratio, ok := ratioOf(s, "choreo", wm); ok {
				b.ReportMetric(ratio, "choreo/"+wm)
			}
		}
	}
}

// TestEveryContenderDeliversEverything runs each contender once on a small backlog (three load
// transactions, the last one partial) and checks that Kafka got every message, once, in key order.
func TestEveryContenderDeliversEverything(t *testing.T) {
	small := *cfg
	small.events, small.keys, small.batch, small.wmBatch = 2_500, 100, 1000, 1000
	bench := newBench(t, &small)
	for _, c := range contenders() {
		t.Run(c.id, func(t *testing.T) {
			r := bench.measure(t, c)
			if !r.delivered.ok(small.events) {
				t.Errorf("%s delivered %v, want %d records, each once, in key order", c.name, r.delivered, small.events)
			}
		})
	}
}

// bench is the shared ground of a run: one durable Postgres cluster and one Kafka.
type bench struct {
	cfg       *config
	pg        *server
	brokers   []string
	kafkaDesc string
}

func newBench(tb testing.TB, c *config) *bench {
	pg := durablePostgres(tb)
	brokers, desc := kafkaBrokers(tb)
	return &bench{cfg: c, pg: pg, brokers: brokers, kafkaDesc: desc}
}

// warmUp runs every contender once and throws the result away, so that no contender's first round pays
// for a cold broker (a real Kafka's JIT), a cold Postgres or a cold Go runtime more than the others.
func (bn *bench) warmUp(tb testing.TB, selected []contender) {
	for _, c := range selected {
		bn.measure(tb, c)
	}
}

type result struct {
	id, name  string
	drain     time.Duration
	load      time.Duration // zero for contenders without an outbox
	delivered delivery
	n         int
}

func (r result) rate() float64 { return float64(r.n) / r.drain.Seconds() }

// measure runs c once on a topic and, when it uses one, a database of its own.
func (bn *bench) measure(tb testing.TB, c contender) result {
	tb.Helper()
	ctx := context.Background()
	topic := uniqueName("fwd_" + c.id)
	if err := kafkaadmin.EnsureTopics(ctx, bn.brokers, kafkaadmin.Topic{Name: topic, Partitions: bn.cfg.partitions}); err != nil {
		tb.Fatalf("%s: create topic: %v", c.name, err)
	}
	if err := waitWritable(ctx, bn.brokers, topic, bn.cfg.partitions); err != nil {
		tb.Fatalf("%s: %v", c.name, err)
	}
	env := runEnv{cfg: bn.cfg, brokers: bn.brokers, topic: topic, log: logger(tb)}
	if c.usesDB {
		pool, drop, err := bn.pg.database(ctx, uniqueName("fwd_"+strings.ReplaceAll(c.id, "-", "_")))
		if err != nil {
			tb.Fatalf("%s: %v", c.name, err)
		}
		defer func() {
			if err := drop(); err != nil {
				tb.Errorf("%s: %v", c.name, err)
			}
		}()
		env.pool = pool
	}
	r, err := c.new(env)
	if err != nil {
		tb.Fatalf("%s: set up: %v", c.name, err)
	}
	closed := false
	defer func() {
		if !closed {
			_ = r.close()
		}
	}()

	msgs := workload(topic, bn.cfg.events, bn.cfg.payload, bn.cfg.keys)
	res := result{id: c.id, name: c.name, n: len(msgs)}
	start := time.Now()
	if err := r.load(ctx, msgs); err != nil {
		tb.Fatalf("%s: load: %v", c.name, err)
	}
	if c.usesDB {
		res.load = time.Since(start)
		if err := settle(ctx, env.pool); err != nil {
			tb.Fatalf("%s: %v", c.name, err)
		}
	}

	drainCtx, cancel := context.WithTimeout(ctx, bn.cfg.timeout)
	defer cancel()
	start = time.Now()
	if err := r.drain(drainCtx, len(msgs)); err != nil {
		tb.Fatalf("%s: drain: %v", c.name, err)
	}
	res.drain = time.Since(start)

	closed = true
	if err := r.close(); err != nil {
		tb.Errorf("%s: close: %v", c.name, err)
	}
	readCtx, cancelRead := context.WithTimeout(ctx, 5*time.Minute)
	defer cancelRead()
	if res.delivered, err = readBack(readCtx, bn.brokers, topic, len(msgs), bn.cfg.keys); err != nil {
		tb.Fatalf("%s: read back %s: %v", c.name, topic, err)
	}
	return res
}

func selectContenders(only []string) []contender {
	var out []contender
	for _, c := range contenders() {
		if len(only) == 0 || slices.Contains(only, c.id) {
			out = append(out, c)
		}
	}
	return out
}

// stat is the median and the range of one quantity over the rounds.
type stat struct{ median, min, max float64 }

func statOf(xs []float64) stat {
	s := slices.Clone(xs)
	slices.Sort(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return stat{median: m, min: s[0], max: s[len(s)-1]}
}

// spread is the range as a share of the median.
func (s stat) spread() float64 { return (s.max - s.min) / s.median }

type contenderSummary struct {
	id, name    string
	rate, drain stat
	vsRaw       stat // rate over the raw writer's rate of the same round
	rates       []float64
	allOK       bool
}

func summarize(selected []contender, rounds [][]result) []contenderSummary {
	var out []contenderSummary
	for _, c := range selected {
		var rates, drains, vsRaw []float64
		ok := true
		for _, results := range rounds {
			r := find(results, c.id)
			rates = append(rates, r.rate())
			drains = append(drains, r.drain.Seconds())
			if raw, found := findOK(results, "raw"); found {
				vsRaw = append(vsRaw, r.rate()/raw.rate())
			}
			ok = ok && r.delivered.ok(r.n)
		}
		s := contenderSummary{id: c.id, name: c.name, rate: statOf(rates), drain: statOf(drains), rates: rates, allOK: ok}
		if len(vsRaw) > 0 {
			s.vsRaw = statOf(vsRaw)
		}
		out = append(out, s)
	}
	return out
}

func find(results []result, id string) result {
	r, _ := findOK(results, id)
	return r
}

func findOK(results []result, id string) (result, bool) {
	for _, r := range results {
		if r.id == id {
			return r, true
		}
	}
	return result{}, false
}

// ratioOf is the median over rounds of a's rate over b's.
func ratioOf(s []contenderSummary, a, b string) (float64, bool) {
	var ra, rb []float64
	for _, c := range s {
		switch c.id {
		case a:
			ra = c.rates
		case b:
			rb = c.rates
		}
	}
	if ra == nil || rb == nil {
		return 0, false
	}
	ratios := make([]float64, len(ra))
	for i := range ra {
		ratios[i] = ra[i] / rb[i]
	}
	return statOf(ratios).median, true
}

const rowFormat = "  %-40s %10s %9s %9s %10s   %s\n"

func printRound(w io.Writer, round, rounds int, selected []contender, results []result) {
	order := make([]string, len(results))
	for i, r := range results {
		order[i] = r.id
	}
	fmt.Fprintf(w, "\nround %d of %d (ran in this order: %s)\n", round+1, rounds, strings.Join(order, ", "))
	fmt.Fprintf(w, rowFormat, "contender", "events/s", "vs raw", "drain", "load*", "read back from Kafka")
	raw, haveRaw := findOK(results, "raw")
	for _, c := range selected {
		r := find(results, c.id)
		vs, load, verdict := "-", "-", "OK "+fmt.Sprint(r.delivered.unique)+"/"+fmt.Sprint(r.n)
		if haveRaw {
			vs = fmt.Sprintf("%.2f", r.rate()/raw.rate())
		}
		if r.load > 0 {
			load = fmt.Sprintf("%.2fs", r.load.Seconds())
		}
		if !r.delivered.ok(r.n) {
			verdict = "FAILED: " + r.delivered.String()
		}
		fmt.Fprintf(w, rowFormat, c.name, fmt.Sprintf("%.0f", r.rate()), vs, fmt.Sprintf("%.3fs", r.drain.Seconds()), load, verdict)
	}
}

func printSummary(w io.Writer, bn *bench, s []contenderSummary) {
	c := bn.cfg
	fmt.Fprintf(w, "\nforwarder benchmark: %d events of %d bytes, %d keys, %d partitions, %d rounds\n", c.events, c.payload, c.keys, c.partitions, c.rounds)
	fmt.Fprintf(w, "  Kafka: %s; Postgres %s, durable (fsync on), a fresh database per contender and round\n", bn.kafkaDesc, bn.pg.version)
	fmt.Fprintf(w, "  load transactions, relay batch and raw writer batch: %d; watermill SubscribeBatchSize %d, PollInterval %v; GOMAXPROCS %d\n",
		c.batch, c.wmBatch, c.wmPoll, runtime.GOMAXPROCS(0))
	fmt.Fprintf(w, "  * load = untimed: appending the backlog to the outbox in transactions of %d\n\n", c.batch)
	fmt.Fprintf(w, "  %-40s %10s %23s %7s %9s %9s   %s\n", "contender", "events/s", "min - max", "spread", "vs raw", "drain", "all rounds delivered")
	for _, cs := range s {
		vs := "-"
		if cs.vsRaw.median > 0 {
			vs = fmt.Sprintf("%.2f", cs.vsRaw.median)
		}
		ok := "yes"
		if !cs.allOK {
			ok = "NO"
		}
		fmt.Fprintf(w, "  %-40s %10.0f %23s %6.0f%% %9s %8.3fs   %s\n", cs.name, cs.rate.median,
			fmt.Sprintf("%.0f - %.0f", cs.rate.min, cs.rate.max), 100*cs.rate.spread(), vs, cs.drain.median, ok)
	}
	fmt.Fprintf(w, "  (medians over the rounds; vs raw compares with the raw kafka-go writer of the same round)\n")
	for _, wm := range []string{"watermill", "watermill-queue"} {
		if ratio, ok := ratioOf(s, "choreo", wm); ok {
			fmt.Fprintf(w, "  choreo relay / %s: %.1fx\n", wm, ratio)
		}
	}
	fmt.Fprintln(w)
}
