package events

import (
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/segmentio/kafka-go"
)

// CloudEvents binary content mode over Kafka: attributes travel as ce_* headers, the payload as the value.
// correlationid, causationid and schemaversion are CloudEvents extension attributes.
const (
	HeaderSpecVersion   = "ce_specversion"
	HeaderID            = "ce_id"
	HeaderType          = "ce_type"
	HeaderSource        = "ce_source"
	HeaderSubject       = "ce_subject"
	HeaderTime          = "ce_time"
	HeaderSchemaVersion = "ce_schemaversion"
	HeaderCorrelationID = "ce_correlationid"
	HeaderCausationID   = "ce_causationid"
	HeaderContentType   = "content-type"
	HeaderTraceParent   = "traceparent"

	specVersion = "1.0"
	contentType = "application/json"
)

// ToMessage maps e onto a Kafka message for topic, keyed by e.Subject.
func ToMessage(topic string, e Envelope) kafka.Message {
	h := []kafka.Header{
		{Key: HeaderSpecVersion, Value: []byte(specVersion)},
		{Key: HeaderID, Value: []byte(e.ID.String())},
		{Key: HeaderType, Value: []byte(e.Type)},
		{Key: HeaderSource, Value: []byte(e.Source)},
		{Key: HeaderSubject, Value: []byte(e.Subject)},
		{Key: HeaderTime, Value: []byte(e.Time.UTC().Format(time.RFC3339Nano))},
		{Key: HeaderSchemaVersion, Value: []byte(strconv.Itoa(e.Version))},
		{Key: HeaderCorrelationID, Value: []byte(e.CorrelationID)},
		{Key: HeaderContentType, Value: []byte(contentType)},
	}
	if e.CausationID != "" {
		h = append(h, kafka.Header{Key: HeaderCausationID, Value: []byte(e.CausationID)})
	}
	if e.TraceParent != "" {
		h = append(h, kafka.Header{Key: HeaderTraceParent, Value: []byte(e.TraceParent)})
	}
	return kafka.Message{Topic: topic, Key: []byte(e.Subject), Value: e.Data, Headers: h}
}

// FromMessage reads the envelope back from a Kafka message. A message that is not a well-formed CloudEvent
// in binary mode yields *FormatError.
func FromMessage(m kafka.Message) (Envelope, error) {
	h := make(map[string]string, len(m.Headers))
	for _, x := range m.Headers {
		h[x.Key] = string(x.Value)
	}
	if v := h[HeaderSpecVersion]; v != specVersion {
		return Envelope{}, &FormatError{Reason: fmt.Sprintf("ce_specversion %q, want %q", v, specVersion)}
	}
	if ct := h[HeaderContentType]; ct != "" && ct != contentType {
		return Envelope{}, &FormatError{Reason: fmt.Sprintf("content-type %q, want %q", ct, contentType)}
	}
	id, err := uuid.Parse(h[HeaderID])
	if err != nil {
		return Envelope{}, &FormatError{Reason: fmt.Sprintf("ce_id %q: %v", h[HeaderID], err)}
	}
	at, err := time.Parse(time.RFC3339Nano, h[HeaderTime])
	if err != nil {
		return Envelope{}, &FormatError{Reason: fmt.Sprintf("ce_time %q: %v", h[HeaderTime], err)}
	}
	version, err := strconv.Atoi(h[HeaderSchemaVersion])
	if err != nil {
		return Envelope{}, &FormatError{Reason: fmt.Sprintf("ce_schemaversion %q: %v", h[HeaderSchemaVersion], err)}
	}
	e := Envelope{
		ID:            id,
		Type:          h[HeaderType],
		Version:       version,
		Source:        h[HeaderSource],
		Subject:       h[HeaderSubject],
		CorrelationID: h[HeaderCorrelationID],
		CausationID:   h[HeaderCausationID],
		Time:          at.UTC(),
		TraceParent:   h[HeaderTraceParent],
		Data:          m.Value,
	}
	if err := e.Validate(); err != nil {
		return Envelope{}, err
	}
	return e, nil
}
