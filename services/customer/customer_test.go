package customer_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/internal/auth"
	"github.com/choreo-dev/choreo/internal/host"
	"github.com/choreo-dev/choreo/internal/testing/servicetest"
	"github.com/choreo-dev/choreo/internal/testing/testenv"
	"github.com/choreo-dev/choreo/services/customer"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const secret = "customer-test-secret-0123456789abcdef"

var cheap = customer.PasswordParams{MemoryKiB: 64, Time: 1, Threads: 1}

func spec() host.Spec {
	return customer.Spec(customer.Config{Tokens: customer.TokenConfig{HMACSecret: secret}, Password: cheap})
}

// api is the customer service's HTTP API behind the middleware `choreo customer` uses.
type api struct {
	t    *testing.T
	url  string
	svc  *servicetest.Service
	auth *auth.Authenticator
}

func newAPI(t *testing.T) *api {
	t.Helper()
	svc := servicetest.New(t, spec())
	authn, err := auth.New(t.Context(), auth.Config{HMACSecret: secret}, testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	svc.Unit.Routes(mux)
	srv := httptest.NewServer(authn.Middleware(mux))
	t.Cleanup(srv.Close)
	return &api{t: t, url: srv.URL, auth: authn, svc: svc}
}

func (a *api) do(method, path, token string, body any) (int, []byte, http.Header) {
	a.t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, a.url+path, r)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header
}

func (a *api) register(email, name, password string) string {
	a.t.Helper()
	code, body, _ := a.do("POST", "/v1/customers", "", map[string]string{"email": email, "name": name, "password": password})
	if code != http.StatusCreated {
		a.t.Fatalf("register %s: %d %s", email, code, body)
	}
	var c struct{ ID string }
	_ = json.Unmarshal(body, &c)
	return c.ID
}

func (a *api) token(email, password string) (int, []byte) {
	a.t.Helper()
	code, body, _ := a.do("POST", "/v1/tokens", "", map[string]string{"email": email, "password": password})
	return code, body
}

// emitted lists the types of the events in the outbox.
func (a *api) emitted() []string {
	a.t.Helper()
	rows, err := a.svc.Pool.Query(context.Background(), `SELECT convert_from(value, 'UTF8') FROM outbox ORDER BY id`)
	if err != nil {
		a.t.Fatal(err)
	}
	defer rows.Close()
	var payloads []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			a.t.Fatal(err)
		}
		payloads = append(payloads, v)
	}
	return payloads
}

