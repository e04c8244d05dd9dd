// Package ingress is the thin HTTP front door when services run as separate processes: it authenticates
// callers, limits how fast each places orders (Guard) and routes each API path to the service that owns
// it. The caller's Authorization header goes upstream unchanged, and each service verifies it again, so a
// service reached around the ingress enforces the same rules. In the all-in-one mode the services'
// handlers share one listener behind the same Guard and no proxy is needed.
package ingress

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"
	"time"

	"github.com/rs/zerolog"

	"github.com/choreo-dev/choreo/internal/httpapi"
)

// Upstreams are the base URLs of the services behind the ingress.
type Upstreams struct {
	Order     string // POST /v1/orders
	OrderView string // GET /v1/orders..., the timeline pages under /orders, GET /v1/reports/sales
	Inventory string // /v1/products...
	Customer  string // /v1/customers..., POST /v1/tokens, /.well-known/jwks.json
}

// New returns the ingress handler: guard (typically Guard with the process's authenticator) wraps the
// routes; nil leaves them unguarded.
func New(up Upstreams, guard func(http.Handler) http.Handler, log zerolog.Logger) (http.Handler, error) {
	mux := http.NewServeMux()
	routes := []struct {
		patterns []string
		target   string
	}{
		{[]string{"POST /v1/orders"}, up.Order},
		{[]string{"GET /v1/orders", "GET /v1/orders/{id}", "GET /orders", "GET /orders/{id}", "GET /v1/reports/sales"}, up.OrderView},
		{[]string{"GET /v1/products", "PUT /v1/products/{sku}"}, up.Inventory},
		{[]string{"POST /v1/customers", "GET /v1/customers/{id}", "PATCH /v1/customers/me", "PUT /v1/customers/{id}/credit-limit",
			"POST /v1/customers/{id}/block", "POST /v1/customers/{id}/unblock", "POST /v1/tokens", "GET /.well-known/jwks.json"}, up.Customer},
	}
	var checks []httpapi.Check
	for _, r := range routes {
		target, err := url.Parse(r.target)
		if err != nil || target.Scheme == "" || target.Host == "" {
			return nil, fmt.Errorf("ingress upstream %q: want an absolute http(s) URL", r.target)
		}
		proxy := httputil.NewSingleHostReverseProxy(target)
		proxy.ErrorHandler = func(w http.ResponseWriter, req *http.Request, err error) {
			log.Warn().Err(err).Str("upstream", target.Host).Str("path", req.URL.Path).Msg("upstream unavailable")
			httpapi.WriteProblem(w, req, httpapi.NewProblem(http.StatusBadGateway, "the service behind this path is unavailable; retry later"))
		}
		for _, p := range r.patterns {
			mux.Handle(p, proxy)
		}
		checks = append(checks, upstreamCheck(target))
	}
	httpapi.HealthRoutes(mux, checks...)
	if guard == nil {
		return mux, nil
	}
	return guard(mux), nil
}

// upstreamCheck reports whether the upstream's /healthz answers 200.
func upstreamCheck(base *url.URL) httpapi.Check {
	client := &http.Client{Timeout: 2 * time.Second}
	health := base.JoinPath("/healthz").String()
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, health, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("%s: %w", base.Host, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: /healthz answered %d", base.Host, resp.StatusCode)
		}
		return nil
	}
}
