package system_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/internal/auth"
	"github.com/choreo-dev/choreo/internal/ingress"
	"github.com/choreo-dev/choreo/internal/testing/testenv"
	"github.com/choreo-dev/choreo/sagas"
)

// TestCustomerStateDrivesTheSaga: a blocked customer's order is cancelled with customer_rejected and
// compensated (the stock reserved in parallel is released, nothing is charged) and the customer is told
// at the address they registered; unblocked, they order again; the credit limit an operator sets reaches
// payment through customer.credit_limit_set.
func TestCustomerStateDrivesTheSaga(t *testing.T) {
	t.Parallel()
	h := start(t, baseConfig(t))
	s := sku(t)
	h.putProduct(s, 400, 5)
	ada := h.customer("ada")

	if code, body := h.do("POST", "/v1/customers/"+ada+"/block", map[string]string{"reason": "chargebacks"}, nil); code != http.StatusOK {
		t.Fatalf("block: %d %s", code, body)
	}
	id := h.place(newOrder(ada, s, 2, "tok_visa", "US"))
	o := h.settled(id, "customer.rejected", "stock.released", "notification.sent")
	if o.Status != "CANCELLED" || o.Reason != events.ReasonCustomerRejected {
		t.Fatalf("blocked customer's order %s/%s, want CANCELLED/customer_rejected; timeline %v", o.Status, o.Reason, o.types())
	}
	if got := h.stock(s); got != (stock{Stock: 5}) {
		t.Errorf("stock %+v, want all 5 back", got)
	}
	testenv.Eventually(t, 30*time.Second, "payment to cancel", func() bool { return h.paymentStatus(id) == "CANCELLED" })
	if to := scalar[string](h, sagas.Notification, `SELECT recipient FROM notifications WHERE order_id = $1`, id); to != "ada@e2e.test" {
		t.Errorf("notification went to %q, want the registered ada@e2e.test", to)
	}

	if code, body := h.do("POST", "/v1/customers/"+ada+"/unblock", nil, nil); code != http.StatusOK {
		t.Fatalf("unblock: %d %s", code, body)
	}
	id = h.place(newOrder(ada, s, 1, "tok_visa", "US"))
	if o := h.settled(id, "customer.approved", "notification.sent"); o.Status != "CONFIRMED" {
		t.Fatalf("unblocked customer's order %s/%s; timeline %v", o.Status, o.Reason, o.types())
	}

	// A limit below the order's total: payment declines once it has learnt the limit.
	if code, body := h.do("PUT", "/v1/customers/"+ada+"/credit-limit", map[string]int64{"limit_cents": 500}, nil); code != http.StatusOK {
		t.Fatalf("credit limit: %d %s", code, body)
	}
	testenv.Eventually(t, 30*time.Second, "payment to learn the limit", func() bool {
		return scalar[int](h, sagas.Payment, `SELECT count(*) FROM customer_limits WHERE customer_id = $1 AND limit_cents = 500`, ada) == 1
	})
	id = h.place(newOrder(ada, s, 2, "tok_visa", "US"))
	if o := h.settled(id, "stock.released"); o.Status != "CANCELLED" || o.Reason != events.ReasonPaymentDeclined {
		t.Fatalf("order over the limit %s/%s, want CANCELLED/payment_declined", o.Status, o.Reason)
	}

	// An id nobody registered (possible only without authentication) is rejected, not guessed at.
	id = h.place(newOrder("nobody-registered-this", s, 1, "tok_visa", "US"))
	if o := h.settled(id, "stock.released"); o.Reason != events.ReasonCustomerRejected {
		t.Fatalf("unknown customer's order %s/%s", o.Status, o.Reason)
	}
	testenv.Eventually(t, 30*time.Second, "its notification to wait", func() bool {
		return scalar[string](h, sagas.Notification, `SELECT coalesce((SELECT status FROM notifications WHERE order_id = $1), 'NONE')`, id) == "WAITING"
	})
}

// TestTokensOfTheCustomerService: the customer service signs ES256 tokens with its private key and
// publishes the public half; an ingress whose verifier points AUTH_JWKS_URL at it accepts them, and the
// order is the token's customer's.
func TestTokensOfTheCustomerService(t *testing.T) {
	t.Parallel()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cfg := baseConfig(t)
	cfg.Customer.Tokens.SigningKey = key
	cfg.Auth = auth.Config{VerifyKey: key.Public()}
	h := start(t, cfg)
	s := sku(t)
	// An operator token signed with the same key, as an identity provider would issue one.
	opToken, err := signES256(key, "olga", auth.RoleOperator)
	if err != nil {
		t.Fatal(err)
	}
	if code, body := h.do("PUT", "/v1/products/"+s, map[string]any{"name": "Thing", "price_cents": 100, "stock": 10}, map[string]string{"Authorization": "Bearer " + opToken}); code != http.StatusOK {
		t.Fatalf("put product as operator: %d %s", code, body)
	}

	code, body := h.do("POST", "/v1/customers", map[string]string{"email": "Grace@e2e.test", "name": "Grace", "password": "correct horse"}, nil)
	if code != http.StatusCreated {
		t.Fatalf("register: %d %s", code, body)
	}
	grace := jsonField(t, body, "id")
	code, body = h.do("POST", "/v1/tokens", map[string]string{"email": "grace@E2E.test", "password": "correct horse"}, nil)
	var tok struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
		ExpiresIn   int    `json:"expires_in"`
	}
	if code != http.StatusOK || json.Unmarshal(body, &tok) != nil || tok.TokenType != "Bearer" || tok.ExpiresIn != 3600 {
		t.Fatalf("token: %d %s", code, body)
	}

	authn, err := auth.New(t.Context(), auth.Config{JWKSURL: h.url + "/.well-known/jwks.json"}, testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer authn.Close()
	guard := func(next http.Handler) http.Handler { return ingress.Guard(next, authn, nil) }
	front, err := ingress.New(ingress.Upstreams{Order: h.url, OrderView: h.url, Inventory: h.url, Customer: h.url}, guard, testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(front)
	t.Cleanup(srv.Close)
	as := client{h: h, base: srv.URL, header: map[string]string{"Authorization": "Bearer " + tok.AccessToken}}

	code, body, _ = as.do("GET", "/v1/customers/me", nil)
	if code != http.StatusOK || jsonField(t, body, "id") != grace || jsonField(t, body, "email") != "Grace@e2e.test" {
		t.Fatalf("me through the ingress: %d %s", code, body)
	}
	if code, body, _ := as.do("GET", "/v1/customers/"+grace, nil); code != http.StatusForbidden {
		t.Errorf("a customer on an operator route: %d %s, want 403", code, body)
	}
	id := as.place(newOrder("", s, 1, "tok_visa", "US"))
	testenv.Eventually(t, 60*time.Second, "grace's order to be confirmed", func() bool {
		_, o := as.order(id)
		return o.Status == "CONFIRMED" && o.CustomerID == grace
	})
	testenv.Eventually(t, 30*time.Second, "the notification to Grace's registered address", func() bool {
		return scalar[string](h, sagas.Notification, `SELECT coalesce((SELECT recipient FROM notifications WHERE order_id = $1), '')`, id) == "Grace@e2e.test"
	})
}

func signES256(key *ecdsa.PrivateKey, sub string, roles ...string) (string, error) {
	now := time.Now()
	return jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{"sub": sub, "roles": roles, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}).SignedString(key)
}
