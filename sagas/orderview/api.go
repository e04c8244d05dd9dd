package orderview

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/google/uuid"

	"github.com/choreo-dev/choreo/internal/auth"
	"github.com/choreo-dev/choreo/internal/httpapi"
)

func (s *Service) handleGet(w http.ResponseWriter, r *http.Request) {
	id, err := uuid.Parse(r.PathValue("id"))
	if err != nil {
		httpapi.WriteProblem(w, r, httpapi.NewProblem(http.StatusNotFound, "no order has this id"))
		return
	}
	o, err := s.visible(r.Context(), id)
	switch {
	case errors.Is(err, ErrNotFound):
		httpapi.WriteProblem(w, r, httpapi.NewProblem(http.StatusNotFound, "no order has this id (a new order shows up once its order.placed is projected)"))
	case errors.Is(err, ErrNotBuilt):
		writeNotBuilt(w, r)
	case err != nil:
		s.log.Error().Err(err).Str("order_id", id.String()).Msg("get order failed")
		httpapi.WriteError(w, r, err)
	default:
		httpapi.WriteJSON(w, http.StatusOK, o)
	}
}

func (s *Service) handleList(w http.ResponseWriter, r *http.Request) {
	f, errs := parseFilter(r.URL.Query())
	if len(errs) > 0 {
		httpapi.WriteProblem(w, r, httpapi.Invalid(errs))
		return
	}
	p, err := s.listVisible(r.Context(), f)
	if errors.Is(err, ErrNotBuilt) {
		writeNotBuilt(w, r)
		return
	}
	if err != nil {
		s.log.Error().Err(err).Msg("list orders failed")
		httpapi.WriteError(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, p)
}

// visible is Get for the caller: another customer's order is ErrNotFound, so its existence is not told.
func (s *Service) visible(ctx context.Context, id uuid.UUID) (Order, error) {
	o, err := s.Get(ctx, id)
	if customer, all := auth.Customer(ctx); err == nil && !all && o.CustomerID != customer {
		return Order{}, ErrNotFound
	}
	return o, err
}

// listVisible is List for the caller: a customer sees only their own orders (asking for another
// customer's gives an empty page).
func (s *Service) listVisible(ctx context.Context, f Filter) (Page, error) {
	if customer, all := auth.Customer(ctx); !all {
		if f.CustomerID != "" && f.CustomerID != customer {
			return Page{Orders: []Order{}}, nil
		}
		f.CustomerID = customer
	}
	return s.List(ctx, f)
}

// parseFilter reads status, customer_id, limit and cursor, listing every invalid one.
func parseFilter(q url.Values) (Filter, []httpapi.FieldError) {
	var errs []httpapi.FieldError
	f := Filter{Status: q.Get("status"), CustomerID: q.Get("customer_id"), Cursor: q.Get("cursor")}
	switch f.Status {
	case "", Pending, Confirmed, Cancelled:
	default:
		errs = append(errs, httpapi.FieldError{Field: "status", Detail: fmt.Sprintf("must be %s, %s or %s", Pending, Confirmed, Cancelled)})
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxLimit {
			errs = append(errs, httpapi.FieldError{Field: "limit", Detail: fmt.Sprintf("must be an integer between 1 and %d", MaxLimit)})
		}
		f.Limit = n
	}
	if f.Cursor != "" {
		if _, err := decodeCursor(f.Cursor); err != nil {
			errs = append(errs, httpapi.FieldError{Field: "cursor", Detail: "must be the next value of a previous page"})
		}
	}
	return f, errs
}

// writeNotBuilt answers 503 while the first copy of the read model is built (it is swapped in whole).
func writeNotBuilt(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Retry-After", "5")
	httpapi.WriteProblem(w, r, httpapi.NewProblem(http.StatusServiceUnavailable, "the order read model is being built from the event history; retry shortly"))
}
