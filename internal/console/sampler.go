package console

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/internal/kafkaadmin"
	"github.com/choreo-dev/choreo/sagas"
)

// Bounds of one sample, so a backlog (say 100k events after a restart) is caught up over several samples
// instead of one long scan.
const (
	samplePerPartition = 2000    // messages read per partition per sample
	sampleBytes        = 1 << 20 // bytes per fetch
	rateWindow         = 10 * time.Second
	sizeEvery          = 5 // samples between two DescribeLogDirs
)

// Snapshot is what the console knows about the cluster, as of At.
type Snapshot struct {
	At        time.Time    `json:"at"`
	Namespace string       `json:"namespace"`
	Topics    []TopicStat  `json:"topics"`
	Groups    []GroupStat  `json:"groups"`
	Flow      Flow         `json:"flow"`
	Sagas     SagaStats    `json:"sagas"`
	SizeNote  string       `json:"size_note,omitempty"` // why sizes are n/a
	Error     string       `json:"error,omitempty"`     // the last sample failed
	Services  []ServiceRef `json:"services"`
}

// ServiceRef names a service and its consumer group.
type ServiceRef struct {
	Name  string `json:"name"`
	Group string `json:"group"`
}

// TopicStat is a topic with its offsets, rate and size.
type TopicStat struct {
	Name       string          `json:"name"`
	Partitions []PartitionStat `json:"partitions"`
	Messages   int64           `json:"messages"`
	Rate       float64         `json:"rate"` // messages per second over the last rateWindow
	Size       int64           `json:"size"` // bytes; -1: not available
}

// PartitionStat is one partition's offsets and size.
type PartitionStat struct {
	kafkaadmin.PartitionInfo
	Size int64 `json:"size"` // bytes; -1: not available
}

// GroupStat is a consumer group with its lag.
type GroupStat struct {
	kafkaadmin.GroupInfo
	Lag int64 `json:"lag"`
}

// SagaStats are the outcomes of the sagas that ended within the window, from order.events.
type SagaStats struct {
	WindowSeconds int            `json:"window_seconds"`
	Confirmed     int            `json:"confirmed"`
	Cancelled     map[string]int `json:"cancelled"`  // by reason
	InFlight      int            `json:"in_flight"`  // placed within the window, not ended yet
	Latency       Percentiles    `json:"latency_ms"` // from order.placed to the final event
}

// Percentiles of a duration in milliseconds; zero without samples.
type Percentiles struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	Max   float64 `json:"max"`
}

// endSample is a topic's total end offset at a time, for rates.
type endSample struct {
	at  time.Time
	sum int64
}

// outcome is one saga that ended.
type outcome struct {
	at      time.Time
	reason  string // "" for confirmed
	latency time.Duration
	known   bool // its order.placed was seen, so latency is set
}

// sampler keeps the cluster's state and the recent events' statistics, sampled every Interval.
type sampler struct {
	cfg Config
	in  *kafkaadmin.Inspector

	mu      sync.Mutex
	snap    Snapshot
	ends    map[string][]endSample   // topic -> samples within rateWindow
	cursors map[string]map[int]int64 // events topic -> partition -> next offset to read
	types   map[string]map[int64]int // event type -> unix second -> count
	placed  map[string]time.Time     // order id -> order.placed time, for sagas not ended yet
	ended   []outcome                // within Window
	sizes   map[string]map[int]int64 // from the last DescribeLogDirs
	sizeErr string                   // why sizes are missing
	round   int
}

func newSampler(cfg Config, in *kafkaadmin.Inspector) *sampler {
	return &sampler{cfg: cfg, in: in, ends: map[string][]endSample{}, types: map[string]map[int64]int{},
		placed: map[string]time.Time{}, snap: Snapshot{Namespace: cfg.Namespace, Sagas: SagaStats{Cancelled: map[string]int{}}}}
}

