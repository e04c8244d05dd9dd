package orderview_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/choreo-dev/choreo/consumer"
	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/internal/projection"
	"github.com/choreo-dev/choreo/internal/testing/testenv"
	"github.com/choreo-dev/choreo/sagas/orderview"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// base is the time the tests' sagas start at; microsecond-aligned, as Postgres stores it.
var base = time.Date(2031, 3, 14, 9, 26, 53, 589000000, time.UTC)

// fixture is a read model on a fresh database migrated as the host migrates it, and its HTTP API.
type fixture struct {
	svc  *orderview.Service
	pool *pgxpool.Pool
	srv  *httptest.Server
}

func newFixture(t *testing.T, cfg orderview.Config) fixture {
	t.Helper()
	ctx := context.Background()
	pool := testenv.Postgres(t)
	for _, p := range orderview.Spec(cfg).Projections {
		if err := projection.Create(ctx, pool, p); err != nil {
			t.Fatalf("create %s: %v", p.Name(), err)
		}
	}
	svc, err := orderview.New(cfg, pool, testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	svc.Routes(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return fixture{svc: svc, pool: pool, srv: srv}
}

// project applies each event as a batch of its own, decoded as the projection runtime decodes it.
func (f fixture) project(t *testing.T, evs ...events.Envelope) {
	t.Helper()
	for _, e := range evs {
		f.projectBatch(t, e)
	}
}

// projectBatch applies evs as one batch to every projection of the read model.
func (f fixture) projectBatch(t *testing.T, evs ...events.Envelope) {
	t.Helper()
	ctx := context.Background()
	reg, err := events.Catalog()
	if err != nil {
		t.Fatal(err)
	}
	batch := make([]consumer.Event, len(evs))
	for i, e := range evs {
		batch[i] = consumer.Event{Envelope: e}
		var unknown *events.UnknownTypeError
		if batch[i].Payload, err = reg.Decode(e); err != nil && !errors.As(err, &unknown) {
			t.Fatalf("decode %s %s: %v", e.Type, e.ID, err)
		}
	}
	for _, p := range orderview.Spec(orderview.Config{}).Projections {
		if err := projection.ApplyEvents(ctx, f.pool, p, batch); err != nil {
			t.Fatalf("apply %d events to %s: %v", len(evs), p.Name(), err)
		}
	}
}

// get returns order id through the API, failing unless it answers 200.
func (f fixture) get(t *testing.T, id string) orderview.Order {
	t.Helper()
	var o orderview.Order
	if status := f.getJSON(t, "/v1/orders/"+id, &o); status != http.StatusOK {
		t.Fatalf("GET /v1/orders/%s: status %d, want 200", id, status)
	}
	return o
}

// lookup returns order id through the API, and false while it answers 404.
func (f fixture) lookup(t *testing.T, id string) (orderview.Order, bool) {
	t.Helper()
	status, _, body := f.fetch(t, "/v1/orders/"+id)
	if status == http.StatusNotFound || status == http.StatusServiceUnavailable { // 503: first copy being built
		return orderview.Order{}, false
	}
	var o orderview.Order
	if err := json.Unmarshal(body, &o); status != http.StatusOK || err != nil {
		t.Fatalf("GET /v1/orders/%s: status %d, body %q (%v)", id, status, body, err)
	}
	return o, true
}

// getJSON GETs path, decodes the body into v and returns the status.
func (f fixture) getJSON(t *testing.T, path string, v any) int {
	t.Helper()
	status, _, body := f.fetch(t, path)
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("GET %s: status %d, body %q is not JSON: %v", path, status, body, err)
	}
	return status
}

// fetch GETs path and returns the status, headers and body.
func (f fixture) fetch(t *testing.T, path string) (int, http.Header, []byte) {
	t.Helper()
	resp, err := f.srv.Client().Get(f.srv.URL + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", path, err)
	}
	return resp.StatusCode, resp.Header, body
}

// saga builds the events of one order, each at base plus an offset.
type saga struct {
	t  *testing.T
	id string
}

func newSaga(t *testing.T) saga {
	t.Helper()
	id, err := uuid.NewV7()
	if err != nil {
		t.Fatal(err)
	}
	return saga{t: t, id: id.String()}
}

// event returns p as emitted by source, at base+at.
func (s saga) event(source string, at time.Duration, p events.Payload) events.Envelope {
	s.t.Helper()
	e, err := events.New(source, s.id, p)
	if err != nil {
		s.t.Fatal(err)
	}
	e.Time = base.Add(at)
	return e
}

// unknown returns an event of a type no registry knows, at base+at.
func (s saga) unknown(eventType string, at time.Duration) events.Envelope {
	s.t.Helper()
	id, err := uuid.NewV7()
	if err != nil {
		s.t.Fatal(err)
	}
	return events.Envelope{ID: id, Type: eventType, Version: 1, Source: "audit", Subject: s.id, CorrelationID: s.id,
		Time: base.Add(at), Data: json.RawMessage(`{"anything":true}`)}
}

func (s saga) placed(at time.Duration, customer string, items ...events.Item) events.Envelope {
	return s.event("order", at, events.OrderPlaced{OrderID: s.id, CustomerID: customer, Items: items, PaymentToken: "tok",
		Currency: "USD", ShippingAddress: events.PostalAddress{Name: "A", Street: "St", HouseNumber: "1", City: "C", PostalCode: "1", Country: "US"}, Deadline: base.Add(time.Hour)})
}

func (s saga) reserved(at time.Duration, total int64, lines ...events.PricedLine) events.Envelope {
	return s.event("inventory", at, events.StockReserved{OrderID: s.id, Lines: lines, TotalCents: total})
}

func (s saga) cancelled(at time.Duration, reason string) events.Envelope {
	return s.event("order", at, events.OrderCancelled{OrderID: s.id, Reason: reason})
}

func (s saga) confirmed(at time.Duration) events.Envelope {
	return s.event("order", at, events.OrderConfirmed{OrderID: s.id})
}

func (s saga) released(at time.Duration) events.Envelope {
	return s.event("inventory", at, events.StockReleased{OrderID: s.id, Reason: events.ReasonPaymentDeclined})
}

func ptr[T any](v T) *T { return &v }
