package consumer

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/choreo-dev/choreo/internal/telemetry"
)

// tracerName names the instrumentation scope of the handler spans.
const tracerName = "github.com/choreo-dev/choreo/consumer"

// tracerOf returns the tracer of cfg.Tracing, nil when the consumer traces nothing.
func tracerOf(cfg Config) trace.Tracer {
	if cfg.Tracing == nil {
		return nil
	}
	return cfg.Tracing.Tracer(tracerName)
}

// instrumented runs h for ev in tx as call does, observed: a span per call when the consumer traces, child
// of the traceparent the event carries, whose own traceparent the handler's events carry on (they copy
// ev.TraceParent), so one order is one trace across the services; the call's duration by event type
// (Config.OnHandled); and the commit hooks the handler registered are dropped if it fails.
func (w *worker) instrumented(ctx context.Context, h Handler, tx pgx.Tx, ev Event) error {
	var span trace.Span
	if w.c.tracer != nil {
		ctx, span = w.c.tracer.Start(telemetry.ContextWithParent(ctx, ev.TraceParent), "handle "+ev.Type,
			trace.WithSpanKind(trace.SpanKindConsumer),
			trace.WithAttributes(
				attribute.String("messaging.system", "kafka"),
				attribute.String("messaging.operation.type", "process"),
				attribute.String("messaging.destination.name", ev.Topic),
				attribute.String("messaging.consumer.group.name", w.c.cfg.Group),
				attribute.String("messaging.message.id", ev.ID.String()),
				attribute.Int("messaging.destination.partition.id", ev.Partition),
				attribute.Int64("messaging.kafka.offset", ev.Offset),
				attribute.String("choreo.event.type", ev.Type),
				attribute.String("choreo.order_id", ev.Subject),
			))
		if tp := telemetry.TraceParent(ctx); tp != "" {
			ev.TraceParent = tp
		}
	}
	hooks, _ := ctx.Value(commitHooksKey{}).(*commitHooks)
	registered := hooks.len()
	start := time.Now()
	err := call(ctx, h, tx, ev)
	if w.c.cfg.OnHandled != nil {
		w.c.cfg.OnHandled(ev.Type, time.Since(start))
	}
	if err != nil {
		hooks.truncate(registered)
	}
	if span != nil {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}
	return err
}

// commitHooks are the functions handlers registered with AfterCommit during one batch transaction.
type commitHooks struct{ fns []func() }

type commitHooksKey struct{}

// withCommitHooks returns ctx carrying a new set of commit hooks, for one batch transaction.
func withCommitHooks(ctx context.Context) (context.Context, *commitHooks) {
	h := &commitHooks{}
	return context.WithValue(ctx, commitHooksKey{}, h), h
}

func (h *commitHooks) len() int {
	if h == nil {
		return 0
	}
	return len(h.fns)
}

func (h *commitHooks) truncate(n int) {
	if h != nil {
		clear(h.fns[n:])
		h.fns = h.fns[:n]
	}
}

// run runs the hooks, once the transaction committed.
func (h *commitHooks) run() {
	for _, fn := range h.fns {
		fn()
	}
	h.fns = nil
}

// AfterCommit runs fn once the transaction the handler runs in has committed, and never if it rolls back
// or the handler fails (the event is then applied again, and its handler registers again). Handlers count
// what they did with it (metrics), which a rolled-back transaction must not count. Outside the consumer
// runtime (Router.Dispatch) fn runs at once.
func AfterCommit(ctx context.Context, fn func()) {
	if h, ok := ctx.Value(commitHooksKey{}).(*commitHooks); ok {
		h.fns = append(h.fns, fn)
		return
	}
	fn()
}
