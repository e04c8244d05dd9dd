package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// client speaks to the ingress.
type client struct {
	base          string
	token         string // Bearer for the order API, when set
	operatorToken string // Bearer for PUT /v1/products, when set
	http          *http.Client
}

func newClient(base, token, operatorToken string, conns int, timeout time.Duration) *client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns, tr.MaxIdleConnsPerHost = conns, conns
	return &client{
		base: strings.TrimRight(base, "/"), token: token, operatorToken: operatorToken,
		http: &http.Client{Transport: tr, Timeout: timeout},
	}
}

func (c *client) close() { c.http.CloseIdleConnections() }

// do sends a request with a JSON body (when body is not nil) and returns the status and the body.
func (c *client) do(ctx context.Context, method, path, token string, body any, header map[string]string) (int, []byte, error) {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, r)
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, b, err
}

// seed sets every product's stock (and a name and price).
func (c *client) seed(ctx context.Context, stock map[string]int) error {
	for sku, n := range stock {
		body := map[string]any{"name": "Load " + sku, "price_cents": 100, "stock": n}
		code, b, err := c.do(ctx, http.MethodPut, "/v1/products/"+sku, c.operatorToken, body, nil)
		if err != nil {
			return fmt.Errorf("seed product %s: %w", sku, err)
		}
		if code != http.StatusOK {
			return fmt.Errorf("seed product %s: HTTP %d: %s (OPERATOR_TOKEN needed?)", sku, code, bytes.TrimSpace(b))
		}
	}
	return nil
}

// register registers a customer (POST /v1/customers) and returns its id: orders by customers the customer
// service does not know are rejected.
func (c *client) register(ctx context.Context, email, password string) (string, error) {
	body := map[string]string{"email": email, "name": "Load Test", "password": password}
	code, b, err := c.do(ctx, http.MethodPost, "/v1/customers", "", body, nil)
	if err != nil {
		return "", fmt.Errorf("register customer %s: %w", email, err)
	}
	var created struct{ ID string }
	if code != http.StatusCreated || json.Unmarshal(b, &created) != nil || created.ID == "" {
		return "", fmt.Errorf("register customer %s: HTTP %d: %s", email, code, bytes.TrimSpace(b))
	}
	return created.ID, nil
}

// place POSTs an order and returns its id, or why it was not accepted ("HTTP 503", "transport: timeout").
func (c *client) place(ctx context.Context, key string, order placeRequest) (id, failure string) {
	code, b, err := c.do(ctx, http.MethodPost, "/v1/orders", c.token, order, map[string]string{"Idempotency-Key": key})
	if err != nil {
		return "", "transport: " + transportClass(err)
	}
	if code != http.StatusAccepted {
		return "", fmt.Sprintf("HTTP %d", code)
	}
	var placed struct{ ID string }
	if err := json.Unmarshal(b, &placed); err != nil || placed.ID == "" {
		return "", "HTTP 202 without an order id"
	}
	return placed.ID, ""
}

// transportClass names a transport error by kind, so that errors can be counted by kind.
func transportClass(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.Canceled):
		return "cancelled"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case strings.Contains(err.Error(), "connection refused"):
		return "connection refused"
	case strings.Contains(err.Error(), "connection reset"), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection reset"
	}
	return "other"
}

// orderState reads an order from the read model: final reports whether it has ended.
func (c *client) orderState(ctx context.Context, id string) (f final, done bool, err error) {
	code, b, err := c.do(ctx, http.MethodGet, "/v1/orders/"+id, c.token, nil, nil)
	if err != nil || code == http.StatusNotFound {
		return final{}, false, err // not projected yet
	}
	if code != http.StatusOK {
		return final{}, false, fmt.Errorf("get order %s: HTTP %d", id, code)
	}
	var o struct {
		Status   string `json:"status"`
		Reason   string `json:"reason"`
		Timeline []struct {
			Type string    `json:"type"`
			Time time.Time `json:"time"`
		} `json:"timeline"`
	}
	if err := json.Unmarshal(b, &o); err != nil {
		return final{}, false, fmt.Errorf("decode order %s: %w", id, err)
	}
	for _, e := range o.Timeline {
		switch e.Type {
		case typeConfirmed:
			return final{orderID: id, outcome: Confirmed, at: e.Time}, true, nil
		case typeCancelled:
			return final{orderID: id, outcome: Outcome(o.Reason), at: e.Time}, true, nil
		}
	}
	return final{}, false, nil
}

// pollFinals asks the read model for every pending order every interval: the fallback when Kafka
// cannot be read. The read model lags the events a little, which shows in finished counts, not in the
// latencies (they are taken from the final event's time on the order's timeline).
func pollFinals(ctx context.Context, c *client, pending func() []string, deliver func(final), interval time.Duration) error {
	sem := make(chan struct{}, 16)
	defer func() { // wait for the requests in flight
		for range cap(sem) {
			sem <- struct{}{}
		}
	}()
	for {
		for _, id := range pending() {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return nil
			}
			go func() {
				defer func() { <-sem }()
				if f, done, err := c.orderState(ctx, id); err == nil && done {
					deliver(f)
				}
			}()
		}
		select {
		case <-time.After(interval):
		case <-ctx.Done():
			return nil
		}
	}
}
