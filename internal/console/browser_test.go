package console_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/segmentio/kafka-go"

	"github.com/choreo-dev/choreo/cmd/choreo/system"
	"github.com/choreo-dev/choreo/consumer"
	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/internal/host"
	"github.com/choreo-dev/choreo/internal/testing/testenv"
	"github.com/choreo-dev/choreo/outbox"
	"github.com/choreo-dev/choreo/sagas"
	"github.com/choreo-dev/choreo/services/customer"
	"github.com/choreo-dev/choreo/services/inventory"
	"github.com/choreo-dev/choreo/services/order"
	"github.com/choreo-dev/choreo/services/payment"
	"github.com/choreo-dev/choreo/services/shipping"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const token = "console-test-token"

// systemConfig is a whole system in its own namespace; disabled units do not run.
func systemConfig(t *testing.T, ns string, disabled ...string) system.Config {
	return system.Config{
		Brokers:       testenv.Kafka(t),
		ServerURL:     testenv.ServerURL(t),
		Partitions:    3,
		Order:         order.Config{Deadline: 5 * time.Minute},
		Payment:       payment.Config{DefaultLimitCents: 1_000_000},
		Shipping:      shipping.Config{Countries: []string{"US", "DE"}},
		Seed:          []inventory.Product{{SKU: "KB-001", Name: "Keyboard", PriceCents: 8900, Stock: 100}},
		Customer:      customer.Config{Password: customer.PasswordParams{MemoryKiB: 64, Time: 1, Threads: 1}},
		OperatorToken: token,
		Disabled:      disabled,
		Host: host.Options{
			Namespace: ns,
			Consumer: func(c *consumer.Config) {
				c.BackoffMin, c.BackoffMax = 10*time.Millisecond, 50*time.Millisecond
				c.MaxAttempts = 2
				c.SessionTimeout, c.RebalanceTimeout = 6*time.Second, 6*time.Second
			},
			Relay: []outbox.Option{outbox.WithBackoff(20*time.Millisecond, 500*time.Millisecond)},
		},
	}
}

// runSystem opens and runs a system until the test ends and returns its base URL.
func runSystem(t *testing.T, cfg system.Config) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	sys, err := system.Open(ctx, cfg, testenv.Logger(t))
	if err != nil {
		t.Fatalf("open system: %v", err)
	}
	srv := httptest.NewServer(sys.Handler())
	done := make(chan error, 1)
	go func() { done <- sys.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("system run: %v", err)
		}
		srv.Close()
		sys.Close()
	})
	return srv.URL
}

// register registers a new customer (the customer service rejects orders of unknown ones) and returns its id.
func register(t *testing.T, base string) string {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"email": testenv.Name(t, "ada") + "@console.test", "name": "Ada", "password": "console-password"})
	resp, err := http.Post(base+"/v1/customers", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var c struct{ ID string }
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated || json.Unmarshal(b, &c) != nil {
		t.Fatalf("register customer: %d %s", resp.StatusCode, b)
	}
	return c.ID
}

func place(t *testing.T, base, country string) string {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"customer_id": register(t, base), "items": []map[string]any{{"sku": "KB-001", "quantity": 1}},
		"payment_token": "tok_visa", "shipping_address": map[string]any{"name": "Ada", "line1": "1 Loop Rd", "city": "Springfield", "postal_code": "12345", "country": country}})
	resp, err := http.Post(base+"/v1/orders", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var placed struct{ ID string }
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusAccepted || json.Unmarshal(b, &placed) != nil {
		t.Fatalf("place order: %d %s", resp.StatusCode, b)
	}
	return placed.ID
}

func status(t *testing.T, base, id string) string {
	t.Helper()
	resp, err := http.Get(base + "/v1/orders/" + id)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var o struct{ Status string }
	_ = json.NewDecoder(resp.Body).Decode(&o)
	return o.Status
}

// poison publishes an order.placed of a schema version no service knows, so every service that reacts to
// order.placed dead-letters it.
func poison(t *testing.T, brokers []string, ns string) string {
	t.Helper()
	id, _ := uuid.NewV7()
	ev := events.Envelope{ID: id, Type: "order.placed", Version: 99, Source: sagas.Order, Subject: id.String(),
		CorrelationID: id.String(), Time: time.Now().UTC(), Data: []byte(`{"order_id":"` + id.String() + `","future":true}`)}
	w := &kafka.Writer{Addr: kafka.TCP(brokers...), Balancer: &kafka.Murmur2Balancer{}, BatchTimeout: time.Millisecond, Transport: &kafka.Transport{}}
	defer w.Close()
	if err := w.WriteMessages(context.Background(), events.ToMessage(ns+sagas.Topic(sagas.Order), ev)); err != nil {
		t.Fatalf("publish poison: %v", err)
	}
	return id.String()
}