func operator(t *testing.T) string {
	tok, err := auth.Sign(secret, "olga", []string{auth.RoleOperator}, time.Hour, "", "")
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestRegister(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	code, body, _ := a.do("POST", "/v1/customers", "", map[string]string{"email": "not an address", "name": "", "password": "short"})
	var p struct {
		Status int
		Errors []struct{ Field string }
	}
	_ = json.Unmarshal(body, &p)
	var fields []string
	for _, e := range p.Errors {
		fields = append(fields, e.Field)
	}
	if code != http.StatusBadRequest || !slices.Equal(fields, []string{"email", "name", "password"}) {
		t.Fatalf("invalid registration: %d %s", code, body)
	}

	code, body, hdr := a.do("POST", "/v1/customers", "", map[string]string{"email": " Ada@Example.com ", "name": "Ada", "password": "s3cret-passw0rd"})
	if code != http.StatusCreated || !strings.HasPrefix(hdr.Get("Location"), "/v1/customers/") {
		t.Fatalf("register: %d %s (Location %q)", code, body, hdr.Get("Location"))
	}
	var c map[string]any
	_ = json.Unmarshal(body, &c)
	if c["email"] != "Ada@Example.com" || c["name"] != "Ada" || c["id"] == "" || c["created_at"] == nil || len(c) != 4 {
		t.Fatalf("registered %s, want exactly id, email, name, created_at", body)
	}
	if code, body, _ := a.do("POST", "/v1/customers", "", map[string]string{"email": "ada@example.COM", "name": "Other", "password": "another-password"}); code != http.StatusConflict {
		t.Fatalf("the same email in another case: %d %s, want 409", code, body)
	}
	var hash string
	if err := a.svc.Pool.QueryRow(context.Background(), `SELECT password_hash FROM customers`).Scan(&hash); err != nil || !strings.HasPrefix(hash, "$argon2id$v=19$") {
		t.Fatalf("stored hash %q (%v)", hash, err)
	}
	out := a.emitted()
	if len(out) != 1 || !strings.Contains(out[0], `"email":"Ada@Example.com"`) || strings.Contains(out[0], "s3cret") || strings.Contains(out[0], "argon2") {
		t.Fatalf("outbox %v, want one customer.registered without the password or its hash", out)
	}
}

// TestTokens: the right password gets a token the API accepts; a wrong password and an unknown email
// get the same answer; repeated failures for one email are refused for a while, registered or not.
func TestTokens(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	id := a.register("grace@example.com", "Grace", "correct horse")
	code, body := a.token("GRACE@example.com", "correct horse")
	var tok struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
		ExpiresIn   int    `json:"expires_in"`
	}
	_ = json.Unmarshal(body, &tok)
	if code != http.StatusOK || tok.TokenType != "Bearer" || tok.ExpiresIn != 3600 {
		t.Fatalf("token: %d %s", code, body)
	}
	p, err := a.auth.Verify(tok.AccessToken)
	if err != nil || p.Subject != id || p.Operator() {
		t.Fatalf("token verifies as %+v (%v), want subject %s", p, err, id)
	}

	wrongCode, wrongBody := a.token("grace@example.com", "wrong horse")
	unknownCode, unknownBody := a.token("nobody@example.com", "wrong horse")
	if wrongCode != http.StatusUnauthorized || unknownCode != wrongCode || !bytes.Equal(wrongBody, unknownBody) {
		t.Fatalf("wrong password %d %s; unknown email %d %s; want the same 401", wrongCode, wrongBody, unknownCode, unknownBody)
	}
	for _, email := range []string{"grace@example.com", "nobody@example.com"} {
		for range 2 {
			a.token(email, "wrong horse")
		}
		_, _, hdr := a.do("POST", "/v1/tokens", "", map[string]string{"email": email, "password": "correct horse"})
		code, body := a.token(email, "correct horse")
		if code != http.StatusTooManyRequests || hdr.Get("Retry-After") == "" {
			t.Errorf("%s after 3 failures: %d %s, want 429 with Retry-After even for the right password", email, code, body)
		}
	}
	if code, _ := a.token("other@example.com", "wrong horse"); code != http.StatusUnauthorized {
		t.Errorf("another email is not slowed down: %d", code)
	}
}

func jsonString(body []byte, field string) string {
	var m map[string]any
	_ = json.Unmarshal(body, &m)
	s, _ := m[field].(string)
	return s
}

func TestMe(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	a.register("taken@example.com", "Taken", "password-1")
	a.register("lin@example.com", "Lin", "password-2")
	_, body := a.token("lin@example.com", "password-2")
	tok := jsonString(body, "access_token")

	if code, _, hdr := a.do("GET", "/v1/customers/me", "", nil); code != http.StatusUnauthorized || hdr.Get("WWW-Authenticate") == "" {
		t.Fatalf("me without a token: %d", code)
	}
	if code, body, _ := a.do("GET", "/v1/customers/me", tok, nil); code != http.StatusOK || jsonString(body, "email") != "lin@example.com" {
		t.Fatalf("me: %d %s", code, body)
	}
	if code, body, _ := a.do("PATCH", "/v1/customers/me", tok, map[string]string{"email": "nope"}); code != http.StatusBadRequest {
		t.Fatalf("invalid email: %d %s", code, body)
	}
	if code, body, _ := a.do("PATCH", "/v1/customers/me", tok, map[string]string{"email": "TAKEN@example.com"}); code != http.StatusConflict {
		t.Fatalf("a taken email: %d %s", code, body)
	}
	code, body, _ := a.do("PATCH", "/v1/customers/me", tok, map[string]string{"name": "Lin Yu", "email": "lin.yu@example.com"})
	if code != http.StatusOK || jsonString(body, "name") != "Lin Yu" || jsonString(body, "email") != "lin.yu@example.com" {
		t.Fatalf("patch: %d %s", code, body)
	}
	a.do("PATCH", "/v1/customers/me", tok, map[string]string{"name": "Lin Yu"}) // no change, no event
	out := a.emitted()
	if len(out) != 3 || !strings.Contains(out[2], `"email":"lin.yu@example.com"`) {
		t.Fatalf("outbox %v, want two registrations and one update", out)
	}
}

