package auth_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/choreo-dev/choreo/internal/auth"
)

func TestPolicy(t *testing.T) {
	cases := []struct {
		method, path string
		want         auth.Access
	}{
		{"GET", "/healthz", auth.AccessPublic},
		{"GET", "/readyz", auth.AccessPublic},
		{"GET", "/metrics", auth.AccessPublic},
		{"GET", "/v1/products", auth.AccessPublic},
		{"HEAD", "/v1/products", auth.AccessPublic},
		{"POST", "/v1/orders", auth.AccessCustomer},
		{"GET", "/v1/orders", auth.AccessCustomer},
		{"GET", "/v1/orders/0190", auth.AccessCustomer},
		{"GET", "/orders", auth.AccessCustomer},
		{"GET", "/orders/0190", auth.AccessCustomer},
		{"PUT", "/v1/products/KB-1", auth.AccessOperator},
		{"POST", "/v1/products", auth.AccessOperator},
		{"DELETE", "/v1/orders/0190", auth.AccessOperator},
		{"POST", "/v1/orders/0190/cancel", auth.AccessOperator},
		{"GET", "/v1/orders/0190/secrets", auth.AccessOperator},
		{"GET", "/v1/dlq/payment", auth.AccessOperator},
		{"POST", "/v1/dlq/payment/redrive", auth.AccessOperator},
		{"GET", "/", auth.AccessOperator},
	}
	for _, c := range cases {
		if got := auth.Policy(httptest.NewRequest(c.method, c.path, nil)); got != c.want {
			t.Errorf("%s %s: %d, want %d", c.method, c.path, got, c.want)
		}
	}
}

// echo answers 200 with the principal it finds, or "none".
var echo = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	p, ok := auth.FromContext(r.Context())
	if !ok {
		_, _ = w.Write([]byte("none"))
		return
	}
	_, _ = w.Write([]byte(p.Subject + " " + strings.Join(p.Roles, ",")))
})

type answer struct {
	status             int
	body, challenge    string
	contentType        string
	problemStatus      int
	problemHasInstance bool
}

func call(t *testing.T, h http.Handler, method, path, authorization string) answer {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	a := answer{status: rec.Code, body: rec.Body.String(), challenge: rec.Header().Get("WWW-Authenticate"), contentType: rec.Header().Get("Content-Type")}
	if a.contentType == "application/problem+json" {
		var p struct {
			Status   int    `json:"status"`
			Instance string `json:"instance"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
			t.Fatalf("problem body %q: %v", a.body, err)
		}
		a.problemStatus, a.problemHasInstance = p.Status, p.Instance == path
	}
	return a
}

func TestMiddlewareEnforced(t *testing.T) {
	a := newAuth(t, auth.Config{HMACSecret: secret, OperatorToken: "op-s3cret"})
	h := a.Middleware(echo)
	alice, err := auth.Sign(secret, "alice", nil, time.Hour, "", "")
	if err != nil {
		t.Fatal(err)
	}
	ops, err := auth.Sign(secret, "olga", []string{"operator"}, time.Hour, "", "")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, method, path, authorization string
		status                            int
		body, challenge                   string
	}{
		{"public without token", "GET", "/v1/products", "", 200, "none", ""},
		{"health ignores a bad token", "GET", "/healthz", "Bearer junk", 200, "none", ""},
		{"customer route without token", "GET", "/v1/orders", "", 401, "", `Bearer realm="choreo"`},
		{"not a bearer", "GET", "/v1/orders", "Basic YWxpY2U6cHc=", 401, "", `Bearer realm="choreo", error="invalid_request"`},
		{"invalid token", "GET", "/v1/orders", "Bearer junk", 401, "", `Bearer realm="choreo", error="invalid_token"`},
		{"customer", "GET", "/v1/orders/x", "Bearer " + alice, 200, "alice ", ""},
		{"scheme is case-insensitive", "POST", "/v1/orders", "bearer " + alice, 200, "alice ", ""},
		{"customer on an operator route", "PUT", "/v1/products/A", "Bearer " + alice, 403, "", `Bearer realm="choreo", error="insufficient_scope"`},
		{"operator JWT", "PUT", "/v1/products/A", "Bearer " + ops, 200, "olga operator", ""},
		{"operator token", "PUT", "/v1/products/A", "Bearer op-s3cret", 200, "operator operator", ""},
		{"operator token reads orders", "GET", "/v1/orders", "Bearer op-s3cret", 200, "operator operator", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := call(t, h, c.method, c.path, c.authorization)
			if got.status != c.status || got.challenge != c.challenge {
				t.Fatalf("%d %q, challenge %q; want %d, challenge %q", got.status, got.body, got.challenge, c.status, c.challenge)
			}
			if c.status == 200 && got.body != c.body {
				t.Fatalf("principal %q, want %q", got.body, c.body)
			}
			if c.status != 200 && (got.contentType != "application/problem+json" || got.problemStatus != c.status || !got.problemHasInstance) {
				t.Fatalf("not a problem+json of status %d: %s %q", c.status, got.contentType, got.body)
			}
		})
	}
}

func TestMiddlewareOpen(t *testing.T) {
	open := newAuth(t, auth.Config{}).Middleware(echo)
	for _, path := range []string{"/v1/orders", "/orders/x"} {
		if got := call(t, open, "GET", path, ""); got.status != 200 || got.body != "none" {
			t.Errorf("open mode, GET %s: %d %q", path, got.status, got.body)
		}
	}
	if got := call(t, open, "PUT", "/v1/products/A", ""); got.status != 200 {
		t.Errorf("open mode without operator token, PUT: %d", got.status)
	}

	// Open, but the operator token still guards the operator routes (as OPERATOR_TOKEN always did).
	guarded := newAuth(t, auth.Config{OperatorToken: "op-s3cret"}).Middleware(echo)
	for _, authorization := range []string{"", "Bearer wrong", "op-s3cret"} {
		if got := call(t, guarded, "PUT", "/v1/products/A", authorization); got.status != 401 || !strings.HasPrefix(got.challenge, "Bearer") {
			t.Errorf("operator token set, PUT with %q: %d %q", authorization, got.status, got.challenge)
		}
	}
	if got := call(t, guarded, "PUT", "/v1/products/A", "Bearer op-s3cret"); got.status != 200 || got.body != "operator operator" {
		t.Errorf("operator token: %d %q", got.status, got.body)
	}
	if got := call(t, guarded, "GET", "/v1/orders", ""); got.status != 200 || got.body != "none" {
		t.Errorf("customer route in open mode with an operator token: %d %q", got.status, got.body)
	}
}

func TestCustomerScope(t *testing.T) {
	ctx := t.Context()
	if c, all := auth.Customer(ctx); !all || c != "" {
		t.Errorf("no principal: %q %v; want every customer", c, all)
	}
	if c, all := auth.Customer(auth.NewContext(ctx, auth.Principal{Subject: "alice"})); all || c != "alice" {
		t.Errorf("customer: %q %v", c, all)
	}
	if _, all := auth.Customer(auth.NewContext(ctx, auth.Principal{Subject: "olga", Roles: []string{"operator"}})); !all {
		t.Error("operator limited to one customer")
	}
}
