package system_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/internal/testing/testenv"
	"github.com/choreo-dev/choreo/sagas"
)

func TestHappyPathConfirmsOrder(t *testing.T) {
	t.Parallel()
	h := start(t, baseConfig(t))
	s := sku(t)
	h.putProduct(s, 1250, 10)

	const trace = "4bf92f3577b34da6a3ce929d0e0e4736"
	code, body := h.do("POST", "/v1/orders", newOrder(h.customer("alice"), s, 3, "tok_visa", "US"), map[string]string{"traceparent": "00-" + trace + "-00f067aa0ba902b7-01"})
	if code != http.StatusAccepted {
		t.Fatalf("place: %d %s", code, body)
	}
	id := jsonField(t, body, "id")
	// The read model follows each topic on its own, so one topic's events may reach the timeline after
	// later events of others: wait for every step the timeline must show (settled fails if one never
	// comes).
	o := h.settled(id, "order.placed", "stock.reserved", "payment.authorized", "shipment.scheduled", "order.confirmed",
		"stock.sold", "notification.sent")
	// The caller's trace reaches every step, however many hops away.
	for _, topic := range []string{sagas.Topic(sagas.Payment), sagas.Topic(sagas.Shipping), sagas.Topic(sagas.Notification)} {
		for _, m := range h.topicMessages(topic) {
			if e, err := events.FromMessage(m); err == nil && e.Subject == id && events.TraceID(e.TraceParent) != trace {
				t.Errorf("%s on %s carries trace %q, want %s", e.Type, topic, e.TraceParent, trace)
			}
		}
	}
	if o.Status != "CONFIRMED" || o.Reason != "" || o.TotalCents != 3750 || o.CustomerID != h.customer("alice") {
		t.Fatalf("order %+v", o)
	}
	if len(o.Items) != 1 || o.Items[0].SKU != s || o.Items[0].Quantity != 3 || o.Items[0].PriceCents != 1250 {
		t.Fatalf("items %+v", o.Items)
	}
	if got := h.stock(s); got != (stock{Stock: 7, Reserved: 0, Sold: 3}) {
		t.Errorf("stock %+v, want 7 available, 3 sold", got)
	}
	if p := h.paymentStatus(id); p != "AUTHORIZED" {
		t.Errorf("payment %s, want AUTHORIZED", p)
	}
	if st := scalar[string](h, sagas.Shipping, `SELECT status FROM shipments WHERE order_id = $1`, id); st != "SCHEDULED" {
		t.Errorf("shipment %s, want SCHEDULED", st)
	}
	if n := h.notifications(id); n != 1 {
		t.Errorf("%d notifications, want 1", n)
	}
	code, metrics := h.do("GET", "/metrics", nil, nil)
	for _, want := range []string{`choreo_relay_published_total{service="order"}`, `choreo_outbox_backlog_rows{service="payment"}`,
		`choreo_consumer_events_total{outcome="handled",service="inventory"}`} {
		if code != http.StatusOK || !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics (%d) lacks %s", code, want)
		}
	}
	if strings.Contains(string(metrics), `choreo_relay_published_total{service="order"} 0`) {
		t.Errorf("/metrics says the order relay published nothing")
	}
}