func TestOperatorRoutes(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	id := a.register("max@example.com", "Max", "password-3")
	_, body := a.token("max@example.com", "password-3")
	own := jsonString(body, "access_token")
	op := operator(t)

	for _, c := range []struct {
		method, path string
		body         any
	}{{"GET", "/v1/customers/" + id, nil}, {"PUT", "/v1/customers/" + id + "/credit-limit", map[string]int{"limit_cents": 1}}, {"POST", "/v1/customers/" + id + "/block", nil}} {
		if code, body, _ := a.do(c.method, c.path, own, c.body); code != http.StatusForbidden {
			t.Errorf("customer %s %s: %d %s, want 403", c.method, c.path, code, body)
		}
	}
	if code, _, _ := a.do("GET", "/v1/customers/0190a2b4-0000-7000-8000-000000000000", op, nil); code != http.StatusNotFound {
		t.Errorf("unknown customer: %d, want 404", code)
	}
	if code, body, _ := a.do("PUT", "/v1/customers/"+id+"/credit-limit", op, map[string]int{"limit_cents": -1}); code != http.StatusBadRequest {
		t.Errorf("negative limit: %d %s", code, body)
	}
	if code, body, _ := a.do("PUT", "/v1/customers/"+id+"/credit-limit", op, map[string]int{"limit_cents": 25000}); code != http.StatusOK || !strings.Contains(string(body), `"credit_limit_cents":25000`) {
		t.Errorf("set limit: %d %s", code, body)
	}
	for range 2 { // blocking twice emits once
		if code, body, _ := a.do("POST", "/v1/customers/"+id+"/block", op, map[string]string{"reason": "fraud"}); code != http.StatusOK || !strings.Contains(string(body), `"blocked":true`) {
			t.Errorf("block: %d %s", code, body)
		}
	}
	if code, body, _ := a.do("POST", "/v1/customers/"+id+"/unblock", op, nil); code != http.StatusOK || !strings.Contains(string(body), `"blocked":false`) {
		t.Errorf("unblock: %d %s", code, body)
	}
	if code, body, _ := a.do("GET", "/v1/customers/"+id, op, nil); code != http.StatusOK || strings.Contains(string(body), "password") {
		t.Errorf("operator reads the customer: %d %s", code, body)
	}
	want := []string{"customer.registered", "customer.credit_limit_set", "customer.blocked", "customer.unblocked"}
	if got := a.svc.Emitted(); !slices.Equal(got, want) {
		t.Errorf("emitted %v, want %v", got, want)
	}
}

// TestApproval: on order.placed the customer service approves a registered customer and rejects an
// unknown or blocked one, once per order however often the event comes.
func TestApproval(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	id := a.register("kim@example.com", "Kim", "password-4")
	placed := func(order, customer string) events.Envelope {
		return servicetest.Event(t, "order", order, events.OrderPlaced{OrderID: order, CustomerID: customer, Items: []events.Item{{SKU: "A", Quantity: 1}}})
	}
	s := a.svc
	s.Apply(placed("o-1", id))
	s.Apply(placed("o-1", id))
	s.Apply(placed("o-2", "alice"))
	a.do("POST", "/v1/customers/"+id+"/block", operator(t), nil)
	s.Apply(placed("o-3", id))
	want := []string{"customer.registered", "customer.approved", "customer.rejected", "customer.blocked", "customer.rejected"}
	if got := s.Emitted(); !slices.Equal(got, want) {
		t.Fatalf("emitted %v, want %v", got, want)
	}
	var got []string
	rows, _ := a.svc.Pool.Query(context.Background(), `SELECT order_id || ':' || approved || ':' || reason FROM approvals ORDER BY order_id`)
	for rows.Next() {
		var r string
		_ = rows.Scan(&r)
		got = append(got, r)
	}
	rows.Close()
	if want := []string{"o-1:true:", "o-2:false:unknown_customer", "o-3:false:blocked"}; !slices.Equal(got, want) {
		t.Fatalf("decisions %v, want %v", got, want)
	}
}
