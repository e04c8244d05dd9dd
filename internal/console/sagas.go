package console

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/segmentio/kafka-go"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/internal/httpapi"
	"github.com/choreo-dev/choreo/sagas"
	"github.com/choreo-dev/choreo/sagas/orderview"
)

// Bounds of the saga views.
const (
	sagaEvents   = 200 // events of one order read per topic
	stuckPages   = 20  // pages of PENDING orders looked through for stuck sagas
	stuckPerPage = orderview.MaxLimit
)

// Saga is one order's saga as the topics hold it.
type Saga struct {
	ID       string        `json:"id"`
	Status   string        `json:"status"` // PENDING, CONFIRMED or CANCELLED, from the events
	Reason   string        `json:"reason,omitempty"`
	Lanes    []string      `json:"lanes"` // one per service, in the saga table's order
	Events   []SagaEvent   `json:"events"`
	Expected []Expectation `json:"expected"` // for a pending saga: the steps the choreography waits for
	Notes    []string      `json:"notes,omitempty"`
}

// SagaEvent is one event of a saga.
type SagaEvent struct {
	Message
	ID        string     `json:"id"`
	Type      string     `json:"type"`
	Source    string     `json:"source"`
	At        time.Time  `json:"at"`
	Causation string     `json:"causation,omitempty"`
	Kind      sagas.Kind `json:"kind"`
	// HopMillis is the time from the cause to this event; -1 without a cause among the saga's events.
	HopMillis float64 `json:"hop_ms"`
}

// Expectation is a step the choreography expects next.
type Expectation struct {
	Service string    `json:"service"`
	Action  string    `json:"action"`
	After   string    `json:"after"` // the event it reacts to
	Emits   []string  `json:"emits"`
	Since   time.Time `json:"since"`
	Waited  float64   `json:"waited_seconds"`
}

func (c *Console) handleSaga(w http.ResponseWriter, r *http.Request) {
	id, err := uuid.Parse(r.PathValue("id"))
	if err != nil {
		httpapi.WriteProblem(w, r, httpapi.NewProblem(http.StatusBadRequest, "an order id is a UUID"))
		return
	}
	s, err := c.saga(r.Context(), id.String(), time.Now())
	if err != nil {
		c.cfg.Log.Error().Err(err).Str("order_id", id.String()).Msg("console: read saga")
		httpapi.WriteProblem(w, r, httpapi.NewProblem(http.StatusBadGateway, err.Error()))
		return
	}
	if len(s.Events) == 0 {
		httpapi.WriteProblem(w, r, httpapi.NewProblem(http.StatusNotFound, "no event of order "+id.String()+" in the topics"))
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, s)
}

// saga reads the order's events from every service's topic: from the partition its id hashes to, starting
// at the time its UUIDv7 carries, so no topic is scanned whole.
func (c *Console) saga(ctx context.Context, id string, now time.Time) (Saga, error) {
	s := Saga{ID: id, Lanes: sagas.Services(), Events: []SagaEvent{}, Expected: []Expectation{}}
	var msgs []kafka.Message
	for _, t := range sagas.Topics() {
		topic, err := c.in.Topic(ctx, c.topic(t))
		if err != nil {
			s.Notes = append(s.Notes, err.Error())
			continue
		}
		got, _, err := c.scanKey(ctx, topic, id, "", sagaEvents)
		if err != nil {
			return s, err
		}
		msgs = append(msgs, got...)
	}
	kinds := kindOfEvents()
	for _, m := range msgs {
		e, err := events.FromMessage(m)
		if err != nil {
			s.Notes = append(s.Notes, "not an event at "+m.Topic+": "+err.Error())
			continue
		}
		s.Events = append(s.Events, SagaEvent{Message: decode(m), ID: e.ID.String(), Type: e.Type, Source: e.Source, At: e.Time,
			Causation: e.CausationID, Kind: kinds[e.Type], HopMillis: -1})
	}
	slices.SortStableFunc(s.Events, func(a, b SagaEvent) int { return a.At.Compare(b.At) })
	byID := map[string]SagaEvent{}
	for _, e := range s.Events {
		byID[e.ID] = e
	}
	seen := map[string]SagaEvent{}
	for i, e := range s.Events {
		if cause, ok := byID[e.Causation]; ok {
			s.Events[i].HopMillis = float64(e.At.Sub(cause.At).Microseconds()) / 1000
		}
		if _, ok := seen[e.Type]; !ok {
			seen[e.Type] = e
		}
	}
	s.Status = orderview.Pending
	if _, ok := seen["order.confirmed"]; ok {
		s.Status = orderview.Confirmed
	}
	if e, ok := seen["order.cancelled"]; ok {
		s.Status = orderview.Cancelled
		s.Reason = reasonOf(e)
	}
	if s.Status == orderview.Pending {
		s.Expected = expected(seen, now)
	}
	return s, nil
}

