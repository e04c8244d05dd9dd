package loadgen

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/internal/kafkaadmin"
)

// Hops is where a load's sagas spent their time, step by step, taken from the times their events carry.
// Every event carries when its handler made it (ce_time), and its Kafka record when its relay sent it (the
// producer's timestamp). So, for the events of the load's orders:
//   - a step, cause → effect, runs from the cause's send to the effect's ce_time: the broker, the reacting
//     service's fetch, its queue, batching and transaction, up to the handler that made the effect;
//   - a send runs from an event's ce_time to its Kafka timestamp: the rest of the step's transaction, its
//     commit, and the relay.
//
// ce_time and the Kafka timestamp come from the clocks of the services' hosts: on one machine they agree,
// across machines their skew adds in. Kafka timestamps have millisecond resolution.
type Hops struct {
	Orders int // orders of the load with events read
	Events int // their events read
	Steps  []HopStep
	Sends  []HopSend
}

// HopStep is one step of the saga: the service that made Effect in reaction to Cause.
type HopStep struct {
	Cause, Effect, Service string
	Delay                  Percentiles

	depth int           // the effects' median number of causes back to their saga's first event
	at    time.Duration // the effects' median time after their order's first event
}

// HopSend is one service's events, from when they were made to when its relay sent them.
type HopSend struct {
	Service string
	Delay   Percentiles
}

// sentEvent is an event read back from Kafka, with its record's timestamp.
type sentEvent struct {
	events.Envelope
	sent time.Time
}

// hopsOf breaks down the events of orders (by order id, the events' subject).
func hopsOf(evs []sentEvent, orders map[string]bool) Hops {
	byID := map[string]*sentEvent{}
	first := map[string]time.Time{}
	var mine []*sentEvent
	for i := range evs {
		e := &evs[i]
		if !orders[e.Subject] {
			continue
		}
		id := e.ID.String()
		if seen, ok := byID[id]; ok { // published again (the relay is at least once): the first send counts
			if e.sent.Before(seen.sent) {
				seen.sent = e.sent
			}
			continue
		}
		mine = append(mine, e)
		byID[id] = e
		if t, ok := first[e.Subject]; !ok || e.Time.Before(t) {
			first[e.Subject] = e.Time
		}
	}
	depths := map[*sentEvent]int{}
	var depthOf func(e *sentEvent) int // causes back to the first event read (bounded: ids are unique)
	depthOf = func(e *sentEvent) int {
		if d, ok := depths[e]; ok {
			return d
		}
		depths[e] = 0 // a cycle of ids cannot happen, but must not recurse forever
		d := 0
		if c, ok := byID[e.CausationID]; ok {
			d = depthOf(c) + 1
		}
		depths[e] = d
		return d
	}
	type stepKey struct{ cause, effect, service string }
	steps, at := map[stepKey][]time.Duration{}, map[stepKey][]time.Duration{}
	depth := map[stepKey][]int{}
	sends := map[string][]time.Duration{}
	for _, e := range mine {
		sends[e.Source] = append(sends[e.Source], max(e.sent.Sub(e.Time), 0))
		c, ok := byID[e.CausationID]
		if !ok {
			continue
		}
		k := stepKey{c.Type, e.Type, e.Source}
		steps[k] = append(steps[k], max(e.Time.Sub(c.sent), 0))
		at[k] = append(at[k], e.Time.Sub(first[e.Subject]))
		depth[k] = append(depth[k], depthOf(e))
	}
	h := Hops{Orders: len(first), Events: len(mine)}
	for k, ds := range steps {
		d := depth[k]
		slices.Sort(d)
		h.Steps = append(h.Steps, HopStep{Cause: k.cause, Effect: k.effect, Service: k.service, Delay: summarise(ds),
			depth: d[(len(d)-1)/2], at: summarise(at[k]).P50})
	}
	// In the saga's order: by how many steps from its first event, then by when.
	slices.SortFunc(h.Steps, func(a, b HopStep) int {
		return cmp.Or(cmp.Compare(a.depth, b.depth), cmp.Compare(a.at, b.at), cmp.Compare(a.Cause, b.Cause), cmp.Compare(a.Effect, b.Effect))
	})
	for s, ds := range sends {
		h.Sends = append(h.Sends, HopSend{Service: s, Delay: summarise(ds)})
	}
	slices.SortFunc(h.Sends, func(a, b HopSend) int { return cmp.Compare(a.Service, b.Service) })
	return h
}

// Print writes the steps and the sends as two tables.
func (h Hops) Print(w io.Writer) {
	fmt.Fprintf(w, "where the time went: %d events of %d orders, from the events' own times (ce_time; Kafka timestamp, 1 ms resolution)\n", h.Events, h.Orders)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "step: cause sent → effect made\tby\tn\tp50\tp90\tp99\tmax\t")
	for _, s := range h.Steps {
		fmt.Fprintf(tw, "%s → %s\t%s\t%d\t%s\t%s\t%s\t%s\t\n", s.Cause, s.Effect, s.Service, s.Delay.N, ms(s.Delay.P50), ms(s.Delay.P90), ms(s.Delay.P99), ms(s.Delay.Max))
	}
	tw.Flush()
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "send: made → sent to Kafka (commit, relay)\tn\tp50\tp90\tp99\tmax\t")
	for _, s := range h.Sends {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t\n", s.Service, s.Delay.N, ms(s.Delay.P50), ms(s.Delay.P90), ms(s.Delay.P99), ms(s.Delay.Max))
	}
	tw.Flush()
}

// topicOffsets are the end offsets of topics, by topic and partition.
type topicOffsets map[string]map[int]int64

// endOffsets finds where each of topics ends now.
func endOffsets(ctx context.Context, brokers, topics []string) (topicOffsets, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	ends := topicOffsets{}
	for _, t := range topics {
		e, err := kafkaadmin.EndOffsets(ctx, brokers, t)
		if err != nil {
			return nil, err
		}
		ends[t] = e
	}
	return ends, nil
}

// readSent reads every event of topics between from and to (end offsets taken before and after a load),
// with its record's timestamp, one reader per partition. Records that are not events are skipped. On an
// error it returns what it read with the first error.
func readSent(ctx context.Context, brokers []string, from, to topicOffsets) ([]sentEvent, error) {
	var (
		mu   sync.Mutex
		evs  []sentEvent
		errs []error
		wg   sync.WaitGroup
	)
	for topic, ends := range to {
		for p, end := range ends {
			start := from[topic][p]
			if end <= start {
				continue
			}
			wg.Go(func() {
				got, err := readRange(ctx, brokers, topic, p, start, end)
				mu.Lock()
				defer mu.Unlock()
				evs = append(evs, got...)
				if err != nil {
					errs = append(errs, err)
				}
			})
		}
	}
	wg.Wait()
	if len(errs) > 0 {
		return evs, errs[0] // what was read, and why not all
	}
	return evs, nil
}

// readRange reads offsets [start, end) of one partition.
func readRange(ctx context.Context, brokers []string, topic string, partition int, start, end int64) ([]sentEvent, error) {
	r, err := readFrom(brokers, topic, partition, start)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var evs []sentEvent
	for {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			return evs, fmt.Errorf("read %s/%d at %d of [%d, %d): %w", topic, partition, r.Offset(), start, end, err)
		}
		if e, err := events.FromMessage(m); err == nil {
			evs = append(evs, sentEvent{Envelope: e, sent: m.Time})
		}
		if m.Offset >= end-1 {
			return evs, nil
		}
	}
}
