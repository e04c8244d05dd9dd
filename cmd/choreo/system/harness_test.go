package system_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"

	"github.com/choreo-dev/choreo/cmd/choreo/system"
	"github.com/choreo-dev/choreo/consumer"
	"github.com/choreo-dev/choreo/internal/host"
	"github.com/choreo-dev/choreo/internal/testing/testenv"
	"github.com/choreo-dev/choreo/outbox"
	"github.com/choreo-dev/choreo/sagas"
	"github.com/choreo-dev/choreo/services/customer"
	"github.com/choreo-dev/choreo/services/order"
	"github.com/choreo-dev/choreo/services/payment"
	"github.com/choreo-dev/choreo/services/shipping"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// harness is a whole system in its own namespace (topics, groups, databases) behind an HTTP test server.
type harness struct {
	t    testing.TB
	cfg  system.Config
	sys  *system.System
	url  string
	wait func() // waits until the system stopped, then releases it

	mu        sync.Mutex
	customers map[string]string // name -> id of the customers registered through h.customer
}

func baseConfig(t testing.TB) system.Config {
	// Short: database names are namespace + service and Postgres allows 63 bytes. The random suffix of
	// testenv.Name keeps parallel tests apart.
	unique := testenv.Name(t, "e")
	ns := "e2e" + unique[len(unique)-8:] + "_"
	return system.Config{
		Brokers:    testenv.Kafka(t),
		ServerURL:  testenv.ServerURL(t),
		Partitions: 3,
		Order:      order.Config{Deadline: 2 * time.Minute},
		Payment:    payment.Config{DefaultLimitCents: 1_000_000},
		Shipping:   shipping.Config{Countries: []string{"US", "DE"}},
		// Cheap hashes: the tests register hundreds of customers; production keeps OWASP's parameters.
		Customer: customer.Config{Password: customer.PasswordParams{MemoryKiB: 64, Time: 1, Threads: 1}},
		Host: host.Options{
			Namespace: ns,
			Consumer: func(c *consumer.Config) {
				c.BackoffMin, c.BackoffMax = 10*time.Millisecond, 200*time.Millisecond
				c.SessionTimeout, c.RebalanceTimeout = 6*time.Second, 6*time.Second
				c.Linger = 100 * time.Millisecond // as choreo run's CONSUMER_LINGER: reactions off the path wait
			},
			Relay: []outbox.Option{outbox.WithBackoff(20*time.Millisecond, 500*time.Millisecond)},
		},
	}
}

// start opens and runs a system until the test ends.
func start(t *testing.T, cfg system.Config) *harness {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	h := startUntil(t, ctx, cfg)
	t.Cleanup(cancel) // registered last, so it runs before the harness's own cleanup waits
	return h
}

// startUntil opens and runs a system until ctx ends; h.wait (also run at cleanup) waits for it to stop.
func startUntil(t testing.TB, ctx context.Context, cfg system.Config) *harness {
	t.Helper()
	sys, err := system.Open(ctx, cfg, testenv.Logger(t))
	if err != nil {
		t.Fatalf("open system: %v", err)
	}
	srv := httptest.NewServer(sys.Handler())
	done := make(chan error, 1)
	go func() { done <- sys.Run(ctx) }()
	h := &harness{t: t, cfg: cfg, sys: sys, url: srv.URL, customers: map[string]string{}}
	var once sync.Once
	h.wait = func() {
		once.Do(func() {
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("system run: %v", err)
				}
			case <-time.After(60 * time.Second):
				t.Error("system did not stop within 60s")
			}
			srv.Close()
			sys.Close()
		})
	}
	t.Cleanup(h.wait)
	return h
}

func (h *harness) do(method, path string, body any, header map[string]string) (int, []byte) {
	h.t.Helper()
	code, b, _ := h.doAt(h.url, method, path, body, header)
	return code, b
}

// doAt is do against another base URL (an ingress in front of the system), returning the headers too.
func (h *harness) doAt(base, method, path string, body any, header map[string]string) (int, []byte, http.Header) {
	h.t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, base+path, r)
	if err != nil {
		h.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header
}

// customer registers name (as name@e2e.test) the first time it is asked for, and returns its id: the
// customer service rejects orders of customers it does not know.
func (h *harness) customer(name string) string {
	h.t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	if id, ok := h.customers[name]; ok {
		return id
	}
	code, body := h.do("POST", "/v1/customers", map[string]string{"email": name + "@e2e.test", "name": name, "password": "password-of-" + name}, nil)
	if code != http.StatusCreated {
		h.t.Fatalf("register %s: %d %s", name, code, body)
	}
	id := jsonField(h.t, body, "id")
	h.customers[name] = id
	return id
}

func (h *harness) putProduct(sku string, price int64, stock int) {
	h.t.Helper()
	code, body := h.do("PUT", "/v1/products/"+sku, map[string]any{"name": "Product " + sku, "price_cents": price, "stock": stock}, nil)
	if code != http.StatusOK {
		h.t.Fatalf("put product %s: %d %s", sku, code, body)
	}
}

type orderRequest struct {
	CustomerID      string         `json:"customer_id"`
	Items           []item         `json:"items"`
	PaymentToken    string         `json:"payment_token"`
	ShippingAddress map[string]any `json:"shipping_address"`
}

type item struct {
	SKU      string `json:"sku"`
	Quantity int    `json:"quantity"`
}