func TestCompensationPaths(t *testing.T) {
	t.Parallel()
	h := start(t, baseConfig(t))
	cases := []struct {
		name      string
		order     func(sku string) orderRequest
		reason    string
		waitFor   []string
		payment   string
		shipment  string
		stockLeft int
	}{
		{"out of stock", func(s string) orderRequest { return newOrder(h.customer("bob"), s, 6, "tok_visa", "US") },
			events.ReasonOutOfStock, []string{"stock.rejected", "notification.sent"}, "CANCELLED", "CANCELLED", 5},
		{"unknown sku", func(string) orderRequest { return newOrder(h.customer("bob"), "NO-SUCH-SKU", 1, "tok_visa", "US") },
			events.ReasonOutOfStock, []string{"stock.rejected", "notification.sent"}, "CANCELLED", "CANCELLED", 5},
		{"payment declined", func(s string) orderRequest { return newOrder(h.customer("carol"), s, 2, "tok_decline", "US") },
			events.ReasonPaymentDeclined, []string{"payment.declined", "stock.released", "notification.sent"}, "DECLINED", "CANCELLED", 5},
		{"over the limit", func(s string) orderRequest { return newOrder(h.customer("dave"), s, 5, "tok_visa", "US") },
			events.ReasonPaymentDeclined, []string{"payment.declined", "stock.released", "notification.sent"}, "DECLINED", "CANCELLED", 5},
		{"shipping failed", func(s string) orderRequest { return newOrder(h.customer("erin"), s, 2, "tok_visa", "XX") },
			events.ReasonShippingFailed, []string{"shipment.failed", "stock.released", "payment.refunded", "notification.sent"}, "REFUNDED", "FAILED", 5},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := sku(t)
			price := int64(100)
			if tc.name == "over the limit" {
				price = 300_000 // 5 x 300,000 = 1,500,000 > the 1,000,000 limit
			}
			h.putProduct(s, price, 5)
			id := h.place(tc.order(s))
			o := h.settled(id, tc.waitFor...)
			if o.Status != "CANCELLED" || o.Reason != tc.reason {
				t.Fatalf("order %s/%s, want CANCELLED/%s; timeline %v", o.Status, o.Reason, tc.reason, o.types())
			}
			if got := h.stock(s); got != (stock{Stock: tc.stockLeft}) {
				t.Errorf("stock %+v, want all %d back and nothing reserved or sold", got, tc.stockLeft)
			}
			if p := h.paymentStatus(id); p != tc.payment {
				t.Errorf("payment %s, want %s", p, tc.payment)
			}
			testenv.Eventually(t, 30*time.Second, "shipping to settle", func() bool {
				return scalar[string](h, sagas.Shipping, `SELECT coalesce((SELECT status FROM shipments WHERE order_id = $1), 'NONE')`, id) == tc.shipment
			})
			if n := h.notifications(id); n != 1 {
				t.Errorf("%d notifications, want exactly 1", n)
			}
			if slices.Contains(o.types(), "payment.authorized") && !slices.Contains(o.types(), "payment.refunded") {
				t.Errorf("authorized but never refunded: %v", o.types())
			}
		})
	}
}

// TestDeadlineExpiresStuckOrder runs the system without shipping, so an authorized order can never be
// confirmed: the deadline cancels it, stock is released and the payment refunded. Then shipping comes up
// and sees order.placed, payment.authorized and order.cancelled from different topics in whatever order
// its partitions deliver them; either way it must end with no live shipment.
func TestDeadlineExpiresStuckOrder(t *testing.T) {
	t.Parallel()
	cfg := baseConfig(t)
	cfg.Order.Deadline = 1500 * time.Millisecond
	cfg.Disabled = []string{sagas.Shipping}
	h := start(t, cfg)
	s := sku(t)
	h.putProduct(s, 500, 4)

	id := h.place(newOrder(h.customer("frank"), s, 2, "tok_visa", "US"))
	o := h.settled(id, "payment.refunded", "stock.released", "notification.sent")
	if o.Status != "CANCELLED" || o.Reason != events.ReasonExpired {
		t.Fatalf("order %s/%s, want CANCELLED/expired; timeline %v", o.Status, o.Reason, o.types())
	}
	if got := h.stock(s); got != (stock{Stock: 4}) {
		t.Errorf("stock %+v, want all 4 back", got)
	}
	if p := h.paymentStatus(id); p != "REFUNDED" {
		t.Errorf("payment %s, want REFUNDED", p)
	}

	late := cfg
	late.Disabled = []string{sagas.Order, sagas.Inventory, sagas.Payment, sagas.Notification, "orderview"}
	lateShipping := start(t, late)
	testenv.Eventually(t, 60*time.Second, "late shipping to cancel or never schedule", func() bool {
		st := scalar[string](lateShipping, sagas.Shipping, `SELECT coalesce((SELECT status FROM shipments WHERE order_id = $1), 'NONE')`, id)
		return st == "CANCELLED"
	})
	if n := h.notifications(id); n != 1 {
		t.Errorf("%d notifications, want exactly 1", n)
	}
	if st := scalar[string](h, sagas.Order, `SELECT status FROM orders WHERE id = $1`, id); st != "CANCELLED" {
		t.Errorf("order service status %s after late events, want CANCELLED", st)
	}
}

