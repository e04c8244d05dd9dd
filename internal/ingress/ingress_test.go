package ingress

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

// upstream answers every request with its own name, method and path.
func upstream(t *testing.T, name string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, name+" "+r.Method+" "+r.URL.RequestURI())
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestRoutesEachPathToItsOwner(t *testing.T) {
	h, err := New(Upstreams{Order: upstream(t, "order"), OrderView: upstream(t, "orderview"), Inventory: upstream(t, "inventory"), Customer: upstream(t, "customer")}, nil, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	cases := []struct{ method, path, want string }{
		{"POST", "/v1/orders", "order POST /v1/orders"},
		{"GET", "/v1/orders?status=PENDING&limit=5", "orderview GET /v1/orders?status=PENDING&limit=5"},
		{"GET", "/v1/orders/abc", "orderview GET /v1/orders/abc"},
		{"GET", "/orders/abc", "orderview GET /orders/abc"},
		{"GET", "/v1/products", "inventory GET /v1/products"},
		{"PUT", "/v1/products/KB-1", "inventory PUT /v1/products/KB-1"},
		{"POST", "/v1/customers", "customer POST /v1/customers"},
		{"POST", "/v1/tokens", "customer POST /v1/tokens"},
		{"GET", "/.well-known/jwks.json", "customer GET /.well-known/jwks.json"},
		{"GET", "/v1/customers/me", "customer GET /v1/customers/me"},
		{"PATCH", "/v1/customers/me", "customer PATCH /v1/customers/me"},
		{"PUT", "/v1/customers/c1/credit-limit", "customer PUT /v1/customers/c1/credit-limit"},
		{"POST", "/v1/customers/c1/block", "customer POST /v1/customers/c1/block"},
	}
	for _, c := range cases {
		req, _ := http.NewRequest(c.method, srv.URL+c.path, strings.NewReader("{}"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != c.want {
			t.Errorf("%s %s reached %q, want %q", c.method, c.path, body, c.want)
		}
	}
	resp, err := http.Post(srv.URL+"/v1/products", "application/json", nil) // no such route
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /v1/products: %d, want 405", resp.StatusCode)
	}
}

// TestUnavailableUpstreamIsA502Problem: an upstream that drops every connection (kept listening: the port
// of a closed test server can be taken by another test's server meanwhile, which answered 200 once).
func TestUnavailableUpstreamIsA502Problem(t *testing.T) {
	dead := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if c, _, err := http.NewResponseController(w).Hijack(); err == nil {
			c.Close()
		}
	}))
	defer dead.Close()
	deadURL := dead.URL
	h, err := New(Upstreams{Order: deadURL, OrderView: upstream(t, "orderview"), Inventory: upstream(t, "inventory"), Customer: upstream(t, "customer")}, nil, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Post(srv.URL+"/v1/orders", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var p map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&p)
	if resp.StatusCode != http.StatusBadGateway || resp.Header.Get("Content-Type") != "application/problem+json" || p["status"] != float64(502) {
		t.Fatalf("%d %s %v, want a 502 problem", resp.StatusCode, resp.Header.Get("Content-Type"), p)
	}
	ready, err := http.Get(srv.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	ready.Body.Close()
	if ready.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("/readyz with a dead upstream: %d, want 503", ready.StatusCode)
	}
}

func TestRejectsRelativeUpstream(t *testing.T) {
	if _, err := New(Upstreams{Order: "order:8080", OrderView: "http://x", Inventory: "http://y", Customer: "http://z"}, nil, zerolog.Nop()); err == nil {
		t.Fatal("an upstream without scheme was accepted")
	}
}
