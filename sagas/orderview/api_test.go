package orderview_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/internal/httpapi"
	"github.com/choreo-dev/choreo/sagas/orderview"
)

func TestGetOrderJSONContract(t *testing.T) {
	t.Parallel()
	f := newFixture(t, orderview.Config{})
	s := newSaga(t)
	f.project(t,
		s.placed(0, "cust-7", events.Item{SKU: "mug", Quantity: 2}),
		s.event("inventory", time.Second, events.StockRejected{OrderID: s.id, Reason: "not enough", SKU: "mug"}),
		s.cancelled(2*time.Second, events.ReasonOutOfStock),
	)
	var body map[string]any
	if status := f.getJSON(t, "/v1/orders/"+s.id, &body); status != http.StatusOK {
		t.Fatalf("status %d, want 200", status)
	}
	for _, k := range []string{"id", "customer_id", "status", "reason", "items", "total_cents", "created_at", "updated_at", "timeline"} {
		if _, ok := body[k]; !ok {
			t.Errorf("field %q missing from %v", k, body)
		}
	}
	items := body["items"].([]any)
	for _, k := range []string{"sku", "quantity", "price_cents"} {
		if _, ok := items[0].(map[string]any)[k]; !ok {
			t.Errorf("items[0] has no %q: %v", k, items[0])
		}
	}
	timeline := body["timeline"].([]any)
	for _, k := range []string{"type", "source", "time"} {
		if _, ok := timeline[0].(map[string]any)[k]; !ok {
			t.Errorf("timeline[0] has no %q: %v", k, timeline[0])
		}
	}
	if body["id"] != s.id || body["customer_id"] != "cust-7" || body["status"] != "CANCELLED" || body["reason"] != "out_of_stock" ||
		body["created_at"] != base.Format(time.RFC3339Nano) || body["updated_at"] != base.Add(2*time.Second).Format(time.RFC3339Nano) ||
		len(timeline) != 3 || timeline[1].(map[string]any)["type"] != "stock.rejected" || timeline[1].(map[string]any)["source"] != "inventory" {
		t.Fatalf("body %v", body)
	}
	if body["total_cents"] != nil || items[0].(map[string]any)["price_cents"] != nil {
		t.Fatalf("an order never priced has total_cents %v, price_cents %v; want null", body["total_cents"], items[0].(map[string]any)["price_cents"])
	}

	// A confirmed order has reason "" rather than no reason field.
	c := newSaga(t)
	f.project(t, c.placed(0, "cust-8", events.Item{SKU: "mug", Quantity: 1}), c.confirmed(time.Second))
	body = nil
	f.getJSON(t, "/v1/orders/"+c.id, &body)
	if r, ok := body["reason"]; !ok || r != "" {
		t.Fatalf("reason of a confirmed order: %v (present %v), want \"\"", r, ok)
	}
}

func TestNotFoundProblems(t *testing.T) {
	t.Parallel()
	f := newFixture(t, orderview.Config{})
	partial := newSaga(t)
	f.project(t, partial.reserved(0, 1, events.PricedLine{SKU: "a", Quantity: 1, PriceCents: 1}))
	for name, id := range map[string]string{
		"unknown":    newSaga(t).id,
		"malformed":  "not-an-id",
		"not placed": partial.id,
		"sql-ish":    "1%27%20OR%201=1",
		"nil uuid":   "00000000-0000-0000-0000-000000000000",
	} {
		t.Run(name, func(t *testing.T) {
			status, h, body := f.fetch(t, "/v1/orders/"+id)
			if status != http.StatusNotFound || h.Get("Content-Type") != "application/problem+json" {
				t.Fatalf("status %d, content type %q, want 404 application/problem+json", status, h.Get("Content-Type"))
			}
			var p httpapi.Problem
			if err := json.Unmarshal(body, &p); err != nil || p.Status != http.StatusNotFound || p.Title != "Not Found" || p.Detail == "" {
				t.Fatalf("problem %s (%v)", body, err)
			}
		})
	}
}

func TestListBadRequests(t *testing.T) {
	t.Parallel()
	f := newFixture(t, orderview.Config{})
	for _, tt := range []struct{ query, field string }{
		{"status=pending", "status"},
		{"status=SHIPPED", "status"},
		{"limit=0", "limit"},
		{"limit=101", "limit"},
		{"limit=-1", "limit"},
		{"limit=ten", "limit"},
		{"cursor=%21%21%21", "cursor"},
		{"cursor=" + url.QueryEscape("bm90IGEgY3Vyc29y"), "cursor"}, // base64 of "not a cursor"
		{"cursor=MTIzLm5vdC1hLXV1aWQ", "cursor"},                    // "123.not-a-uuid"
	} {
		t.Run(tt.query, func(t *testing.T) {
			status, h, body := f.fetch(t, "/v1/orders?"+tt.query)
			if status != http.StatusBadRequest || h.Get("Content-Type") != "application/problem+json" {
				t.Fatalf("status %d, content type %q, want 400 application/problem+json; body %s", status, h.Get("Content-Type"), body)
			}
			var p httpapi.Problem
			if err := json.Unmarshal(body, &p); err != nil || p.Status != http.StatusBadRequest || len(p.Errors) != 1 || p.Errors[0].Field != tt.field {
				t.Fatalf("problem %s (%v), want one error about %s", body, err, tt.field)
			}
		})
	}
}