// TestConcurrentOrdersNeverOversell submits 300 one-unit orders for a sku with stock 100 in parallel.
func TestConcurrentOrdersNeverOversell(t *testing.T) {
	t.Parallel()
	h := start(t, baseConfig(t))
	s := sku(t)
	h.putProduct(s, 100, 100)

	const orders, workers = 300, 12
	ids := make([]string, orders)
	customers := make([]string, orders)
	for i := range customers {
		customers[i] = h.customer(fmt.Sprintf("c%03d", i))
	}
	var wg sync.WaitGroup
	next := make(chan int)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				code, body := h.do("POST", "/v1/orders", newOrder(customers[i], s, 1, "tok_visa", "US"), nil)
				if code != http.StatusAccepted {
					t.Errorf("order %d: %d %s", i, code, body)
					continue
				}
				ids[i] = jsonField(t, body, "id")
			}
		}()
	}
	for i := range orders {
		next <- i
	}
	close(next)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	final := map[string]int{}
	for _, id := range ids {
		o := h.settled(id, "notification.sent")
		final[o.Status]++
		if o.Status == "CANCELLED" {
			if o.Reason != events.ReasonOutOfStock {
				t.Errorf("order %s cancelled for %s", id, o.Reason)
			}
			if p := h.paymentStatus(id); p == "AUTHORIZED" {
				t.Errorf("cancelled order %s has an authorized payment", id)
			}
		}
	}
	if final["CONFIRMED"] != 100 || final["CANCELLED"] != 200 {
		t.Errorf("final states %v, want 100 confirmed and 200 cancelled", final)
	}
	testenv.Eventually(t, 60*time.Second, "every reservation settled", func() bool { return h.stock(s).Reserved == 0 })
	if got := h.stock(s); got != (stock{Stock: 0, Sold: 100}) {
		t.Errorf("stock %+v, want exactly 100 sold and none left", got)
	}
	held := scalar[int](h, sagas.Inventory, `SELECT count(*) FROM reservations WHERE status = 'RESERVED'`)
	authorized := scalar[int](h, sagas.Payment, `SELECT count(*) FROM payments WHERE status = 'AUTHORIZED'`)
	if held != 0 || authorized != 100 {
		t.Errorf("%d reservations still held (want 0), %d payments authorized (want 100)", held, authorized)
	}
	if n := scalar[int](h, sagas.Notification, `SELECT count(*) FROM notifications`); n != orders {
		t.Errorf("%d notifications, want %d", n, orders)
	}
}

// TestEveryEventDeliveredTwiceChangesNothing runs sagas to completion, then publishes every event of
// every topic again: first with the inboxes intact (the runtime skips them), then with the inboxes
// emptied (each handler must be idempotent by its own state). Nothing may change and no event may be
// emitted.
func TestEveryEventDeliveredTwiceChangesNothing(t *testing.T) {
	t.Parallel()
	h := start(t, baseConfig(t))
	s := sku(t)
	h.putProduct(s, 700, 3)
	var ids []string
	for _, o := range []orderRequest{
		newOrder(h.customer("gina"), s, 1, "tok_visa", "US"),
		newOrder(h.customer("hank"), s, 1, "tok_decline", "US"),
		newOrder(h.customer("ivan"), s, 1, "tok_visa", "XX"),
		newOrder(h.customer("june"), s, 9, "tok_visa", "US"),
	} {
		ids = append(ids, h.place(o))
	}
	for _, id := range ids {
		h.settled(id, "notification.sent")
	}
	h.drained() // compensations and notifications still in flight after the outcome
	before := h.snapshot(ids, s)

	for round, clearInbox := range []bool{false, true} {
		if clearInbox {
			for _, svc := range append(sagas.Services(), "orderview") {
				if _, err := h.pool(svc).Exec(context.Background(), `DELETE FROM inbox`); err != nil {
					t.Fatal(err)
				}
			}
		}
		counts := h.redeliverAll()
		h.drained()
		for topic, n := range counts {
			if got := len(h.topicMessages(topic)); got != n*2 {
				t.Fatalf("round %d: %s holds %d messages after redelivering %d, want %d: a duplicate emitted new events", round, topic, got, n, 2*n)
			}
		}
		if after := h.snapshot(ids, s); after != before {
			t.Fatalf("round %d: state changed after duplicates:\nbefore %s\nafter  %s", round, before, after)
		}
	}
}
