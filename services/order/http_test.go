package order_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/internal/host"
	"github.com/choreo-dev/choreo/internal/testing/testenv"
	"github.com/choreo-dev/choreo/services/order"
)

func TestMain(m *testing.M) { testenv.Main(m) }

type fixture struct {
	unit *host.Unit
	url  string
}

func newFixture(t *testing.T) fixture {
	t.Helper()
	reg, err := events.Catalog()
	if err != nil {
		t.Fatal(err)
	}
	u, err := host.Open(context.Background(), order.Spec(order.Config{Deadline: time.Minute}), testenv.DatabaseURL(t), testenv.Kafka(t), reg, testenv.Logger(t), host.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(u.Close)
	mux := http.NewServeMux()
	u.Routes(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return fixture{unit: u, url: srv.URL}
}

func (f fixture) post(t *testing.T, body string, header map[string]string) (*http.Response, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest("POST", f.url+"/v1/orders", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return resp, m
}

func (f fixture) rows(t *testing.T, table string) int {
	t.Helper()
	var n int
	if err := f.unit.Pool().QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

const valid = `{"customer_id":"alice","items":[{"sku":"KB-001","quantity":2}],"payment_token":"tok_visa",
"shipping_address":{"name":"Alice","line1":"1 Main St","city":"Springfield","postal_code":"12345","country":"US"}}`

func withItems(n int) string {
	items := make([]string, n)
	for i := range items {
		items[i] = fmt.Sprintf(`{"sku":"S-%d","quantity":1}`, i)
	}
	return strings.Replace(valid, `[{"sku":"KB-001","quantity":2}]`, "["+strings.Join(items, ",")+"]", 1)
}

func TestPlaceRejectsBadInputAndWritesNothing(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	cases := []struct {
		name, body, contentType string
		status                  int
		mention                 string
	}{
		{"malformed json", `{"customer_id":`, "application/json", 400, "truncated"},
		{"not an object", `[1,2]`, "application/json", 400, ""},
		{"two objects", valid + valid, "application/json", 400, "single JSON object"},
		{"unknown field", strings.Replace(valid, `"customer_id"`, `"coupon":"x","customer_id"`, 1), "application/json", 400, "coupon"},
		{"missing customer", strings.Replace(valid, `"customer_id":"alice",`, "", 1), "application/json", 400, "customer_id"},
		{"missing address", strings.Replace(valid, `"country":"US"`, `"country":""`, 1), "application/json", 400, "shipping_address.country"},
		{"zero quantity", strings.Replace(valid, `"quantity":2`, `"quantity":0`, 1), "application/json", 400, "items[0].quantity"},
		{"negative quantity", strings.Replace(valid, `"quantity":2`, `"quantity":-3`, 1), "application/json", 400, "items[0].quantity"},
		{"no items", strings.Replace(valid, `[{"sku":"KB-001","quantity":2}]`, `[]`, 1), "application/json", 400, "items"},
		{"101 lines", withItems(101), "application/json", 400, "at most 100"},
		{"sku twice", strings.Replace(valid, `[{"sku":"KB-001","quantity":2}]`, `[{"sku":"A","quantity":1},{"sku":"A","quantity":1}]`, 1), "application/json", 400, "listed twice"},
		{"wrong type", strings.Replace(valid, `"quantity":2`, `"quantity":"2"`, 1), "application/json", 400, "quantity"},
		{"over 1 MiB", strings.Replace(valid, `"alice"`, `"`+strings.Repeat("a", 1<<20)+`"`, 1), "application/json", 413, "exceeds"},
		{"form content type", valid, "application/x-www-form-urlencoded", 415, "application/json"},
		{"no content type", valid, "", 415, "application/json"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, problem := f.post(t, tc.body, map[string]string{"Content-Type": tc.contentType})
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d; body %v", resp.StatusCode, tc.status, problem)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
				t.Fatalf("content type %q, want application/problem+json", ct)
			}
			if problem["status"] != float64(tc.status) || problem["title"] == "" || problem["type"] == "" {
				t.Fatalf("not an RFC 9457 problem: %v", problem)
			}
			if text := fmt.Sprint(problem); !strings.Contains(text, tc.mention) {
				t.Fatalf("problem %v does not mention %q", problem, tc.mention)
			}
		})
	}
	if n, m := f.rows(t, "orders"), f.rows(t, "outbox"); n != 0 || m != 0 {
		t.Fatalf("bad requests wrote %d orders and %d outbox rows", n, m)
	}
}

func TestPlaceWritesOrderAndEventTogether(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	resp, body := f.post(t, valid, nil)
	if resp.StatusCode != http.StatusAccepted || body["status"] != "PENDING" {
		t.Fatalf("%d %v", resp.StatusCode, body)
	}
	if loc := resp.Header.Get("Location"); loc != "/v1/orders/"+body["id"].(string) {
		t.Fatalf("Location %q", loc)
	}
	if n, m := f.rows(t, "orders"), f.rows(t, "outbox"); n != 1 || m != 1 {
		t.Fatalf("%d orders and %d outbox rows, want 1 and 1", n, m)
	}
}

func TestIdempotencyKey(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	key := map[string]string{"Idempotency-Key": "retry-me"}
	_, first := f.post(t, valid, key)
	resp, again := f.post(t, valid, key)
	if resp.StatusCode != http.StatusAccepted || again["id"] != first["id"] {
		t.Fatalf("retry answered %d %v, want the first order %v", resp.StatusCode, again, first["id"])
	}
	resp, problem := f.post(t, strings.Replace(valid, `"quantity":2`, `"quantity":3`, 1), key)
	if resp.StatusCode != http.StatusUnprocessableEntity {
		t.Fatalf("same key, other body: %d %v, want 422", resp.StatusCode, problem)
	}

	// Concurrent retries with one key create one order.
	var wg sync.WaitGroup
	ids := make([]any, 8)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, b := f.post(t, valid, map[string]string{"Idempotency-Key": "burst"})
			ids[i] = b["id"]
		}()
	}
	wg.Wait()
	for _, id := range ids {
		if id == nil || id != ids[0] {
			t.Fatalf("concurrent retries got ids %v", ids)
		}
	}
	if n := f.rows(t, "orders"); n != 2 {
		t.Fatalf("%d orders, want 2 (one per key)", n)
	}
	if n := f.rows(t, "outbox"); n != 2 {
		t.Fatalf("%d order.placed events, want 2", n)
	}
}

func TestExpiredIdempotencyKeysAreForgotten(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	_, old := f.post(t, valid, map[string]string{"Idempotency-Key": "yesterday"})
	_, fresh := f.post(t, valid, map[string]string{"Idempotency-Key": "today"})
	if _, err := f.unit.Pool().Exec(context.Background(), `UPDATE idempotency_keys SET created_at = now() - interval '25 hours' WHERE key = 'yesterday'`); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.unit.Run(ctx) }() // the sweeper prunes when it starts, then hourly
	defer func() { cancel(); <-done }()
	testenv.Eventually(t, 20*time.Second, "the day-old key to be forgotten", func() bool { return f.rows(t, "idempotency_keys") == 1 })

	_, again := f.post(t, valid, map[string]string{"Idempotency-Key": "yesterday"})
	_, same := f.post(t, valid, map[string]string{"Idempotency-Key": "today"})
	if again["id"] == old["id"] || same["id"] != fresh["id"] {
		t.Fatalf("after pruning: yesterday's key gave %v (was %v), today's gave %v (was %v)", again["id"], old["id"], same["id"], fresh["id"])
	}
}
