package orderview_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/internal/kafkaadmin"
	"github.com/choreo-dev/choreo/internal/postgres"
	"github.com/choreo-dev/choreo/internal/projection"
	"github.com/choreo-dev/choreo/internal/testing/testenv"
	"github.com/choreo-dev/choreo/sagas"
	"github.com/choreo-dev/choreo/sagas/orderview"
)

const (
	benchOrders     = 12_500 // 8 events each: 100,000 events
	benchPartitions = 6
	benchRounds     = 3
)

// BenchmarkReplay rebuilds the order read model from 100,000 events (12,500 sagas of 8 events over the
// five topics, 6 partitions each) into durable Postgres (fsync on), as `choreo replay orderview` does, and
// in the same run reads the same partitions with plain kafka-go partition readers that do nothing with the
// messages: the ceiling the Kafka side sets. Rounds alternate; medians are reported with their ratio.
func BenchmarkReplay(b *testing.B) {
	ctx := context.Background()
	pool := durablePostgres(b)
	brokers := testenv.Kafka(b)
	ns := testenv.Name(b, "bench") + "."
	var topics []kafkaadmin.Topic
	for _, t := range sagas.Topics() {
		topics = append(topics, kafkaadmin.Topic{Name: ns + t, Partitions: benchPartitions})
	}
	if err := kafkaadmin.EnsureTopics(ctx, brokers, topics...); err != nil {
		b.Fatal(err)
	}
	produceSagas(b, brokers, ns)
	reg, err := events.Catalog()
	if err != nil {
		b.Fatal(err)
	}
	runner := projection.New(projection.Config{Brokers: brokers, Namespace: ns, Log: testenv.Logger(b)}, pool, reg, orderview.Projection{})

	for range b.N {
		var raws, replays, ratios []float64
		var applied int64
		for range benchRounds {
			raw := rawReadRate(b, brokers, topics)
			for _, sql := range []string{`DROP SCHEMA IF EXISTS orderview CASCADE`, `CHECKPOINT`} {
				if _, err := pool.Exec(ctx, sql); err != nil {
					b.Fatal(err)
				}
			}
			res, err := runner.Rebuild(ctx, projection.RebuildOptions{})
			if err != nil || !res.Swapped {
				b.Fatalf("replay: %v", err)
			}
			applied = res.Applied
			raws, replays, ratios = append(raws, raw), append(replays, res.Rate()), append(ratios, res.Rate()/raw)
		}
		var orders int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM orderview.orders WHERE status = 'CONFIRMED'`).Scan(&orders); err != nil || orders != benchOrders {
			b.Fatalf("%d confirmed orders after the replay (%v), want %d", orders, err, benchOrders)
		}
		raw, rep, ratio := median(raws), median(replays), median(ratios)
		b.ReportMetric(rep, "replay_events/s")
		b.ReportMetric(raw, "raw_read_events/s")
		b.ReportMetric(ratio, "replay/raw")
		fmt.Fprintf(os.Stdout, "\nreplay benchmark: %d events (%d sagas, %d topics x %d partitions), durable Postgres, Kafka %s\n",
			applied, benchOrders, len(topics), benchPartitions, strings.Join(brokers, ","))
		fmt.Fprintf(os.Stdout, "  median of %d alternating rounds: replay into the order view %.0f events/s, raw kafka-go read %.0f events/s, ratio %.2f\n",
			benchRounds, rep, raw, ratio)
		for i := range raws {
			fmt.Fprintf(os.Stdout, "  round %d: replay %.0f/s, raw read %.0f/s\n", i+1, replays[i], raws[i])
		}
	}
}

// produceSagas publishes benchOrders settled sagas to the namespace's topics, keyed by order id.
func produceSagas(b *testing.B, brokers []string, ns string) {
	w := &kafka.Writer{Addr: kafka.TCP(brokers...), Balancer: &kafka.Murmur2Balancer{}, RequiredAcks: kafka.RequireAll,
		BatchSize: 5000, BatchBytes: 16 << 20, BatchTimeout: time.Millisecond}
	defer w.Close()
	var msgs []kafka.Message
	flush := func() {
		if err := w.WriteMessages(context.Background(), msgs...); err != nil {
			b.Fatal(err)
		}
		msgs = msgs[:0]
	}
	at := time.Date(2031, 3, 14, 9, 0, 0, 0, time.UTC)
	for i := range benchOrders {
		id := uuid.NewString()
		lines := []events.PricedLine{{SKU: fmt.Sprintf("sku-%03d", i%200), Quantity: 1 + i%3, PriceCents: 250}}
		for j, p := range []events.Payload{
			events.OrderPlaced{OrderID: id, CustomerID: fmt.Sprintf("c-%d", i%1000), Items: []events.Item{{SKU: lines[0].SKU, Quantity: lines[0].Quantity}}, Currency: "USD",
				PaymentToken: "tok_visa", ShippingAddress: events.PostalAddress{Name: "Ada", Street: "Loop Rd", HouseNumber: "1", City: "Springfield", PostalCode: "12345", Country: "US"}},
			events.StockReserved{OrderID: id, Lines: lines, TotalCents: int64(lines[0].Quantity) * 250},
			events.PaymentAuthorized{OrderID: id, PaymentID: "p-" + id, AmountCents: int64(lines[0].Quantity) * 250},
			events.ShipmentScheduled{OrderID: id, ShipmentID: "s-" + id},
			events.OrderConfirmed{OrderID: id},
			events.StockSold{OrderID: id},
			events.NotificationSent{OrderID: id, Outcome: "order.confirmed", Channel: "log"},
			events.NotificationSent{OrderID: id, Outcome: "order.shipped", Channel: "log"},
		} {
			source := map[string]string{"order": sagas.Order, "stock": sagas.Inventory, "payment": sagas.Payment, "shipment": sagas.Shipping, "notification": sagas.Notification}[strings.Split(p.EventType(), ".")[0]]
			e, err := events.New(source, id, p)
			if err != nil {
				b.Fatal(err)
			}
			e.Time = at.Add(time.Duration(i)*time.Second + time.Duration(j)*time.Millisecond)
			msgs = append(msgs, events.ToMessage(ns+sagas.Topic(source), e))
		}
		if len(msgs) >= 20000 {
			flush()
		}
	}
	flush()
}

// rawReadRate reads every partition of topics to its end with one kafka-go partition reader each, at
// once, doing nothing with the messages: the projection runtime's readers without the projection.
func rawReadRate(b *testing.B, brokers []string, topics []kafkaadmin.Topic) float64 {
	ctx := context.Background()
	in, err := kafkaadmin.NewInspector(brokers)
	if err != nil {
		b.Fatal(err)
	}
	defer in.Close()
	type part struct {
		topic    string
		id       int
		from, to int64
	}
	var parts []part
	var total int64
	for _, t := range topics {
		ti, err := in.Topic(ctx, t.Name)
		if err != nil {
			b.Fatal(err)
		}
		for _, p := range ti.Partitions {
			parts = append(parts, part{t.Name, p.ID, p.Start, p.End})
			total += p.End - p.Start
		}
	}
	start := time.Now()
	var wg sync.WaitGroup
	for _, p := range parts {
		wg.Go(func() {
			r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: p.topic, Partition: p.id, MinBytes: 1, MaxBytes: 16 << 20,
				MaxWait: 200 * time.Millisecond, QueueCapacity: 4096, ReadLagInterval: -1})
			defer r.Close()
			if err := r.SetOffset(p.from); err != nil {
				b.Error(err)
				return
			}
			for off := p.from; off < p.to; {
				m, err := r.FetchMessage(ctx)
				if err != nil {
					b.Error(err)
					return
				}
				off = m.Offset + 1
			}
		})
	}
	wg.Wait()
	return float64(total) / time.Since(start).Seconds()
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// durablePostgres returns a pool on a private cluster with fsync on (the shared test cluster runs without
// it), the projection tables migrated.
func durablePostgres(b *testing.B) *pgxpool.Pool {
	b.Helper()
	ctx := context.Background()
	pool, err := postgres.Connect(ctx, testenv.DurableServerURL(b))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	if err := projection.Migrate(ctx, pool); err != nil {
		b.Fatal(err)
	}
	return pool
}