// listing is what the list endpoint returns.
type listing struct {
	Orders []orderview.Order `json:"orders"`
	Next   *string           `json:"next"`
}

// pages follows next from the first page of query to the last and returns the ids in order.
func (f fixture) pages(t *testing.T, query string, between func(page int)) ([]string, int) {
	t.Helper()
	var ids []string
	cursor := ""
	for page := 1; ; page++ {
		q, _ := url.ParseQuery(query)
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		var l listing
		if status := f.getJSON(t, "/v1/orders?"+q.Encode(), &l); status != http.StatusOK {
			t.Fatalf("page %d of %q: status %d", page, query, status)
		}
		if l.Next == nil || l.Orders == nil {
			t.Fatalf("page %d of %q: next or orders missing", page, query)
		}
		for _, o := range l.Orders {
			ids = append(ids, o.ID.String())
			if o.Timeline != nil {
				t.Fatalf("list returned a timeline")
			}
		}
		if *l.Next == "" {
			return ids, page
		}
		if page > 100 {
			t.Fatalf("more than 100 pages for %q", query)
		}
		cursor = *l.Next
		if between != nil {
			between(page)
		}
	}
}

func TestListNewestFirstWithFiltersAndPages(t *testing.T) {
	t.Parallel()
	f := newFixture(t, orderview.Config{})
	type placed struct {
		id, customer, status string
		at                   time.Duration
	}
	var all []placed
	for i := range 11 {
		s := newSaga(t)
		at := time.Duration(i) * time.Minute
		if i == 4 || i == 5 || i == 6 {
			at = 4 * time.Minute // a tie on created_at: id decides
		}
		p := placed{id: s.id, customer: []string{"alice", "bob"}[i%2], status: orderview.Pending, at: at}
		f.project(t, s.placed(at, p.customer, events.Item{SKU: "a", Quantity: 1}))
		switch i % 3 {
		case 1:
			f.project(t, s.confirmed(at+time.Second))
			p.status = orderview.Confirmed
		case 2:
			f.project(t, s.cancelled(at+time.Second, events.ReasonExpired))
			p.status = orderview.Cancelled
		}
		all = append(all, p)
	}
	// An order not placed yet is in no listing.
	f.project(t, newSaga(t).reserved(time.Hour, 1, events.PricedLine{SKU: "a", Quantity: 1, PriceCents: 1}))
	sort.Slice(all, func(i, j int) bool {
		if all[i].at != all[j].at {
			return all[i].at > all[j].at
		}
		return all[i].id > all[j].id
	})
	want := func(keep func(placed) bool) []string {
		var ids []string
		for _, p := range all {
			if keep(p) {
				ids = append(ids, p.id)
			}
		}
		return ids
	}

	for _, tt := range []struct {
		query string
		keep  func(placed) bool
	}{
		{"limit=3", func(placed) bool { return true }},
		{"limit=1", func(placed) bool { return true }},
		{"limit=100", func(placed) bool { return true }},
		{"", func(placed) bool { return true }},
		{"limit=2&status=CONFIRMED", func(p placed) bool { return p.status == orderview.Confirmed }},
		{"limit=2&status=PENDING&customer_id=alice", func(p placed) bool { return p.status == orderview.Pending && p.customer == "alice" }},
		{"limit=4&customer_id=bob", func(p placed) bool { return p.customer == "bob" }},
		{"customer_id=nobody", func(placed) bool { return false }},
	} {
		t.Run(tt.query, func(t *testing.T) {
			got, pages := f.pages(t, tt.query, nil)
			w := want(tt.keep)
			if !slices.Equal(got, w) {
				t.Fatalf("ids over %d pages:\n got %v\nwant %v", pages, got, w)
			}
			q, _ := url.ParseQuery(tt.query)
			limit := orderview.DefaultLimit
			fmt.Sscan(q.Get("limit"), &limit)
			if wantPages := max(1, (len(w)+limit-1)/limit); pages != wantPages {
				t.Fatalf("%d pages, want %d", pages, wantPages)
			}
		})
	}

	t.Run("cursor is stable under new orders", func(t *testing.T) {
		got, _ := f.pages(t, "limit=3", func(page int) {
			if page == 1 {
				n := newSaga(t)
				f.project(t, n.placed(time.Hour, "carol", events.Item{SKU: "a", Quantity: 1}))
			}
		})
		if w := want(func(placed) bool { return true }); !slices.Equal(got, w) {
			t.Fatalf("ids while an order was placed between pages:\n got %v\nwant %v", got, w)
		}
	})
}

func TestListDefaultLimit(t *testing.T) {
	t.Parallel()
	f := newFixture(t, orderview.Config{})
	for i := range orderview.DefaultLimit + 1 {
		f.project(t, newSaga(t).placed(time.Duration(i)*time.Second, "c", events.Item{SKU: "a", Quantity: 1}))
	}
	var l listing
	f.getJSON(t, "/v1/orders", &l)
	if len(l.Orders) != orderview.DefaultLimit || l.Next == nil || *l.Next == "" {
		t.Fatalf("%d orders, next %v; want %d and a next cursor", len(l.Orders), l.Next, orderview.DefaultLimit)
	}
	if strings.ContainsAny(*l.Next, "+/=") {
		t.Fatalf("cursor %q is not URL-safe", *l.Next)
	}
}
