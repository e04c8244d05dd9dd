package orderview_test

import (
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/sagas/orderview"
)

const hostileCustomer = `<script>alert("owned")</script>&co`

// failedSaga projects an order that fails at shipping and is compensated, placed by a hostile customer id.
func failedSaga(t *testing.T, f fixture) saga {
	t.Helper()
	s := newSaga(t)
	f.project(t,
		s.placed(0, hostileCustomer, events.Item{SKU: "mug", Quantity: 2}, events.Item{SKU: "tea", Quantity: 1}),
		s.reserved(120*time.Millisecond, 1750, events.PricedLine{SKU: "mug", Quantity: 2, PriceCents: 600}, events.PricedLine{SKU: "tea", Quantity: 1, PriceCents: 550}),
		s.event("payment", 250*time.Millisecond, events.PaymentAuthorized{OrderID: s.id, PaymentID: "pay-1", AmountCents: 1750}),
		s.event("shipping", 380*time.Millisecond, events.ShipmentFailed{OrderID: s.id, Reason: "country not served"}),
		s.cancelled(450*time.Millisecond, events.ReasonShippingFailed),
		s.event("inventory", 510*time.Millisecond, events.StockReleased{OrderID: s.id, Reason: events.ReasonShippingFailed}),
		s.event("payment", 530*time.Millisecond, events.PaymentRefunded{OrderID: s.id, PaymentID: "pay-1", AmountCents: 1750, Reason: events.ReasonShippingFailed}),
		s.event("notification", 700*time.Millisecond, events.NotificationSent{OrderID: s.id, Outcome: "order.cancelled", Channel: "log"}),
	)
	return s
}

var failedSagaTypes = []string{
	"order.placed", "stock.reserved", "payment.authorized", "shipment.failed", "order.cancelled", "stock.released",
	"payment.refunded", "notification.sent",
}

var (
	entryPattern = regexp.MustCompile(`<li class="event( compensation)?" data-type="([^"]+)"`)
	stylePattern = regexp.MustCompile(`(?s)<style>(.*?)</style>`)
)

func TestOrderPage(t *testing.T) {
	t.Parallel()
	f := newFixture(t, orderview.Config{})
	s := failedSaga(t, f)

	status, h, b := f.fetch(t, "/orders/"+s.id)
	body := string(b)
	if status != http.StatusOK || h.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("status %d, content type %q; body %s", status, h.Get("Content-Type"), body)
	}
	for _, want := range []string{
		`<span class="badge cancelled" id="status">CANCELLED</span>`,
		`<span class="reason" id="reason">shipping_failed</span>`,
		`<td><code>mug</code></td><td class="num">2</td><td class="num">6.00</td><td class="num">12.00</td>`,
		`<td><code>tea</code></td><td class="num">1</td><td class="num">5.50</td><td class="num">5.50</td>`,
		`<td class="num" id="total">17.50</td>`,
		`<dd id="customer">&lt;script&gt;alert(&#34;owned&#34;)&lt;/script&gt;&amp;co</dd>`,
		`<span class="source">inventory</span> <span class="type">stock.released</span> <span class="tag">compensation</span>`,
		`<time datetime="2031-03-14T09:26:53.839Z">2031-03-14 09:26:53.839 UTC</time> <span class="since">&#43;250ms</span>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %s", want)
		}
	}
	for _, banned := range []string{"<script", "style=", "<link", "src=", "http://", "https://", `http-equiv="refresh"`} {
		if strings.Contains(body, banned) {
			t.Errorf("page contains %q", banned)
		}
	}
	var types, compensations []string
	for _, m := range entryPattern.FindAllStringSubmatch(body, -1) {
		types = append(types, m[2])
		if m[1] != "" {
			compensations = append(compensations, m[2])
		}
	}
	if !slices.Equal(types, failedSagaTypes) {
		t.Errorf("timeline %v, want %v", types, failedSagaTypes)
	}
	if want := []string{"stock.released", "payment.refunded"}; !slices.Equal(compensations, want) {
		t.Errorf("compensations marked: %v, want %v", compensations, want)
	}

	// The one inline stylesheet is allowed by its hash, and nothing else is.
	style := stylePattern.FindStringSubmatch(body)
	if style == nil {
		t.Fatal("no <style> element")
	}
	sum := sha256.Sum256([]byte(style[1]))
	csp := h.Get("Content-Security-Policy")
	if !strings.Contains(csp, "style-src 'sha256-"+base64.StdEncoding.EncodeToString(sum[:])+"'") || !strings.HasPrefix(csp, "default-src 'none'") {
		t.Errorf("Content-Security-Policy %q does not allow exactly the page's stylesheet", csp)
	}
	if h.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("X-Content-Type-Options %q", h.Get("X-Content-Type-Options"))
	}
}

func TestPendingOrderPageRefreshes(t *testing.T) {
	t.Parallel()
	f := newFixture(t, orderview.Config{})
	s := newSaga(t)
	f.project(t, s.placed(0, "c", events.Item{SKU: "mug", Quantity: 1}))
	_, _, b := f.fetch(t, "/orders/"+s.id)
	body := string(b)
	for _, want := range []string{`<meta http-equiv="refresh" content="2">`, `<span class="badge pending" id="status">PENDING</span>`, `<td class="num" id="total">—</td>`} {
		if !strings.Contains(body, want) {
			t.Errorf("pending order page lacks %s", want)
		}
	}
}

func TestPageErrors(t *testing.T) {
	t.Parallel()
	f := newFixture(t, orderview.Config{})
	for _, tt := range []struct {
		path   string
		status int
	}{
		{"/orders/" + newSaga(t).id, http.StatusNotFound},
		{"/orders/%3Cscript%3E", http.StatusNotFound},
		{"/orders?status=%3Cscript%3E", http.StatusBadRequest},
		{"/orders?cursor=zzz", http.StatusBadRequest},
	} {
		t.Run(tt.path, func(t *testing.T) {
			status, h, b := f.fetch(t, tt.path)
			if status != tt.status || !strings.HasPrefix(h.Get("Content-Type"), "text/html") {
				t.Fatalf("status %d, content type %q, want %d HTML", status, h.Get("Content-Type"), tt.status)
			}
			if strings.Contains(string(b), "<script") {
				t.Fatalf("error page reflects markup: %s", b)
			}
		})
	}
}

func TestListPage(t *testing.T) {
	t.Parallel()
	f := newFixture(t, orderview.Config{})
	failed := failedSaga(t, f)
	pending := newSaga(t)
	f.project(t, pending.placed(time.Minute, "bob", events.Item{SKU: "mug", Quantity: 1}))

	status, _, b := f.fetch(t, "/orders")
	body := string(b)
	if status != http.StatusOK {
		t.Fatalf("status %d", status)
	}
	first, second := strings.Index(body, `href="/orders/`+pending.id+`"`), strings.Index(body, `href="/orders/`+failed.id+`"`)
	if first < 0 || second < 0 || first > second {
		t.Fatalf("the list does not link both orders newest first: %s", body)
	}
	if strings.Contains(body, "<script") || !strings.Contains(body, "&lt;script&gt;") {
		t.Fatalf("the hostile customer id is not escaped: %s", body)
	}

	_, _, b = f.fetch(t, "/orders?status=PENDING")
	if body := string(b); !strings.Contains(body, pending.id) || strings.Contains(body, failed.id) {
		t.Fatalf("status filter: %s", body)
	}
}
