package loadgen

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"time"
)

// boundHit is the failure of an order that was due while Concurrency POSTs were in flight.
const boundHit = "concurrency bound"

// session is the generator against one system: the products seeded, the final events followed.
type session struct {
	cfg     Config
	client  *client
	tracker *tracker
	planner *planner
	source  string // where final events come from, for the report
	hops    bool   // break each phase down by step (Config.Hops, and Kafka is reachable)
	runID   string // makes the Idempotency-Keys of this session unique
	n       int    // orders offered so far in this session

	sem   chan struct{}  // one per POST in flight
	posts sync.WaitGroup // POSTs in flight
	stop  func()         // stops following the final events and waits for it
}

// loadCustomers is how many customers a session registers and orders for, in turn.
const loadCustomers = 10

// registerCustomers registers the session's customers, new ones for each session (the customer service
// rejects orders by ids it does not know).
func (s *session) registerCustomers(ctx context.Context) error {
	pw := make([]byte, 12)
	if _, err := rand.Read(pw); err != nil {
		return fmt.Errorf("customer password: %w", err)
	}
	id := strings.NewReplacer(".", "-", ":", "-").Replace(strings.ToLower(s.runID))
	for i := range loadCustomers {
		c, err := s.client.register(ctx, fmt.Sprintf("load-%s-%x-%02d@load.invalid", id, pw[:4], i), hex.EncodeToString(pw))
		if err != nil {
			return err
		}
		s.planner.customers = append(s.planner.customers, c)
	}
	return nil
}

// open seeds the catalog and starts following final events: from Kafka, or by polling the read model
// when Kafka cannot be reached.
func open(ctx context.Context, cfg Config) (*session, error) {
	s := &session{
		cfg:     cfg,
		client:  newClient(cfg.URL, cfg.Token, cfg.OperatorToken, cfg.Concurrency, cfg.RequestTimeout),
		tracker: newTracker(),
		planner: newPlanner(cfg.Mix, cfg.Catalog, cfg.Seed),
		runID:   time.Now().UTC().Format("20060102T150405.000000"),
		sem:     make(chan struct{}, cfg.Concurrency),
	}
	if err := s.client.seed(ctx, cfg.Catalog.seeds()); err != nil {
		s.client.close()
		return nil, err
	}
	if err := s.registerCustomers(ctx); err != nil {
		s.client.close()
		return nil, err
	}
	fctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	deliver := func(f final) { s.tracker.finished(f, time.Now()) }
	kf, err := openKafkaFinals(ctx, cfg.Brokers, cfg.Topic)
	if err == nil {
		s.source = fmt.Sprintf("Kafka topic %s at %s (no consumer group)", cfg.Topic, strings.Join(cfg.Brokers, ","))
		s.hops = cfg.Hops
		go func() {
			defer close(done)
			if err := kf.run(fctx, deliver); err != nil {
				s.note("reading final events from Kafka stopped: %v", err)
			}
		}()
	} else {
		s.source = "polling GET /v1/orders/{id} (Kafka unreachable: " + err.Error() + ")"
		s.note("Kafka at %s unreachable (%v): polling the read model for final events instead", strings.Join(cfg.Brokers, ","), err)
		go func() {
			defer close(done)
			_ = pollFinals(fctx, s.client, s.tracker.pendingIDs, deliver, cfg.PollInterval)
		}()
	}
	s.stop = func() { cancel(); <-done }
	return s, nil
}

// close waits for the POSTs still in flight (each ends within RequestTimeout) and stops following.
func (s *session) close() {
	s.posts.Wait()
	s.stop()
	s.client.close()
}

func (s *session) note(format string, args ...any) {
	if s.cfg.Progress.W != nil {
		fmt.Fprintf(s.cfg.Progress.W, format+"\n", args...)
	}
}

// phase offers rate orders/s (count of them, or for d), then waits up to the drain for the orders in
// flight, and reports. When ctx ends, offering stops and the drain is shortened to at most 5s.
func (s *session) phase(ctx context.Context, label string, rate float64, count int, d time.Duration, hops bool) Report {
	s.tracker.reset()
	var from topicOffsets
	if hops && s.hops {
		var err error
		if from, err = endOffsets(ctx, s.cfg.Brokers, s.cfg.Topics); err != nil {
			s.note("no step breakdown: the saga's topics: %v", err)
		}
	}
	sched := scheduleFor(rate, count, d)
	cpu0, cpuKnown := readCPUTimes()
	start := time.Now()

	stopProgress := s.progress(label, start)
	// POSTs outlive an interruption: orders offered are followed to the end of the drain.
	postCtx := context.WithoutCancel(ctx)
	sent, late := pace(ctx, wallClock{}, start, sched, s.cfg.LateTolerance, func(int, time.Duration) {
		s.send(postCtx)
	})
	// Offering n orders takes n intervals: the last one is sent one interval before the next would be.
	offering := max(time.Since(start), sched.due(sent))
	hostCPU, hostCPUs := -1.0, 0
	if cpu1, ok := readCPUTimes(); ok && cpuKnown {
		hostCPU, hostCPUs = busyShare(cpu0, cpu1), cpu1.cpus
	}

	drain := s.cfg.Drain
	if ctx.Err() != nil {
		drain = min(drain, 5*time.Second)
	}
	deadline := time.Now().Add(drain)
	for !s.tracker.settled() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	stopProgress()

	recs := s.tracker.snapshot()
	r := buildReport(recs, s.cfg.Mix, start, offering)
	r.Rate, r.Late, r.MaxLate, r.Source, r.HostCPU, r.HostCPUs = rate, late.count, late.max, s.source, hostCPU, hostCPUs
	r.Interrupted = sent < sched.count
	if from != nil {
		r.Hops = s.hopsSince(ctx, from, recs)
	}
	return r
}

