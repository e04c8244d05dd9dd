package outbox

import (
	"context"
	"errors"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/choreo-dev/choreo/internal/telemetry"
)

// traceHeader is the W3C Trace Context header the appended events carry (events.HeaderTraceParent).
const traceHeader = "traceparent"

// WithTracing records a span per published row that carries a traceparent, from the row's creation to
// Kafka's acknowledgement, as a child of that traceparent; the message leaves with the span's own
// traceparent, so the consumer's span is its child. Rows without one (raw messages) get no span. Off
// (nil) by default.
func WithTracing(tp trace.TracerProvider) Option {
	return func(c *config) {
		if tp != nil {
			c.tracer = tp.Tracer("github.com/choreo-dev/choreo/outbox")
		}
	}
}

// startSpans starts the publish span of every record of msgs (the records' messages, in order) that
// carries a traceparent, and rewrites that header of msgs to the span's.
func (r *Relay) startSpans(recs []Record, msgs []kafka.Message) []trace.Span {
	if r.cfg.tracer == nil {
		return nil
	}
	spans := make([]trace.Span, 0, len(msgs))
	for i := range msgs {
		m := &msgs[i]
		at := -1
		for j, h := range m.Headers {
			if h.Key == traceHeader {
				at = j
			}
		}
		if at < 0 {
			continue
		}
		parent := telemetry.ContextWithParent(context.Background(), string(m.Headers[at].Value))
		ctx, span := r.cfg.tracer.Start(parent, "publish "+m.Topic,
			trace.WithSpanKind(trace.SpanKindProducer),
			trace.WithTimestamp(recs[i].CreatedAt),
			trace.WithAttributes(
				attribute.String("messaging.system", "kafka"),
				attribute.String("messaging.operation.type", "send"),
				attribute.String("messaging.destination.name", m.Topic),
				attribute.String("messaging.message.id", headerValue(m.Headers, "ce_id")),
				attribute.String("choreo.event.type", headerValue(m.Headers, "ce_type")),
				attribute.String("choreo.order_id", string(m.Key)),
				attribute.Int64("choreo.outbox.id", recs[i].ID),
			))
		span.AddEvent("kafka write")
		if tp := telemetry.TraceParent(ctx); tp != "" {
			// A header slice of its own: the message's headers may share their array with the record's.
			hs := append([]kafka.Header(nil), m.Headers...)
			hs[at].Value = []byte(tp)
			m.Headers = hs
		}
		spans = append(spans, span)
	}
	return spans
}

// endSpans ends the publish spans once Kafka acknowledged (ok) or the relay gave up on the batch.
func endSpans(spans []trace.Span, ok bool) {
	for _, s := range spans {
		if !ok {
			s.RecordError(errors.New("not acknowledged before shutdown"))
			s.SetStatus(codes.Error, "not acknowledged")
		}
		s.End()
	}
}

func headerValue(hs []kafka.Header, key string) string {
	for _, h := range hs {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}