func (s *sampler) run(ctx context.Context) error {
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	for {
		s.sample(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (s *sampler) snapshot() Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.snap
}

func (s *sampler) ownTopic(name string) bool { return strings.HasPrefix(name, s.cfg.Namespace) }

// ownGroup keeps the namespace's groups; without a namespace every group but the redrive's own.
func (s *sampler) ownGroup(id string) bool { return strings.HasPrefix(id, s.cfg.Namespace) }

// sample takes one sample; a failure is kept in the snapshot and the previous figures stay.
func (s *sampler) sample(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 4*s.cfg.Interval+5*time.Second)
	defer cancel()
	now := time.Now()
	topics, err := s.in.Topics(ctx, s.ownTopic)
	if err != nil {
		s.fail(err)
		return
	}
	groups, err := s.in.Groups(ctx, s.ownGroup, topics)
	if err != nil {
		s.fail(err)
		return
	}
	if s.round%sizeEvery == 0 {
		sizes, err := s.in.LogDirSizes(ctx, topics)
		s.mu.Lock()
		s.sizes, s.sizeErr = sizes, ""
		if err != nil {
			s.sizes, s.sizeErr = nil, "sizes n/a: "+err.Error()
		}
		s.mu.Unlock()
	}
	s.round++
	s.readEvents(ctx, topics, now)

	s.mu.Lock()
	defer s.mu.Unlock()
	snap := Snapshot{At: now, Namespace: s.cfg.Namespace, SizeNote: s.sizeErr}
	for _, t := range topics {
		snap.Topics = append(snap.Topics, s.topicStat(t, now))
	}
	for _, g := range groups {
		snap.Groups = append(snap.Groups, GroupStat{GroupInfo: g, Lag: g.TotalLag()})
	}
	for _, svc := range s.cfg.Services {
		snap.Services = append(snap.Services, ServiceRef{Name: svc.Name, Group: s.cfg.Namespace + svc.Name})
	}
	snap.Flow = s.flow(snap.Groups, now)
	snap.Sagas = s.sagaStats(now)
	s.snap = snap
}

func (s *sampler) fail(err error) {
	s.cfg.Log.Warn().Err(err).Msg("console: sample the cluster")
	s.mu.Lock()
	defer s.mu.Unlock()
	s.snap.Error = err.Error()
}

// topicStat computes a topic's figures and records its end for the rate; s.mu is held.
func (s *sampler) topicStat(t kafkaadmin.TopicInfo, now time.Time) TopicStat {
	ts := TopicStat{Name: t.Name, Size: -1}
	var sum int64
	sizes, haveSizes := s.sizes[t.Name]
	if haveSizes {
		ts.Size = 0
	}
	for _, p := range t.Partitions {
		ps := PartitionStat{PartitionInfo: p, Size: -1}
		if haveSizes {
			ps.Size = sizes[p.ID]
			ts.Size += ps.Size
		}
		ts.Partitions = append(ts.Partitions, ps)
		ts.Messages += p.Messages()
		sum += p.End
	}
	samples := append(s.ends[t.Name], endSample{at: now, sum: sum})
	for len(samples) > 1 && now.Sub(samples[0].at) > rateWindow {
		samples = samples[1:]
	}
	s.ends[t.Name] = samples
	if first := samples[0]; len(samples) > 1 && now.After(first.at) {
		ts.Rate = float64(sum-first.sum) / now.Sub(first.at).Seconds()
	}
	return ts
}

// readEvents reads what the events topics gained since the last sample (at most samplePerPartition per
// partition), counting event types by second and following each saga from order.placed to its end. The
// first sample starts Window back in time.
func (s *sampler) readEvents(ctx context.Context, topics []kafkaadmin.TopicInfo, now time.Time) {
	eventTopics := map[string]bool{}
	for _, t := range sagas.Topics() {
		eventTopics[s.cfg.Namespace+t] = true
	}
	if s.cursors == nil {
		s.cursors = map[string]map[int]int64{}
	}
	for _, t := range topics {
		if !eventTopics[t.Name] {
			continue
		}
		cur, ok := s.cursors[t.Name]
		if !ok {
			cur = s.startCursors(ctx, t, now.Add(-s.cfg.Window))
			s.cursors[t.Name] = cur
		}
		for _, p := range t.Partitions {
			from, ok := cur[p.ID]
			if !ok || from < p.Start {
				from = p.Start
			}
			if from >= p.End {
				continue
			}
			msgs, _, err := s.in.Read(ctx, t.Name, p.ID, from, samplePerPartition, sampleBytes)
			if err != nil {
				s.cfg.Log.Warn().Err(err).Str("topic", t.Name).Int("partition", p.ID).Msg("console: read new events")
			}
			s.mu.Lock()
			for _, m := range msgs {
				at := m.Time
				if t, err := time.Parse(time.RFC3339Nano, header(m.Headers, events.HeaderTime)); err == nil {
					at = t // the event's own time: when the order was accepted, when the saga ended
				}
				s.count(header(m.Headers, events.HeaderType), header(m.Headers, events.HeaderSubject), at, m.Value)
				from = m.Offset + 1
			}
			s.mu.Unlock()
			cur[p.ID] = from
		}
	}
	s.mu.Lock()
	s.prune(now)
	s.mu.Unlock()
}

func (s *sampler) startCursors(ctx context.Context, t kafkaadmin.TopicInfo, since time.Time) map[int]int64 {
	cur := map[int]int64{}
	ids := make([]int, len(t.Partitions))
	for i, p := range t.Partitions {
		ids[i] = p.ID
		cur[p.ID] = p.End
	}
	offs, err := s.in.OffsetsAt(ctx, t.Name, ids, since)
	if err != nil {
		s.cfg.Log.Warn().Err(err).Str("topic", t.Name).Msg("console: offsets by time; starting at the end")
		return cur
	}
	for p, o := range offs {
		if o >= 0 {
			cur[p] = o
		}
	}
	return cur
}

// count records one event; s.mu is held.
func (s *sampler) count(typ, subject string, at time.Time, value []byte) {
	if typ == "" {
		return
	}
	sec := at.Unix()
	if s.types[typ] == nil {
		s.types[typ] = map[int64]int{}
	}
	s.types[typ][sec]++
	switch typ {
	case "order.placed":
		s.placed[subject] = at
	case "order.confirmed", "order.cancelled":
		o := outcome{at: at}
		if typ == "order.cancelled" {
			var p events.OrderCancelled
			_ = json.Unmarshal(value, &p)
			o.reason = p.Reason
			if o.reason == "" {
				o.reason = "unknown"
			}
		}
		if placed, ok := s.placed[subject]; ok {
			o.latency, o.known = at.Sub(placed), true
			delete(s.placed, subject)
		}
		s.ended = append(s.ended, o)
	}
}

// prune forgets what fell out of the windows; s.mu is held.
func (s *sampler) prune(now time.Time) {
	horizon := now.Add(-s.cfg.Window)
	for typ, secs := range s.types {
		for sec := range secs {
			if now.Unix()-sec > int64(rateWindow.Seconds())*3 {
				delete(secs, sec)
			}
		}
		if len(secs) == 0 {
			delete(s.types, typ)
		}
	}
	for id, at := range s.placed {
		if at.Before(horizon) {
			delete(s.placed, id)
		}
	}
	s.ended = slices.DeleteFunc(s.ended, func(o outcome) bool { return o.at.Before(horizon) })
}

// typeRate is eventType's messages per second over the last rateWindow; s.mu is held.
func (s *sampler) typeRate(eventType string, now time.Time) float64 {
	n := 0
	for sec, c := range s.types[eventType] {
		if now.Unix()-sec < int64(rateWindow.Seconds()) {
			n += c
		}
	}
	return float64(n) / rateWindow.Seconds()
}

func (s *sampler) sagaStats(now time.Time) SagaStats {
	st := SagaStats{WindowSeconds: int(s.cfg.Window.Seconds()), Cancelled: map[string]int{}, InFlight: len(s.placed)}
	var lat []float64
	for _, o := range s.ended {
		if o.reason == "" {
			st.Confirmed++
		} else {
			st.Cancelled[o.reason]++
		}
		if o.known {
			lat = append(lat, float64(o.latency.Microseconds())/1000)
		}
	}
	st.Latency = percentiles(lat)
	return st
}

func percentiles(v []float64) Percentiles {
	if len(v) == 0 {
		return Percentiles{}
	}
	slices.Sort(v)
	at := func(q float64) float64 { return v[min(len(v)-1, int(q*float64(len(v))))] }
	return Percentiles{Count: len(v), P50: at(0.5), P90: at(0.9), P99: at(0.99), Max: v[len(v)-1]}
}
