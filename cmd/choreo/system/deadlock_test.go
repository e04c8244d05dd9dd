package system_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/choreo-dev/choreo/internal/testing/testenv"
	"github.com/choreo-dev/choreo/sagas"
)

// deadlocks returns pg_stat_database.deadlocks of every service database of h, by service.
func (h *harness) deadlocks() map[string]int64 {
	h.t.Helper()
	out := map[string]int64{}
	for _, s := range []string{sagas.Order, sagas.Inventory, sagas.Payment, sagas.Shipping, sagas.Notification, "orderview"} {
		// A fresh snapshot: statistics read earlier in this session would otherwise be reused.
		pool := h.pool(s)
		var n int64
		err := pool.QueryRow(context.Background(), `SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()`).Scan(&n)
		if err != nil {
			h.t.Fatalf("%s: read deadlocks: %v", s, err)
		}
		out[s] = n
	}
	return out
}

// TestManyOrdersOverManyProductsAndAHotOne places orders concurrently, each over several of 20 products
// and often a hot one, with every outcome in the mix. No transaction may deadlock (by construction, not
// by retry), every order must end final, stock must be conserved and sold exactly what was confirmed,
// every confirmed order's money authorized and every shipping failure's refunded, and every order
// notified once.
func TestManyOrdersOverManyProductsAndAHotOne(t *testing.T) {
	t.Parallel()
	cfg := baseConfig(t)
	cfg.Partitions = 6
	h := start(t, cfg)
	const (
		products  = 20
		orders    = 400
		senders   = 16
		initStock = 1_000_000
	)
	prefix := sku(t)
	skus := make([]string, products)
	for i := range skus {
		skus[i] = fmt.Sprintf("%s-%02d", prefix, i)
		h.putProduct(skus[i], int64(100+i), initStock)
	}
	hot := prefix + "-HOT"
	h.putProduct(hot, 999, initStock)
	empty := prefix + "-EMPTY"
	h.putProduct(empty, 500, 0)
	customers := make([]string, 50)
	for i := range customers {
		customers[i] = h.customer(fmt.Sprintf("cust-%d", i))
	}
	before := h.deadlocks()

	var mu sync.Mutex
	var all []loadOrder
	var wg sync.WaitGroup
	for s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(s), 7))
			for i := s; i < orders; i += senders {
				req := newOrder(customers[i%len(customers)], "", 0, "tok_visa", "US")
				req.Items = nil
				qty := map[string]int{}
				for _, j := range rng.Perm(products)[:1+rng.IntN(5)] {
					qty[skus[j]] = 1 + rng.IntN(3)
				}
				if rng.IntN(2) == 0 {
					qty[hot] = 1
				}
				outcome := "CONFIRMED"
				switch i % 10 {
				case 7:
					req.PaymentToken, outcome = "tok_decline", "payment_declined"
				case 8:
					req.ShippingAddress["country"], outcome = "XX", "shipping_failed"
				case 9:
					qty[empty], outcome = 1, "out_of_stock"
				}
				for sku, q := range qty {
					req.Items = append(req.Items, item{sku, q})
				}
				code, body := h.do("POST", "/v1/orders", req, nil)
				if code != http.StatusAccepted {
					t.Errorf("place order %d: %d %s", i, code, body)
					return
				}
				mu.Lock()
				all = append(all, loadOrder{jsonField(t, body, "id"), outcome, qty})
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}

	testenv.Eventually(t, 3*time.Minute, fmt.Sprintf("%d orders final and notified", orders), func() bool {
		pending := scalar[int](h, sagas.Order, `SELECT count(*) FROM orders WHERE status = 'PENDING'`)
		notified := scalar[int](h, sagas.Notification, `SELECT count(*) FROM notifications`)
		return pending == 0 && notified >= orders
	})
	var cancelled []string
	for _, o := range all {
		if o.outcome != "CONFIRMED" {
			cancelled = append(cancelled, o.id)
		}
	}
	// Compensations trail the outcome; wait until nothing is held any more.
	testenv.Eventually(t, time.Minute, "every reservation settled", func() bool {
		return scalar[int](h, sagas.Inventory, `SELECT count(*) FROM reservations WHERE status = 'RESERVED'`) == 0 &&
			scalar[int](h, sagas.Payment, `SELECT count(*) FROM payments p WHERE status = 'AUTHORIZED' AND order_id = ANY($1)`, cancelled) == 0
	})

	sold := map[string]int{}
	for _, o := range all {
		status := scalar[string](h, sagas.Order, `SELECT CASE WHEN status = 'CONFIRMED' THEN status ELSE reason END FROM orders WHERE id = $1`, o.id)
		if status != o.outcome {
			t.Errorf("order %s ended %s, want %s", o.id, status, o.outcome)
		}
		if o.outcome == "CONFIRMED" {
			for sku, q := range o.qty {
				sold[sku] += q
			}
			total := scalar[int64](h, sagas.Inventory, `SELECT total_cents FROM reservations WHERE order_id = $1`, o.id)
			if paid := scalar[int64](h, sagas.Payment, `SELECT amount_cents FROM payments WHERE order_id = $1 AND status = 'AUTHORIZED'`, o.id); paid != total {
				t.Errorf("order %s: authorized %d, reserved total %d", o.id, paid, total)
			}
		}
		if o.outcome == "shipping_failed" {
			if st := h.paymentStatus(o.id); st != "REFUNDED" {
				t.Errorf("order %s failed shipping, payment %s, want REFUNDED", o.id, st)
			}
		}
		if n := h.notifications(o.id); n != 1 {
			t.Errorf("order %s: %d notifications, want 1", o.id, n)
		}
	}
	for _, s := range append(append([]string{}, skus...), hot) {
		got := h.stock(s)
		if got.Reserved != 0 || got.Sold != sold[s] || got.Stock+got.Sold != initStock {
			t.Errorf("%s: %+v, want reserved 0, sold %d, stock+sold %d", s, got, sold[s], initStock)
		}
	}
	after := h.deadlocks()
	for s, n := range after {
		if n != before[s] {
			t.Errorf("%s database: %d deadlocks during the run", s, n-before[s])
		}
	}
}

// loadOrder is an order placed by a load test and the outcome it must reach.
type loadOrder struct {
	id      string
	outcome string // CONFIRMED, or the cancellation reason
	qty     map[string]int
}
