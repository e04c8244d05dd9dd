// Package events defines choreo's event envelope, the typed payload of every event type and version, the
// registry that decodes them, and their mapping onto Kafka messages (CloudEvents binary content mode).
package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// Envelope is the metadata every event carries, plus its JSON payload.
type Envelope struct {
	ID            uuid.UUID       // UUIDv7: unique, roughly time-ordered
	Type          string          // e.g. "order.placed"
	Version       int             // schema version of Data for this Type
	Source        string          // the service that emitted it, e.g. "order"
	Subject       string          // the order id; also the Kafka key, so one order's events keep their order
	CorrelationID string          // the saga this event belongs to
	CausationID   string          // the id of the event that caused this one; empty for a saga's first event
	Time          time.Time       // when the event happened (UTC)
	TraceParent   string          // W3C traceparent, when the cause carried one
	Data          json.RawMessage // the payload, JSON
}

// Payload is implemented by every typed event payload.
type Payload interface {
	EventType() string
	EventVersion() int
}

// validator is implemented by payloads that can check their own required fields.
type validator interface {
	Validate() error
}

// New builds the envelope for payload p about subject, emitted by source. It starts a new saga: its
// correlation id is its own id. Use CausedBy to continue a saga.
func New(source, subject string, p Payload) (Envelope, error) {
	if source == "" || subject == "" {
		return Envelope{}, errors.New("new event: source and subject are required")
	}
	id, err := uuid.NewV7()
	if err != nil {
		return Envelope{}, fmt.Errorf("new event id: %w", err)
	}
	data, err := json.Marshal(p)
	if err != nil {
		return Envelope{}, fmt.Errorf("encode %s payload: %w", p.EventType(), err)
	}
	return Envelope{
		ID:            id,
		Type:          p.EventType(),
		Version:       p.EventVersion(),
		Source:        source,
		Subject:       subject,
		CorrelationID: id.String(),
		Time:          time.Now().UTC(),
		Data:          data,
	}, nil
}

// CausedBy returns e as a consequence of cause: same saga (correlation id and trace), cause as causation.
func (e Envelope) CausedBy(cause Envelope) Envelope {
	e.CorrelationID = cause.CorrelationID
	e.CausationID = cause.ID.String()
	e.TraceParent = cause.TraceParent
	return e
}

// Validate reports whether the envelope has every required attribute.
func (e Envelope) Validate() error {
	var missing []string
	if e.ID == uuid.Nil {
		missing = append(missing, "id")
	}
	for name, v := range map[string]string{"type": e.Type, "source": e.Source, "subject": e.Subject, "correlation id": e.CorrelationID} {
		if v == "" {
			missing = append(missing, name)
		}
	}
	if e.Version < 1 {
		missing = append(missing, "version")
	}
	if e.Time.IsZero() {
		missing = append(missing, "time")
	}
	if len(missing) > 0 {
		return &FormatError{Reason: fmt.Sprintf("missing %v", missing)}
	}
	return nil
}
