package system_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/choreo-dev/choreo/cmd/choreo/system"
	"github.com/choreo-dev/choreo/internal/auth"
	"github.com/choreo-dev/choreo/internal/host"
	"github.com/choreo-dev/choreo/internal/ingress"
	"github.com/choreo-dev/choreo/internal/testing/testenv"
)

const testSecret = "e2e-only-secret-0123456789abcdef0123"

// bearer is an Authorization header of a token for sub with roles.
func bearer(t *testing.T, sub string, roles ...string) map[string]string {
	t.Helper()
	tok, err := auth.Sign(testSecret, sub, roles, time.Hour, "", "")
	if err != nil {
		t.Fatal(err)
	}
	return map[string]string{"Authorization": "Bearer " + tok}
}

// client calls a base URL as one caller.
type client struct {
	h      *harness
	base   string
	header map[string]string
}

func (c client) do(method, path string, body any) (int, []byte, http.Header) {
	c.h.t.Helper()
	return c.h.doAt(c.base, method, path, body, c.header)
}

func (c client) place(req orderRequest) string {
	c.h.t.Helper()
	code, body, _ := c.do("POST", "/v1/orders", req)
	if code != http.StatusAccepted {
		c.h.t.Fatalf("place order as %v: %d %s", c.header, code, body)
	}
	var placed struct{ ID string }
	if err := json.Unmarshal(body, &placed); err != nil || placed.ID == "" {
		c.h.t.Fatalf("place order answered %s (%v)", body, err)
	}
	return placed.ID
}

// listIDs is the ids of the orders GET /v1/orders shows the caller (one page of up to 100).
func (c client) listIDs(query string) []string {
	c.h.t.Helper()
	code, body, _ := c.do("GET", "/v1/orders?limit=100"+query, nil)
	if code != http.StatusOK {
		c.h.t.Fatalf("list orders: %d %s", code, body)
	}
	var page struct{ Orders []orderView }
	if err := json.Unmarshal(body, &page); err != nil {
		c.h.t.Fatal(err)
	}
	var ids []string
	for _, o := range page.Orders {
		ids = append(ids, o.ID)
	}
	return ids
}

func (c client) order(id string) (int, orderView) {
	c.h.t.Helper()
	code, body, _ := c.do("GET", "/v1/orders/"+id, nil)
	var o orderView
	if code == http.StatusOK {
		if err := json.Unmarshal(body, &o); err != nil {
			c.h.t.Fatal(err)
		}
	}
	return code, o
}

// expectChallenge checks a 401 problem+json with a Bearer challenge (with error="invalid_token" when invalid).
func expectChallenge(t *testing.T, what string, code int, body []byte, hdr http.Header, invalid bool) {
	t.Helper()
	challenge := hdr.Get("WWW-Authenticate")
	if code != http.StatusUnauthorized || hdr.Get("Content-Type") != "application/problem+json" || !strings.HasPrefix(challenge, "Bearer ") {
		t.Errorf("%s: %d %s %q, challenge %q; want 401 problem+json with a Bearer challenge", what, code, hdr.Get("Content-Type"), body, challenge)
	}
	if invalid != strings.Contains(challenge, `error="invalid_token"`) {
		t.Errorf("%s: challenge %q (invalid token: %v)", what, challenge, invalid)
	}
}