func newOrder(customer, sku string, qty int, token, country string) orderRequest {
	return orderRequest{
		CustomerID: customer, Items: []item{{sku, qty}}, PaymentToken: token,
		ShippingAddress: map[string]any{"name": "Ada", "line1": "1 Loop Rd", "city": "Springfield", "postal_code": "12345", "country": country},
	}
}

func (h *harness) place(req orderRequest) string {
	h.t.Helper()
	code, body := h.do("POST", "/v1/orders", req, nil)
	if code != http.StatusAccepted {
		h.t.Fatalf("place order: %d %s", code, body)
	}
	var placed struct{ ID, Status string }
	if err := json.Unmarshal(body, &placed); err != nil || placed.ID == "" || placed.Status != "PENDING" {
		h.t.Fatalf("place order answered %s (%v)", body, err)
	}
	return placed.ID
}

// orderView is the read model's order as the API returns it.
type orderView struct {
	ID         string `json:"id"`
	CustomerID string `json:"customer_id"`
	Status     string `json:"status"`
	Reason     string `json:"reason"`
	Items      []struct {
		SKU        string `json:"sku"`
		Quantity   int    `json:"quantity"`
		PriceCents int64  `json:"price_cents"`
	} `json:"items"`
	TotalCents int64 `json:"total_cents"`
	Timeline   []struct {
		Type   string    `json:"type"`
		Source string    `json:"source"`
		Time   time.Time `json:"time"`
	} `json:"timeline"`
}

func (o orderView) types() []string {
	var ts []string
	for _, e := range o.Timeline {
		ts = append(ts, e.Type)
	}
	return ts
}

// settled waits until the order is final in the read model and every event in want is on its timeline
// (the compensations and the notification follow the outcome, so they are waited for by name).
func (h *harness) settled(id string, want ...string) orderView {
	h.t.Helper()
	var o orderView
	testenv.Eventually(h.t, 60*time.Second, "order "+id+" to settle with "+strings.Join(want, ", "), func() bool {
		code, body := h.do("GET", "/v1/orders/"+id, nil, nil)
		if code != http.StatusOK {
			return false
		}
		o = orderView{}
		if err := json.Unmarshal(body, &o); err != nil {
			h.t.Fatalf("decode order: %v: %s", err, body)
		}
		if o.Status == "PENDING" {
			return false
		}
		for _, w := range want {
			if !slices.Contains(o.types(), w) {
				return false
			}
		}
		return true
	})
	return o
}

func (h *harness) pool(service string) *pgxpool.Pool {
	h.t.Helper()
	u := h.sys.Unit(service)
	if u == nil {
		h.t.Fatalf("no unit %s", service)
	}
	return u.Pool()
}

// scalar runs a one-value query in a service's database.
func scalar[T any](h *harness, service, sql string, args ...any) T {
	h.t.Helper()
	var v T
	if err := h.pool(service).QueryRow(context.Background(), sql, args...).Scan(&v); err != nil {
		h.t.Fatalf("%s: %s: %v", service, sql, err)
	}
	return v
}

type stock struct{ Stock, Reserved, Sold int }

func (h *harness) stock(sku string) stock {
	h.t.Helper()
	var s stock
	err := h.pool(sagas.Inventory).QueryRow(context.Background(), `SELECT stock, reserved, sold FROM products WHERE sku = $1`, sku).Scan(&s.Stock, &s.Reserved, &s.Sold)
	if err != nil {
		h.t.Fatal(err)
	}
	return s
}

func (h *harness) paymentStatus(orderID string) string {
	return scalar[string](h, sagas.Payment, `SELECT coalesce((SELECT status FROM payments WHERE order_id = $1), 'NONE')`, orderID)
}

func (h *harness) notifications(orderID string) int {
	return scalar[int](h, sagas.Notification, `SELECT count(*) FROM notifications WHERE order_id = $1`, orderID)
}

// topicMessages reads every message currently in the system's topic.
func (h *harness) topicMessages(topic string) []kafka.Message {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := &kafka.Client{Addr: kafka.TCP(h.cfg.Brokers...), Transport: &kafka.Transport{}}
	topic = h.cfg.Host.Namespace + topic
	meta, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil || len(meta.Topics) != 1 || meta.Topics[0].Error != nil {
		h.t.Fatalf("metadata of %s: %v %+v", topic, err, meta)
	}
	var reqs []kafka.OffsetRequest
	for _, p := range meta.Topics[0].Partitions {
		reqs = append(reqs, kafka.LastOffsetOf(p.ID))
	}
	offs, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		h.t.Fatalf("offsets of %s: %v", topic, err)
	}
	var all []kafka.Message
	for _, po := range offs.Topics[topic] {
		if po.LastOffset == 0 {
			continue
		}
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: h.cfg.Brokers, Topic: topic, Partition: po.Partition, MaxWait: 100 * time.Millisecond})
		for {
			m, err := r.FetchMessage(ctx)
			if err != nil {
				r.Close()
				h.t.Fatalf("read %s/%d: %v", topic, po.Partition, err)
			}
			all = append(all, m)
			if m.Offset >= po.LastOffset-1 {
				break
			}
		}
		r.Close()
	}
	return all
}

func sku(t *testing.T) string { return strings.ToUpper(testenv.Name(t, "sku")) }
