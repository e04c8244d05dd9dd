package console

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/segmentio/kafka-go"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/internal/kafkaadmin"
	"github.com/choreo-dev/choreo/internal/testing/testenv"
	"github.com/choreo-dev/choreo/sagas"
)

// TestSamplerFollowsSagasFromTheTopics writes two sagas' events straight to a namespace's order topic and
// checks what one sample makes of them: outcomes by reason, POST→final latencies from the events' times,
// rates per event type, and a group-less read (no consumer group appears).
func TestSamplerFollowsSagasFromTheTopics(t *testing.T) {
	t.Parallel()
	brokers := testenv.Kafka(t)
	ns := testenv.Name(t, "smp") + "_"
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	topic := ns + sagas.Topic(sagas.Order)
	if err := kafkaadmin.EnsureTopics(ctx, brokers, kafkaadmin.Topic{Name: topic, Partitions: 3}); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now().Add(-5 * time.Second).UTC()
	var msgs []kafka.Message
	event := func(id uuid.UUID, typ string, at time.Time, data string) {
		eid, _ := uuid.NewV7()
		msgs = append(msgs, events.ToMessage(topic, events.Envelope{ID: eid, Type: typ, Version: 1, Source: sagas.Order,
			Subject: id.String(), CorrelationID: id.String(), Time: at, Data: []byte(data)}))
	}
	a, b := uuid.Must(uuid.NewV7()), uuid.Must(uuid.NewV7())
	event(a, "order.placed", t0, `{}`)
	event(b, "order.placed", t0, `{}`)
	event(a, "order.confirmed", t0.Add(2*time.Second), `{}`)
	event(b, "order.cancelled", t0.Add(3*time.Second), `{"reason":"shipping_failed"}`)
	w := &kafka.Writer{Addr: kafka.TCP(brokers...), Balancer: &kafka.Murmur2Balancer{}, BatchTimeout: time.Millisecond, Transport: &kafka.Transport{},
		RequiredAcks: kafka.RequireAll} // acknowledged: with no acks a write to a topic still electing its leaders is lost
	defer w.Close()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatal(err)
	}

	in, err := kafkaadmin.NewInspector(brokers)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	// A real broker may answer "not leader" for a just-created topic's partitions for a moment; the
	// sampler reports that as a failed sample and tries again at its next interval. Wait it out here.
	testenv.Eventually(t, 20*time.Second, "the topic's offsets to be readable", func() bool {
		_, err := in.Topics(ctx, func(name string) bool { return name == topic })
		return err == nil
	})
	s := newSampler(Config{Namespace: ns, Interval: time.Second, Window: time.Minute}.withDefaults(), in)
	s.sample(ctx)
	snap := s.snapshot()
	if snap.Error != "" {
		t.Fatalf("sample failed: %s", snap.Error)
	}
	st := snap.Sagas
	if st.Confirmed != 1 || st.Cancelled["shipping_failed"] != 1 || st.InFlight != 0 {
		t.Errorf("outcomes %+v, want 1 confirmed, 1 shipping_failed, none in flight", st)
	}
	if st.Latency.Count != 2 || st.Latency.P50 != 3000 || st.Latency.Max != 3000 {
		t.Errorf("latency %+v, want 2 sagas of 2000 and 3000 ms (p50 and max 3000)", st.Latency)
	}
	rates := map[string]float64{}
	for _, e := range snap.Flow.Edges {
		rates[e.Type] = e.Rate
	}
	if want := 2 / rateWindow.Seconds(); rates["order.placed"] != want || rates["order.confirmed"] != 1/rateWindow.Seconds() {
		t.Errorf("rates %v, want order.placed %v", rates, want)
	}
	if len(snap.Topics) != 1 || snap.Topics[0].Messages != 4 || len(snap.Groups) != 0 {
		t.Errorf("topics %+v groups %+v, want the one topic with 4 messages and no group", snap.Topics, snap.Groups)
	}
	// A second sample reads nothing twice.
	s.sample(ctx)
	if got := s.snapshot().Sagas; got.Confirmed != 1 || got.Latency.Count != 2 {
		t.Errorf("after a second sample: %+v", got)
	}
}
