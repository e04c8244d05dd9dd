package salesview

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"

	"github.com/choreo-dev/choreo/internal/httpapi"
)

// Sale is one product's sales on one day, in one currency.
type Sale struct {
	Day          string `json:"day"` // YYYY-MM-DD, UTC
	SKU          string `json:"sku"`
	Currency     string `json:"currency"`
	Quantity     int64  `json:"quantity"`
	RevenueCents int64  `json:"revenue_cents"`
	Orders       int64  `json:"orders"` // confirmed orders with the product that day
}

// Report is the answer of GET /v1/reports/sales.
type Report struct {
	From  string `json:"from"`
	To    string `json:"to"`
	Sales []Sale `json:"sales"` // by day, then sku
}

// MaxDays is the longest range one report covers.
const MaxDays = 366

// ErrNotBuilt means the report has not been built yet (its first build is running).
var ErrNotBuilt = errors.New("the sales report is being built")

// Reports serves the sales report from the projection's live copy in pool's database.
type Reports struct {
	pool *pgxpool.Pool
	log  zerolog.Logger
}

// NewReports returns the report's API over pool.
func NewReports(pool *pgxpool.Pool, log zerolog.Logger) *Reports {
	return &Reports{pool: pool, log: log}
}

// Routes registers GET /v1/reports/sales (auth.Policy: operators only, as every route it does not name).
func (rp *Reports) Routes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/reports/sales", rp.handleSales)
}

func (rp *Reports) handleSales(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var errs []httpapi.FieldError
	day := func(field string) time.Time {
		d, err := time.Parse(time.DateOnly, q.Get(field))
		if err != nil {
			errs = append(errs, httpapi.FieldError{Field: field, Detail: "required: a day as YYYY-MM-DD"})
		}
		return d
	}
	from, to := day("from"), day("to")
	if len(errs) == 0 && (to.Before(from) || to.Sub(from) > (MaxDays-1)*24*time.Hour) {
		errs = append(errs, httpapi.FieldError{Field: "to", Detail: fmt.Sprintf("must be on or after from, at most %d days later", MaxDays-1)})
	}
	if len(errs) > 0 {
		httpapi.WriteProblem(w, r, httpapi.Invalid(errs))
		return
	}
	rep, err := rp.Sales(r.Context(), from, to)
	switch {
	case errors.Is(err, ErrNotBuilt):
		w.Header().Set("Retry-After", "5")
		httpapi.WriteProblem(w, r, httpapi.NewProblem(http.StatusServiceUnavailable, "the sales report is being built from the event history; retry shortly"))
	case err != nil:
		rp.log.Error().Err(err).Msg("sales report failed")
		httpapi.WriteError(w, r, err)
	default:
		httpapi.WriteJSON(w, http.StatusOK, rep)
	}
}

// Sales returns the sales of the days from..to (inclusive).
func (rp *Reports) Sales(ctx context.Context, from, to time.Time) (Report, error) {
	rows, _ := rp.pool.Query(ctx, `SELECT to_char(day, 'YYYY-MM-DD'), sku, currency, quantity, revenue_cents, orders
FROM salesview.daily_sales WHERE day BETWEEN $1 AND $2 ORDER BY day, sku, currency`, from, to)
	sales, err := pgx.CollectRows(rows, pgx.RowToStructByPos[Sale])
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P01" { // undefined_table: the first build has not swapped in yet
		return Report{}, ErrNotBuilt
	}
	if err != nil {
		return Report{}, fmt.Errorf("sales report: %w", err)
	}
	return Report{From: from.Format(time.DateOnly), To: to.Format(time.DateOnly), Sales: sales}, nil
}
