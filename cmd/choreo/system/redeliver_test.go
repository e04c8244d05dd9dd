package system_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"

	"github.com/choreo-dev/choreo/internal/kafkaadmin"
	"github.com/choreo-dev/choreo/internal/testing/testenv"
	"github.com/choreo-dev/choreo/sagas"
	"github.com/choreo-dev/choreo/sagas/orderview"
)

func jsonField(t testing.TB, body []byte, field string) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	v, _ := m[field].(string)
	return v
}

// redeliverAll publishes every message of every events topic again, unchanged, and returns how many
// messages each topic held before.
func (h *harness) redeliverAll() map[string]int {
	h.t.Helper()
	counts := map[string]int{}
	for _, topic := range sagas.Topics() {
		msgs := h.topicMessages(topic)
		counts[topic] = len(msgs)
		if len(msgs) == 0 {
			continue
		}
		w := &kafka.Writer{Addr: kafka.TCP(h.cfg.Brokers...), Topic: h.cfg.Host.Namespace + topic, Balancer: &kafka.Murmur2Balancer{},
			RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond, Transport: &kafka.Transport{}}
		again := make([]kafka.Message, len(msgs))
		for i, m := range msgs {
			again[i] = kafka.Message{Key: m.Key, Value: m.Value, Headers: m.Headers}
		}
		err := w.WriteMessages(context.Background(), again...)
		w.Close()
		if err != nil {
			h.t.Fatalf("redeliver %s: %v", topic, err)
		}
	}
	return counts
}

// drained waits until every consumer group has committed every message of its topics and every outbox
// is empty: nothing is left in flight.
func (h *harness) drained() {
	h.t.Helper()
	ns := h.cfg.Host.Namespace
	testenv.Eventually(h.t, 60*time.Second, "consumers and relays to drain", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, svc := range append(sagas.Services(), "orderview") {
			u := h.sys.Unit(svc)
			if u == nil {
				continue
			}
			var backlog int
			if err := u.Pool().QueryRow(ctx, `SELECT count(*) FROM outbox`).Scan(&backlog); err != nil || backlog > 0 {
				return false
			}
			if svc == "orderview" {
				if lag, err := projectionLag(ctx, h.cfg.Brokers, u.Pool(), ns); err != nil || lag > 0 {
					return false
				}
				continue
			}
			for _, topic := range sagas.Subscriptions(svc) {
				if lag, err := groupLag(ctx, h.cfg.Brokers, ns+svc, ns+topic); err != nil || lag > 0 {
					return false
				}
			}
		}
		return true
	})
}

// projectionLag is how many events of their topics the read model's projections have not applied yet,
// by the positions stored beside their rows.
func projectionLag(ctx context.Context, brokers []string, pool *pgxpool.Pool, ns string) (int64, error) {
	var lag int64
	for _, p := range orderview.Spec(orderview.Config{}).Projections {
		for _, topic := range p.Topics() {
			ends, err := kafkaadmin.EndOffsets(ctx, brokers, ns+topic)
			if err != nil {
				return 0, err
			}
			for part, end := range ends {
				var next int64
				err := pool.QueryRow(ctx, `SELECT coalesce(max(next_offset), 0) FROM `+pgx.Identifier{p.Name(), "_positions"}.Sanitize()+
					` WHERE topic = $1 AND partition = $2`, ns+topic, part).Scan(&next)
				if err != nil {
					return 0, err
				}
				lag += end - next
			}
		}
	}
	return lag, nil
}

// groupLag is how many messages of topic group has not committed yet.
func groupLag(ctx context.Context, brokers []string, group, topic string) (int64, error) {
	offsets, err := kafkaadmin.GroupOffsets(ctx, brokers, group, topic)
	var lag int64
	for _, p := range offsets {
		lag += p.Lag()
	}
	return lag, err
}

// snapshot renders every service's state for the orders and sku, to compare before and after.
func (h *harness) snapshot(ids []string, sku string) string {
	h.t.Helper()
	var b strings.Builder
	st := h.stock(sku)
	fmt.Fprintf(&b, "stock=%+v ", st)
	for _, id := range ids {
		fmt.Fprintf(&b, "\n%s order=%s inv=%s pay=%s ship=%s notes=%d view=%s",
			id[len(id)-6:],
			scalar[string](h, sagas.Order, `SELECT status || '/' || reason FROM orders WHERE id = $1`, id),
			scalar[string](h, sagas.Inventory, `SELECT coalesce((SELECT status FROM reservations WHERE order_id = $1), 'NONE')`, id),
			h.paymentStatus(id),
			scalar[string](h, sagas.Shipping, `SELECT coalesce((SELECT status FROM shipments WHERE order_id = $1), 'NONE')`, id),
			h.notifications(id),
			h.viewSummary(id))
	}
	return b.String()
}

func (h *harness) viewSummary(id string) string {
	_, body := h.do("GET", "/v1/orders/"+id, nil, nil)
	var o orderView
	_ = json.Unmarshal(body, &o)
	return fmt.Sprintf("%s/%s/%d events", o.Status, o.Reason, len(o.Timeline))
}
