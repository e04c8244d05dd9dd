package order

import (
	"errors"
	"net/http"

	"github.com/choreo-dev/choreo/internal/auth"
	"github.com/choreo-dev/choreo/internal/httpapi"
	"github.com/choreo-dev/choreo/internal/telemetry"
)

func (s *Service) handlePlace(w http.ResponseWriter, r *http.Request) {
	var req PlaceRequest
	if p := httpapi.DecodeJSON(w, r, &req); p != nil {
		httpapi.WriteProblem(w, r, p)
		return
	}
	// The token's subject is the customer: an empty customer_id is theirs, another one only an operator's.
	if p, ok := auth.FromContext(r.Context()); ok {
		switch {
		case req.CustomerID == "":
			req.CustomerID = p.Subject
		case req.CustomerID != p.Subject && !p.Operator():
			httpapi.WriteProblem(w, r, httpapi.NewProblem(http.StatusForbidden, "customer_id must be the token's subject (or be left out)"))
			return
		}
	}
	if errs := req.Validate(); len(errs) > 0 {
		httpapi.WriteProblem(w, r, httpapi.Invalid(errs))
		return
	}
	key := r.Header.Get("Idempotency-Key")
	if len(key) > 255 {
		httpapi.WriteProblem(w, r, httpapi.NewProblem(http.StatusBadRequest, "Idempotency-Key is longer than 255 characters"))
		return
	}
	// The request's span, when the process traces (its parent is the caller's traceparent); else the
	// caller's traceparent as it came.
	trace := telemetry.TraceParent(r.Context())
	if trace == "" {
		trace = r.Header.Get("traceparent")
	}
	placed, err := s.Place(r.Context(), req, PlaceOptions{IdempotencyKey: key, TraceParent: trace})
	switch {
	case errors.Is(err, ErrKeyReused):
		httpapi.WriteProblem(w, r, httpapi.NewProblem(http.StatusUnprocessableEntity, "this Idempotency-Key was used for a different request"))
		return
	case err != nil:
		s.log.Error().Err(err).Str("customer_id", req.CustomerID).Msg("place order failed")
		httpapi.WriteError(w, r, err)
		return
	}
	w.Header().Set("Location", "/v1/orders/"+placed.ID.String())
	httpapi.WriteJSON(w, http.StatusAccepted, placed)
}