// TestAuthorization drives the authorization rules end to end through the real handlers, in the
// all-in-one mode (system.Handler) and behind the ingress with each API unit serving on its own.
func TestAuthorization(t *testing.T) {
	cfg := baseConfig(t)
	cfg.Auth = auth.Config{HMACSecret: testSecret, OperatorToken: "e2e-operator-token"}
	cfg.RateLimit = 0.001 // one order, then none for about 17 minutes: the second is refused, deterministically
	h := start(t, cfg)
	if !h.sys.Authenticated() {
		t.Fatal("system with an HMAC secret is not authenticated")
	}
	// system.APIs (whose commands refuse to start open) are exactly the units with an HTTP API.
	for _, spec := range system.Specs(cfg) {
		_, api := h.sys.Unit(spec.Name).Service().(host.HTTPService)
		if api != slices.Contains(system.APIs(), spec.Name) {
			t.Errorf("unit %s serves an HTTP API: %v; listed in system.APIs: %v", spec.Name, api, !api)
		}
	}
	anon := client{h: h, base: h.url}
	alice := client{h: h, base: h.url, header: bearer(t, "alice")}
	bob := client{h: h, base: h.url, header: bearer(t, "bob")}
	mallory := client{h: h, base: h.url, header: bearer(t, "mallory")}
	olga := client{h: h, base: h.url, header: bearer(t, "olga", auth.RoleOperator)}
	opToken := client{h: h, base: h.url, header: map[string]string{"Authorization": "Bearer e2e-operator-token"}}
	item := sku(t)

	// Open routes stay open; the rest need a token.
	for _, path := range []string{"/v1/products", "/healthz", "/metrics"} {
		if code, body, _ := anon.do("GET", path, nil); code != http.StatusOK {
			t.Errorf("GET %s without a token: %d %s", path, code, body)
		}
	}
	for _, c := range []struct{ method, path string }{{"GET", "/v1/orders"}, {"GET", "/v1/orders/0190a2b4-0000-7000-8000-000000000000"}, {"GET", "/orders"}, {"POST", "/v1/orders"}, {"PUT", "/v1/products/" + item}} {
		code, body, hdr := anon.do(c.method, c.path, newOrder("", item, 1, "tok_visa", "US"))
		expectChallenge(t, c.method+" "+c.path+" without a token", code, body, hdr, false)
	}
	code, body, hdr := client{h: h, base: h.url, header: map[string]string{"Authorization": "Bearer " + strings.Repeat("x", 40)}}.do("GET", "/v1/orders", nil)
	expectChallenge(t, "a forged token", code, body, hdr, true)

	// Only an operator changes the catalog: the operator token or a token with the operator role.
	product := map[string]any{"name": "Thing", "price_cents": 500, "stock": 100}
	if code, body, _ := alice.do("PUT", "/v1/products/"+item, product); code != http.StatusForbidden {
		t.Errorf("customer changes the catalog: %d %s", code, body)
	}
	for _, op := range []client{opToken, olga} {
		if code, body, _ := op.do("PUT", "/v1/products/"+item, product); code != http.StatusOK {
			t.Fatalf("operator changes the catalog: %d %s", code, body)
		}
	}

	// The token's subject is the customer.
	aliceOrder := alice.place(newOrder("", item, 1, "tok_visa", "US")) // filled in from the token
	bobOrder := bob.place(newOrder("bob", item, 1, "tok_visa", "US"))
	code, body, _ = mallory.do("POST", "/v1/orders", newOrder("bob", item, 1, "tok_visa", "US"))
	if code != http.StatusForbidden || !strings.Contains(string(body), `"status":403`) {
		t.Errorf("mallory orders as bob: %d %s; want 403 problem+json", code, body)
	}
	testenv.Eventually(t, 30*time.Second, "both orders in the read model", func() bool {
		a, _ := olga.order(aliceOrder)
		b, _ := olga.order(bobOrder)
		return a == http.StatusOK && b == http.StatusOK
	})
	if code, o := alice.order(aliceOrder); code != http.StatusOK || o.CustomerID != "alice" {
		t.Errorf("alice reads her order: %d, customer %q", code, o.CustomerID)
	}

	checkScoping := func(t *testing.T, alice, bob, olga client) {
		t.Helper()
		if code, _ := alice.order(bobOrder); code != http.StatusNotFound {
			t.Errorf("alice reads bob's order: %d, want 404", code)
		}
		if code, _ := bob.order(bobOrder); code != http.StatusOK {
			t.Errorf("bob reads his order: %d", code)
		}
		if code, body, _ := alice.do("GET", "/orders/"+bobOrder, nil); code != http.StatusNotFound || strings.Contains(string(body), bobOrder) {
			t.Errorf("alice opens bob's timeline page: %d", code)
		}
		if code, body, _ := alice.do("GET", "/orders", nil); code != http.StatusOK || !strings.Contains(string(body), aliceOrder) || strings.Contains(string(body), bobOrder) {
			t.Errorf("alice's order list page: %d; shows her order %v, bob's %v", code, strings.Contains(string(body), aliceOrder), strings.Contains(string(body), bobOrder))
		}
		if ids := alice.listIDs(""); !slices.Contains(ids, aliceOrder) || slices.Contains(ids, bobOrder) {
			t.Errorf("alice lists %v; want hers (%s), not bob's (%s)", ids, aliceOrder, bobOrder)
		}
		if ids := alice.listIDs("&customer_id=bob"); len(ids) != 0 {
			t.Errorf("alice lists bob's orders: %v", ids)
		}
		if ids := olga.listIDs(""); !slices.Contains(ids, aliceOrder) || !slices.Contains(ids, bobOrder) {
			t.Errorf("the operator lists %v; want both orders", ids)
		}
		if code, o := olga.order(bobOrder); code != http.StatusOK || o.CustomerID != "bob" {
			t.Errorf("the operator reads bob's order: %d %q", code, o.CustomerID)
		}
	}
	t.Run("all-in-one", func(t *testing.T) { checkScoping(t, alice, bob, olga) })

	t.Run("rate limit", func(t *testing.T) {
		code, body, hdr := alice.do("POST", "/v1/orders", newOrder("", item, 1, "tok_visa", "US"))
		if s, err := strconv.Atoi(hdr.Get("Retry-After")); code != http.StatusTooManyRequests || err != nil || s < 1 || hdr.Get("Content-Type") != "application/problem+json" {
			t.Errorf("alice's second order at once: %d %s, Retry-After %q; want 429 problem+json with Retry-After", code, body, hdr.Get("Retry-After"))
		}
		carol := client{h: h, base: h.url, header: bearer(t, "carol")}
		carol.place(newOrder("", item, 1, "tok_visa", "US")) // another client is not affected
	})

	t.Run("ingress", func(t *testing.T) {
		// Each API unit on its own server behind the middleware `choreo <service>` uses, and the ingress
		// in front, as in the container deployment.
		authn, err := auth.New(t.Context(), cfg.Auth, testenv.Logger(t))
		if err != nil {
			t.Fatal(err)
		}
		defer authn.Close()
		urls := map[string]string{}
		for _, name := range system.APIs() {
			mux := http.NewServeMux()
			h.sys.Unit(name).Routes(mux)
			srv := httptest.NewServer(authn.Middleware(mux))
			t.Cleanup(srv.Close)
			urls[name] = srv.URL
		}
		guard := func(next http.Handler) http.Handler { return ingress.Guard(next, authn, nil) }
		front, err := ingress.New(ingress.Upstreams{Order: urls["order"], OrderView: urls["orderview"], Inventory: urls["inventory"], Customer: urls["customer"]}, guard, testenv.Logger(t))
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(front)
		t.Cleanup(srv.Close)
		as := func(c client) client { c.base = srv.URL; return c }

		code, body, hdr := as(anon).do("GET", "/v1/orders", nil)
		expectChallenge(t, "ingress without a token", code, body, hdr, false)
		if code, body, _ := as(anon).do("GET", "/v1/products", nil); code != http.StatusOK {
			t.Errorf("catalog through the ingress: %d %s", code, body)
		}
		checkScoping(t, as(alice), as(bob), as(olga))
		if code, body, _ := as(mallory).do("POST", "/v1/orders", newOrder("bob", item, 1, "tok_visa", "US")); code != http.StatusForbidden {
			t.Errorf("mallory orders as bob through the ingress: %d %s", code, body)
		}
		if code, body, _ := as(alice).do("PUT", "/v1/products/"+item, product); code != http.StatusForbidden {
			t.Errorf("customer changes the catalog through the ingress: %d %s", code, body)
		}
		dave := as(client{h: h, header: bearer(t, "dave")})
		daveOrder := dave.place(newOrder("", item, 1, "tok_visa", "US"))
		testenv.Eventually(t, 30*time.Second, "dave's order in the read model", func() bool { c, _ := dave.order(daveOrder); return c == http.StatusOK })
		if _, o := as(olga).order(daveOrder); o.CustomerID != "dave" {
			t.Errorf("dave's order belongs to %q", o.CustomerID)
		}

		// Around the ingress, straight to the read model: the same rules.
		direct := func(c client) client { c.base = urls["orderview"]; return c }
		code, body, hdr = direct(anon).do("GET", "/v1/orders/"+bobOrder, nil)
		expectChallenge(t, "orderview without a token", code, body, hdr, false)
		if code, _ := direct(alice).order(bobOrder); code != http.StatusNotFound {
			t.Errorf("alice reads bob's order at the read model directly: %d", code)
		}
		atOrder := client{h: h, base: urls["order"], header: mallory.header}
		if code, body, _ := atOrder.do("POST", "/v1/orders", newOrder("bob", item, 1, "tok_visa", "US")); code != http.StatusForbidden {
			t.Errorf("mallory orders as bob at the order service directly: %d %s", code, body)
		}
	})
}
