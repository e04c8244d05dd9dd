package console

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/choreo-dev/choreo/sagas/orderview"
)

// OrderViewAPI lists orders through the read model's HTTP API at base (GET /v1/orders), for a console
// running apart from it (the ingress).
func OrderViewAPI(base string) (OrderLister, error) {
	u, err := url.Parse(base)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return nil, fmt.Errorf("order read model URL %q: want an absolute http(s) URL", base)
	}
	client := &http.Client{Timeout: 5 * time.Second}
	list := u.JoinPath("/v1/orders")
	return func(ctx context.Context, f orderview.Filter) (orderview.Page, error) {
		q := url.Values{}
		if f.Status != "" {
			q.Set("status", f.Status)
		}
		if f.CustomerID != "" {
			q.Set("customer_id", f.CustomerID)
		}
		if f.Limit > 0 {
			q.Set("limit", strconv.Itoa(f.Limit))
		}
		if f.Cursor != "" {
			q.Set("cursor", f.Cursor)
		}
		target := *list
		target.RawQuery = q.Encode()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, target.String(), nil)
		if err != nil {
			return orderview.Page{}, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return orderview.Page{}, fmt.Errorf("list orders: %w", err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return orderview.Page{}, fmt.Errorf("list orders: %s answered %s", list.Host, resp.Status)
		}
		var p orderview.Page
		if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
			return orderview.Page{}, fmt.Errorf("decode orders: %w", err)
		}
		return p, nil
	}, nil
}
