package system_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/internal/projection"
	"github.com/choreo-dev/choreo/internal/testing/testenv"
	"github.com/choreo-dev/choreo/sagas"
	"github.com/choreo-dev/choreo/sagas/orderview"
	"github.com/choreo-dev/choreo/sagas/salesview"
)

// TestReplayOnlineAndSalesBackfill settles some sagas, then, with the system running, rebuilds the order
// read model beside the live one and swaps it in (what `choreo replay orderview` does), verifies it
// against the topics, and rebuilds the sales report from the whole history (`choreo replay salesview`).
func TestReplayOnlineAndSalesBackfill(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cfg := baseConfig(t)
	h := start(t, cfg)
	s := sku(t)
	h.putProduct(s, 300, 2)
	var ids []string
	for _, o := range []orderRequest{newOrder(h.customer("kim"), s, 1, "tok_visa", "US"), newOrder(h.customer("lee"), s, 5, "tok_visa", "US"), newOrder(h.customer("max"), s, 1, "tok_decline", "US")} {
		ids = append(ids, h.place(o))
	}
	for _, id := range ids {
		h.settled(id, "notification.sent")
	}
	h.drained()
	before := map[string]string{}
	for _, id := range ids {
		before[id] = h.viewSummary(id)
	}
	reg, err := events.Catalog()
	if err != nil {
		t.Fatal(err)
	}
	pool := h.sys.Unit(orderview.Name).Pool()
	runner := func(p projection.Projection) *projection.Runner {
		return projection.New(projection.Config{Brokers: cfg.Brokers, Namespace: cfg.Host.Namespace, Log: testenv.Logger(t)}, pool, reg, p)
	}

	res, err := runner(orderview.Projection{}).Rebuild(ctx, projection.RebuildOptions{})
	if err != nil || !res.Swapped || res.Applied == 0 {
		t.Fatalf("replay orderview: %v (%+v)", err, res)
	}
	for _, id := range ids {
		if got := h.viewSummary(id); got != before[id] {
			t.Fatalf("order %s after the replay: %s, want %s", id, got, before[id])
		}
	}
	if res, err := runner(orderview.Projection{}).Rebuild(ctx, projection.RebuildOptions{Verify: true}); err != nil || res.Different != 0 {
		t.Fatalf("verify orderview: %v, %+v", err, res.Differences)
	}
	if n := scalar[int](h, sagas.Order, `SELECT count(*) FROM orders`); n != len(ids) {
		t.Fatalf("replaying the read model changed the order service: %d orders", n)
	}

	// The sales report: kim's 1 and max's declined order do not count... only confirmed orders do.
	if _, err := pool.Exec(ctx, `DROP SCHEMA salesview CASCADE`); err != nil { // as if added only now
		t.Fatal(err)
	}
	if res, err := runner(salesview.Projection{}).Rebuild(ctx, projection.RebuildOptions{}); err != nil || !res.Swapped {
		t.Fatalf("backfill salesview: %v", err)
	}
	today := time.Now().UTC().Format(time.DateOnly)
	code, body := h.do("GET", "/v1/reports/sales?from="+today+"&to="+today, nil, nil)
	if code != http.StatusOK {
		t.Fatalf("GET /v1/reports/sales: %d %s", code, body)
	}
	var rep salesview.Report
	if err := json.Unmarshal(body, &rep); err != nil {
		t.Fatal(err)
	}
	var mine []salesview.Sale
	for _, sale := range rep.Sales {
		if sale.SKU == s {
			mine = append(mine, sale)
		}
	}
	confirmed := 0
	for _, id := range ids {
		if h.settled(id).Status == "CONFIRMED" {
			confirmed++
		}
	}
	if confirmed == 0 || len(mine) != 1 || mine[0].Orders != int64(confirmed) || mine[0].Currency != "USD" || mine[0].RevenueCents != mine[0].Quantity*300 {
		t.Fatalf("sales of %s today: %+v (%d confirmed orders)", s, mine, confirmed)
	}
}