// hopsSince reads back the events of the phase's orders, published after from, and breaks them down by
// step; nil (with a note) if they cannot be read, or the run was interrupted. A read that stops short
// (a minute at most) gives the breakdown of what it read, with a note.
func (s *session) hopsSince(ctx context.Context, from topicOffsets, recs []record) *Hops {
	if ctx.Err() != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	s.note("reading the load's events back for the step breakdown...")
	to, err := endOffsets(ctx, s.cfg.Brokers, s.cfg.Topics)
	if err != nil {
		s.note("no step breakdown: the saga's topics: %v", err)
		return nil
	}
	evs, err := readSent(ctx, s.cfg.Brokers, from, to)
	if err != nil {
		s.note("the step breakdown covers only the %d events read: %v", len(evs), err)
	}
	orders := map[string]bool{}
	for _, r := range recs {
		if r.accepted {
			orders[r.id] = true
		}
	}
	h := hopsOf(evs, orders)
	return &h
}

// send offers the next order: a POST in flight of its own, or a counted error when the bound is hit.
func (s *session) send(ctx context.Context) {
	s.n++
	p := s.planner.next()
	rec := &record{want: p.want, offered: time.Now()}
	s.tracker.offer(rec)
	select {
	case s.sem <- struct{}{}:
	default:
		s.tracker.answered(rec, "", boundHit)
		return
	}
	key := fmt.Sprintf("load-%s-%d", s.runID, s.n)
	s.posts.Go(func() {
		defer func() { <-s.sem }()
		id, failure := s.client.place(ctx, key, p.body)
		s.tracker.answered(rec, id, failure)
	})
}

// progress prints the live progress line every Progress.Every until the returned function is called.
func (s *session) progress(label string, start time.Time) func() {
	p := s.cfg.Progress
	if p.W == nil {
		return func() {}
	}
	show := func() {
		line := label + progressLine(time.Since(start), s.tracker.snapshot())
		if p.Rewrite {
			fmt.Fprintf(p.W, "\r%s\x1b[K", line)
		} else {
			fmt.Fprintln(p.W, line)
		}
	}
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(p.Every)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				show()
			case <-done:
				show()
				if p.Rewrite {
					fmt.Fprintln(p.W)
				}
				return
			}
		}
	}()
	return func() { close(done); <-stopped }
}

// progressLine is the state of a phase so far: offered, accepted, finished, in flight, errors, p50/p99.
func progressLine(elapsed time.Duration, recs []record) string {
	var accepted, finished, errs int
	var lat []time.Duration
	for _, r := range recs {
		if r.accepted {
			accepted++
		}
		if r.failure != "" {
			errs++
		}
		if r.finished {
			finished++
			lat = append(lat, r.latency())
			if r.got != r.want {
				errs++
			}
		}
	}
	p := summarise(lat)
	return fmt.Sprintf("%6.1fs  offered %d  accepted %d  finished %d  in flight %d  errors %d  p50 %s  p99 %s",
		elapsed.Seconds(), len(recs), accepted, finished, accepted-finished, errs, ms(p.P50), ms(p.P99))
}

// ms formats a latency in milliseconds, or seconds from 1s.
func ms(d time.Duration) string {
	if d >= time.Second {
		return fmt.Sprintf("%.2fs", d.Seconds())
	}
	return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
}

// Run seeds the catalog and offers one load as cfg says, then reports it. When ctx ends, offering stops,
// the orders in flight get a short drain, and the report covers what was offered.
func Run(ctx context.Context, cfg Config) (Report, error) {
	cfg.defaults()
	if err := cfg.validate(false); err != nil {
		return Report{}, err
	}
	s, err := open(ctx, cfg)
	if err != nil {
		return Report{}, err
	}
	defer s.close()
	return s.phase(ctx, "", cfg.Rate, cfg.Count, cfg.Duration, true), nil
}