// TestConsolePagesInChromium runs the system with shipping held back (so sagas wait for it), checks the
// stuck sagas, then lets shipping run and checks every page with a confirmed and a compensated order.
func TestConsolePagesInChromium(t *testing.T) {
	chromiumPath(t) // skip or fail before setting anything up
	unique := testenv.Name(t, "c")
	ns := "ui" + unique[len(unique)-8:] + "_"
	cfg := systemConfig(t, ns, sagas.Shipping)
	base := runSystem(t, cfg)
	p := openPage(t)

	confirmed := place(t, base, "US")
	compensated := place(t, base, "XX")
	poisoned := poison(t, cfg.Brokers, ns)

	t.Run("sagas: a pending saga waits for shipping and is listed as stuck", func(t *testing.T) {
		p.t = t
		p.open(base + "/ui/sagas?older=1s&id=" + confirmed)
		p.waitFor("the saga to reach payment.authorized", `document.querySelector('#events tr[data-type="payment.authorized"]')`)
		if got := p.text("#status"); got != "PENDING" {
			t.Errorf("status %q, want PENDING", got)
		}
		p.waitFor("shipping to be expected next", `document.querySelector('#expected li[data-service="shipping"]')`)
		if got := p.text(`#expected li[data-service="shipping"]`); !strings.Contains(got, "schedule a shipment") || !strings.Contains(got, "waiting") {
			t.Errorf("expected step %q", got)
		}
		p.waitFor("both orders in the stuck list", fmt.Sprintf(`document.querySelector('#stuck-list tr[data-id="%s"]') && document.querySelector('#stuck-list tr[data-id="%s"]')`, confirmed, compensated))
	})

	// Shipping starts: the sagas finish.
	runSystem(t, systemConfig(t, ns, sagas.Order, sagas.Inventory, sagas.Payment, sagas.Notification, "orderview"))
	testenv.Eventually(t, 60*time.Second, "both orders to settle", func() bool {
		return status(t, base, confirmed) == "CONFIRMED" && status(t, base, compensated) == "CANCELLED"
	})

	t.Run("sagas: swimlanes of a compensated order", func(t *testing.T) {
		p.t = t
		p.open(base + "/ui/sagas?older=1h&id=" + compensated)
		p.waitFor("the compensations", `document.querySelector('#events tr.compensation[data-type="payment.refunded"]') && document.querySelector('#events tr.compensation[data-type="stock.released"]')`)
		if got := p.text("#status"); got != "CANCELLED: shipping_failed" {
			t.Errorf("status %q, want CANCELLED: shipping_failed", got)
		}
		// An arrow per event with its cause among the saga's events; compensations marked in the lanes.
		p.waitFor("arrows and marked boxes", `document.querySelectorAll('svg .arrow').length >= 6 && document.querySelectorAll('svg g.ev.compensation').length >= 2`)
		// Every event but the first has its cause among the saga's events.
		if n := p.eval(`[...document.querySelectorAll('#events tr.event')].filter(r => r.lastChild.textContent === '').length`); n != float64(1) {
			t.Errorf("%v events without a cause on the page, want 1 (order.placed)", n)
		}
		if n := p.eval(`document.querySelectorAll('#expected').length`); n != float64(0) {
			t.Errorf("a settled saga shows %v expected steps", n)
		}
		p.screenshot("sagas.png")
	})

	t.Run("flow: graph, lag, rates and outcomes", func(t *testing.T) {
		p.t = t
		p.open(base + "/ui/flow")
		p.waitFor("one confirmed and one shipping_failed outcome", `document.querySelector('#confirmed') && document.querySelector('#confirmed').textContent === "1" && document.querySelector('[data-reason="shipping_failed"] b') && document.querySelector('[data-reason="shipping_failed"] b').textContent === "1"`)
		for _, n := range []string{"client", "order", "inventory", "payment", "shipping", "notification", "orderview"} {
			if got := p.text(fmt.Sprintf(`g.node[data-node="%s"] .name`, n)); got != n {
				t.Errorf("node %s shows %q", n, got)
			}
		}
		// The outcome is projected before every group has committed its last offset: lag reaches 0 soon after.
		p.waitFor("the shipping node to show lag 0", `(n => n && n.textContent === "lag 0")(document.querySelector('g.node[data-node="shipping"] .lag'))`)
		if n, _ := p.eval(`document.querySelectorAll('#edges td.edge-type').length`).(float64); int(n) != countEdges() {
			t.Errorf("%v edges listed, want %d (one per event reaction of the saga)", n, countEdges())
		}
		if got := p.text("#latency tr:nth-child(2) td:first-child"); got != "2" {
			t.Errorf("latency over %q sagas, want 2", got)
		}
		p.waitFor("a rate on order.placed", `[...document.querySelectorAll('#edges tr')].some(r => r.children[1].textContent === 'order.placed' && r.children[4].textContent !== '0/s')`)
		p.screenshot("flow.png")
	})

	t.Run("topics: offsets, sizes and groups", func(t *testing.T) {
		p.t = t
		p.open(base + "/ui/topics")
		topic := ns + "order.events"
		p.waitFor("the order topic", fmt.Sprintf(`document.querySelector('tr.topic[data-topic="%s"]')`, topic))
		// placed, confirmed, cancelled, and the poison message.
		if got := p.text(fmt.Sprintf(`tr.topic[data-topic="%s"] td.messages`, topic)); got != "5" {
			t.Errorf("order.events holds %s messages, want 5", got)
		}
		p.waitFor("the shipping group caught up and stable", fmt.Sprintf(`(r => r && r.querySelector('.lag').textContent === "0" && r.querySelector('.state').textContent === "Stable")(document.querySelector('tr.group[data-group="%sshipping"]'))`, ns))
		if got := p.text(fmt.Sprintf(`tr.group[data-group="%spayment"] .members`, ns)); got != "1" {
			t.Errorf("payment group has %s members, want 1", got)
		}
		if got := p.text(fmt.Sprintf(`tr.topic[data-topic="%s"] td.size`, topic)); got == "" {
			t.Error("no size column")
		}
		p.screenshot("topics.png")
	})

	t.Run("messages: by key, with CloudEvents headers and the payload", func(t *testing.T) {
		p.t = t
		p.open(base + "/ui/messages?topic=" + ns + "order.events&key=" + compensated)
		p.waitFor("the order's two events", `document.querySelectorAll('#messages .msg').length === 2`)
		types := p.eval(`[...document.querySelectorAll('#messages .msg .type')].map(e => e.textContent).join(",")`)
		if types != "order.placed,order.cancelled" {
			t.Errorf("messages %v, want order.placed,order.cancelled", types)
		}
		if got := p.text("#messages .msg .ce tr td.mono"); got != "order.placed" {
			t.Errorf("first ce_ attribute %q, want ce_type order.placed", got)
		}
		if got := p.text("#messages .msg:nth-child(2) pre.payload"); !strings.Contains(got, "\n  \"reason\": \"shipping_failed\"") {
			t.Errorf("payload not pretty-printed JSON: %q", got)
		}
		p.screenshot("messages.png")

		// Tail: a new order's events appear without a reload.
		p.open(base + "/ui/messages?tail=1&topic=" + ns + "order.events")
		p.waitFor("the tail to start", `document.querySelector('#note').dataset.tailing === "1"`)
		id := place(t, base, "DE")
		p.waitFor("the new order's events in the tail", fmt.Sprintf(`[...document.querySelectorAll('#messages .msg .key')].some(k => k.textContent === %q)`, id))
	})

	t.Run("dead letters: listed per service, redrive needs the token", func(t *testing.T) {
		p.t = t
		p.open(base + "/ui/deadletters")
		for _, svc := range []string{sagas.Inventory, sagas.Payment, sagas.Shipping} {
			p.waitFor(svc+"'s dead letter", fmt.Sprintf(`document.querySelector('section[data-service="%s"] tr.letter')`, svc))
			if got := p.text(fmt.Sprintf(`section[data-service="%s"] tr.letter td.mono a`, svc)); got != poisoned {
				t.Errorf("%s dead letter key %q, want %s", svc, got, poisoned)
			}
			if got := p.text(fmt.Sprintf(`section[data-service="%s"] tr.letter .origin`, svc)); !strings.HasPrefix(got, ns+"order.events/") {
				t.Errorf("%s dead letter origin %q", svc, got)
			}
		}
		if got := p.text(`section[data-service="payment"] .dlq-error`); got == "" {
			t.Error("payment's dead letter shows no error")
		}
		p.screenshot("deadletters.png")
		p.eval(`(f => { f.querySelector('input[name=token]').value = 'wrong'; f.requestSubmit(); })(document.querySelector('section[data-service="payment"] form'))`)
		p.waitFor("the refusal", `document.querySelector('section[data-service="payment"] .result').textContent.includes('operator token')`)
		p.eval(fmt.Sprintf(`(f => { f.querySelector('input[name=token]').value = %q; f.requestSubmit(); })(document.querySelector('section[data-service="payment"] form'))`, token))
		p.waitFor("the redrive", `document.querySelector('section[data-service="payment"] .result') && document.querySelector('section[data-service="payment"] .result').textContent === "1 redriven"`)
	})
}

func countEdges() int {
	n := 0
	for _, r := range sagas.OrderSaga() {
		if r.IsEvent() || r.IsRequest() {
			n++
		}
	}
	return n
}