func reasonOf(e SagaEvent) string {
	var p events.OrderCancelled
	_ = json.Unmarshal([]byte(e.Payload), &p)
	return p.Reason
}

// kindOfEvents maps each event type to the kind of reaction that emits it.
func kindOfEvents() map[string]sagas.Kind {
	kinds := map[string]sagas.Kind{}
	for _, r := range sagas.OrderSaga() {
		for _, e := range r.Emits {
			if _, ok := kinds[e]; !ok {
				kinds[e] = r.Kind
			}
		}
	}
	return kinds
}

// expected lists the reactions that moves the saga on and have happened to none of their triggers yet:
// a step or outcome whose trigger was seen and none of whose events was.
func expected(seen map[string]SagaEvent, now time.Time) []Expectation {
	out := []Expectation{}
	for _, r := range sagas.OrderSaga() {
		if r.Kind != sagas.Forward && r.Kind != sagas.Outcome || len(r.Emits) == 0 {
			continue
		}
		trigger, ok := seen[r.Trigger]
		if !ok {
			continue
		}
		done := false
		for _, e := range r.Emits {
			_, got := seen[e]
			done = done || got
		}
		if !done {
			out = append(out, Expectation{Service: r.Service, Action: r.Action, After: r.Trigger, Emits: r.Emits,
				Since: trigger.At, Waited: now.Sub(trigger.At).Seconds()})
		}
	}
	return out
}

// Stuck is a saga PENDING for longer than the threshold.
type Stuck struct {
	ID         string    `json:"id"`
	CustomerID string    `json:"customer_id"`
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
	Pending    float64   `json:"pending_seconds"`
}

// StuckList is the stuck sagas, oldest first.
type StuckList struct {
	OlderThan float64 `json:"older_than_seconds"`
	Sagas     []Stuck `json:"sagas"`
	Truncated bool    `json:"truncated"` // more PENDING orders than were looked through
	Note      string  `json:"note,omitempty"`
}

// handleStuck lists the orders PENDING for longer than older (a duration, default StuckAfter), from the
// read model.
func (c *Console) handleStuck(w http.ResponseWriter, r *http.Request) {
	older := c.cfg.StuckAfter
	if s := r.URL.Query().Get("older"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 {
			httpapi.WriteProblem(w, r, httpapi.NewProblem(http.StatusBadRequest, "older must be a duration such as 30s or 5m"))
			return
		}
		older = d
	}
	out := StuckList{OlderThan: older.Seconds(), Sagas: []Stuck{}}
	if c.cfg.Orders == nil {
		out.Note = "no order read model is reachable from this process"
		httpapi.WriteJSON(w, http.StatusOK, out)
		return
	}
	now := time.Now()
	cursor := ""
	for page := 0; ; page++ {
		if page == stuckPages {
			out.Truncated = true
			break
		}
		p, err := c.cfg.Orders(r.Context(), orderview.Filter{Status: orderview.Pending, Limit: stuckPerPage, Cursor: cursor})
		if err != nil {
			c.cfg.Log.Error().Err(err).Msg("console: list pending orders")
			httpapi.WriteProblem(w, r, httpapi.NewProblem(http.StatusBadGateway, err.Error()))
			return
		}
		for _, o := range p.Orders {
			if now.Sub(o.CreatedAt) >= older {
				out.Sagas = append(out.Sagas, Stuck{ID: o.ID.String(), CustomerID: o.CustomerID, CreatedAt: o.CreatedAt,
					UpdatedAt: o.UpdatedAt, Pending: now.Sub(o.CreatedAt).Seconds()})
			}
		}
		if cursor = p.Next; cursor == "" {
			break
		}
	}
	slices.SortFunc(out.Sagas, func(a, b Stuck) int { return a.CreatedAt.Compare(b.CreatedAt) })
	httpapi.WriteJSON(w, http.StatusOK, out)
}
