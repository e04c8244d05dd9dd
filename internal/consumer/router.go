package consumer

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
	"github.com/segmentio/kafka-go"

	"github.com/choreo-dev/choreo/events"
)

// Event is what a handler receives: the envelope, its decoded payload and where it came from.
type Event struct {
	events.Envelope
	Payload   events.Payload // nil only for OnAny handlers receiving a type the registry does not know
	Topic     string
	Partition int
	Offset    int64
}

// Handler applies one event inside tx, the transaction that also records the event in the inbox. It may
// append new events to the outbox through tx. Return Permanent(err) for an event that can never succeed;
// any other error is retried.
type Handler func(ctx context.Context, tx pgx.Tx, ev Event) error

// Router maps event types to handlers. Types without a route are acknowledged and ignored.
type Router struct {
	reg    *events.Registry
	routes map[string]Handler
	any    Handler
}

// NewRouter returns a router that decodes payloads with reg.
func NewRouter(reg *events.Registry) *Router {
	return &Router{reg: reg, routes: map[string]Handler{}}
}

// On routes events of eventType to h.
func (r *Router) On(eventType string, h Handler) *Router {
	r.routes[eventType] = h
	return r
}

// OnAny routes every event without a specific route to h, whose payload is nil when the type is unknown
// (a projection records every event of a saga, known or not).
func (r *Router) OnAny(h Handler) *Router {
	r.any = h
	return r
}

// Lookup returns the handler routed for eventType (the OnAny handler if none), or nil.
func (r *Router) Lookup(eventType string) Handler {
	if h, ok := r.routes[eventType]; ok {
		return h
	}
	return r.any
}

// route finds the handler for m, decoding what it needs. A nil handler means: nothing to do.
func (r *Router) route(m kafka.Message) (Handler, Event, error) {
	env, err := events.FromMessage(m)
	if err != nil {
		return nil, Event{}, err
	}
	ev := Event{Envelope: env, Topic: m.Topic, Partition: m.Partition, Offset: m.Offset}
	h, specific := r.routes[env.Type]
	if !specific {
		h = r.any
	}
	if h == nil {
		return nil, ev, nil
	}
	ev.Payload, err = r.reg.Decode(env)
	if err != nil {
		var unknown *events.UnknownTypeError
		if !specific && errors.As(err, &unknown) {
			return h, ev, nil
		}
		return nil, ev, err
	}
	return h, ev, nil
}
