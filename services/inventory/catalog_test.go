package inventory_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/choreo-dev/choreo/internal/auth"
	"github.com/choreo-dev/choreo/internal/testing/servicetest"
	"github.com/choreo-dev/choreo/internal/testing/testenv"
	"github.com/choreo-dev/choreo/services/inventory"
)

func catalogServer(t *testing.T, token string) string {
	t.Helper()
	svc := inventory.New(inventory.Config{}, servicetest.New(t, inventory.Spec(inventory.Config{})).Pool, "unused", testenv.Logger(t))
	mux := http.NewServeMux()
	svc.Routes(mux)
	authn, err := auth.New(t.Context(), auth.Config{OperatorToken: token}, testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(authn.Middleware(mux))
	t.Cleanup(srv.Close)
	return srv.URL
}

func put(t *testing.T, url, sku, body, auth string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest("PUT", url+"/v1/products/"+sku, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m
}

func TestCatalogPutAndList(t *testing.T) {
	t.Parallel()
	url := catalogServer(t, "")
	cases := []struct {
		name, sku, body string
		status          int
	}{
		{"valid", "KB-1", `{"name":"Keyboard","price_cents":8900,"stock":3}`, 200},
		{"update", "KB-1", `{"name":"Keyboard v2","price_cents":9900,"stock":7}`, 200},
		{"missing stock", "KB-2", `{"name":"x","price_cents":1}`, 400},
		{"negative price", "KB-2", `{"name":"x","price_cents":-1,"stock":1}`, 400},
		{"unknown field", "KB-2", `{"name":"x","price_cents":1,"stock":1,"color":"red"}`, 400},
		{"bad sku", "bad%20sku", `{"name":"x","price_cents":1,"stock":1}`, 400},
	}
	for _, c := range cases {
		code, body := put(t, url, c.sku, c.body, "")
		if code != c.status {
			t.Errorf("%s: %d %v, want %d", c.name, code, body, c.status)
		}
	}
	resp, err := http.Get(url + "/v1/products")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list struct {
		Products []map[string]any `json:"products"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		t.Fatal(err)
	}
	if len(list.Products) != 1 {
		t.Fatalf("products %v, want only KB-1 (rejected PUTs change nothing)", list.Products)
	}
	p := list.Products[0]
	if p["sku"] != "KB-1" || p["name"] != "Keyboard v2" || p["price_cents"] != float64(9900) || p["stock"] != float64(7) {
		t.Fatalf("product %v", p)
	}
}

func TestCatalogChangesNeedTheOperatorToken(t *testing.T) {
	t.Parallel()
	url := catalogServer(t, "s3cret")
	body := `{"name":"x","price_cents":1,"stock":1}`
	for _, auth := range []string{"", "Bearer wrong", "s3cret"} {
		if code, _ := put(t, url, "A", body, auth); code != http.StatusUnauthorized {
			t.Errorf("auth %q: %d, want 401", auth, code)
		}
	}
	if code, _ := put(t, url, "A", body, "Bearer s3cret"); code != http.StatusOK {
		t.Errorf("with the token: %d, want 200", code)
	}
}

// TestCatalogChangesNeedTheOperatorRole: a verified customer who is no operator may not change the
// catalog even where no middleware stopped them.
func TestCatalogChangesNeedTheOperatorRole(t *testing.T) {
	t.Parallel()
	svc := inventory.New(inventory.Config{}, servicetest.New(t, inventory.Spec(inventory.Config{})).Pool, "unused", testenv.Logger(t))
	mux := http.NewServeMux()
	svc.Routes(mux)
	as := func(p auth.Principal) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mux.ServeHTTP(w, r.WithContext(auth.NewContext(r.Context(), p)))
		}))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	body := `{"name":"x","price_cents":1,"stock":1}`
	if code, _ := put(t, as(auth.Principal{Subject: "alice"}), "A", body, ""); code != http.StatusForbidden {
		t.Errorf("customer: %d, want 403", code)
	}
	if code, _ := put(t, as(auth.Principal{Subject: "olga", Roles: []string{auth.RoleOperator}}), "A", body, ""); code != http.StatusOK {
		t.Errorf("operator: %d, want 200", code)
	}
}
