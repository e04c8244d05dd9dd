package consumer

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/segmentio/kafka-go"

	"github.com/choreo-dev/choreo/events"
)

// Event is what a handler receives: the envelope, its decoded payload and where it came from.
type Event struct {
	events.Envelope
	Payload   events.Payload // nil only for a Router.Default handler receiving a type the registry does not know
	Topic     string
	Partition int
	Offset    int64

	index int // its place in the batch being applied, for a BatchScope's failures (see Pending)
}

// Handler applies one event inside tx, the transaction that also records the event in the inbox. It may
// append new events to the outbox through tx. Return Permanent(err) for an event that can never succeed;
// any other error is retried.
type Handler func(ctx context.Context, tx pgx.Tx, ev Event) error

// Router maps event types to handlers. Routes are keyed by payload type (On, OnEach), so a handler always
// receives the payload it was written for. An event with no route is counted as ignored: a service's topics
// carry the other event types of their emitters, which it has no business with.
type Router struct {
	reg       *events.Registry
	routes    map[string]Handler
	def       Handler
	scope     BatchScope
	unhurried map[string]bool       // event types that may wait Config.Linger to share a transaction
	joins     [][]string            // the types of each Join
	member    map[string]joinMember // event type -> its place in a Join
}

// joinMember is an event type's place in a Join: which one, and its bit in the set a worker has taken.
type joinMember struct {
	join int
	bit  uint32
	all  uint32 // every member's bit
}

// BatchScope is a service's work that spans a batch transaction rather than one event: Begin runs before
// the batch's handlers, with the events they will receive, and returns the context they get (it may carry
// state they share); Finish runs after them, in the same transaction, just before the commit. A batch that
// is retried begins afresh.
type BatchScope interface {
	Begin(ctx context.Context, tx pgx.Tx, evs []Event) (context.Context, error)
	Finish(ctx context.Context, tx pgx.Tx) error
}

// NewRouter returns a router that decodes payloads with reg.
func NewRouter(reg *events.Registry) *Router {
	return &Router{reg: reg, routes: map[string]Handler{}, unhurried: map[string]bool{}, member: map[string]joinMember{}}
}

// On routes events whose payload is P to h, which receives the payload typed.
func On[P events.Payload](r *Router, h func(ctx context.Context, tx pgx.Tx, ev Event, p P) error) {
	var zero P
	r.add(zero.EventType(), func(ctx context.Context, tx pgx.Tx, ev Event) error {
		p, ok := ev.Payload.(P)
		if !ok { // the registry maps this type to another struct: a programming error, never retried
			return Permanent(fmt.Errorf("%s carries %T, the handler wants %T", ev.Type, ev.Payload, zero))
		}
		return h(ctx, tx, ev, p)
	})
}

// OnEach routes events of each prototype's type to h, for a reaction that reads only the envelope (the
// subject and type), such as a compensation triggered by several failures.
func (r *Router) OnEach(h Handler, prototypes ...events.Payload) {
	for _, p := range prototypes {
		r.add(p.EventType(), h)
	}
}

// Scope sets the service's BatchScope. A service whose handlers change rows shared across orders (a
// product's stock) changes them there, for the whole batch at once and in one global order (sorted keys),
// as late as possible: two batches then never wait on each other in a cycle, and hold those locks only for
// the end of their transaction. The rows of one order need no such care: all its events reach one worker
// (see worker).
func (r *Router) Scope(s BatchScope) { r.scope = s }

// Unhurried marks the prototypes' event types as off the saga's critical path: nothing waits for the
// service's reaction to them soon (a record a later step reads, a reaction to the order's outcome). A batch
// made of such events (and events nobody handles) waits up to Config.Linger for more events to share its
// transaction; the first handled event of another type ends the wait. So a record that a later event of
// the same order needs commits with that event, and reactions to outcomes commit several at a time,
// instead of each paying for a transaction, a relay read and a Kafka write of its own.
func (r *Router) Unhurried(prototypes ...events.Payload) {
	for _, p := range prototypes {
		r.unhurried[p.EventType()] = true
	}
}

// Join marks event types that one step needs all of, for the same key, in whichever order they come
// (payment authorizes once it has the payment token, the reserved total and the customer's approval): the
// reactions to all but the last only record, so each may wait, up to Config.Linger, for the rest to share
// its transaction; the last never waits. A worker knows which came last from what it has taken since its
// partitions were assigned: after a rebalance, the last of a join whose others the new owner did not take
// waits too (up to the linger, once). A type belongs to one join at most; at most 32 types per join.
func (r *Router) Join(prototypes ...events.Payload) {
	if len(prototypes) < 2 || len(prototypes) > 32 {
		panic(fmt.Sprintf("consumer: a join of %d types", len(prototypes))) // wiring error, found by every test
	}
	all := uint32(1)<<len(prototypes) - 1
	var types []string
	for i, p := range prototypes {
		t := p.EventType()
		if _, dup := r.member[t]; dup {
			panic(fmt.Sprintf("consumer: %s in two joins", t))
		}
		r.member[t] = joinMember{join: len(r.joins), bit: 1 << i, all: all}
		types = append(types, t)
	}
	r.joins = append(r.joins, types)
}

// Joins returns the joins, each as its types sorted and joined by "+", sorted.
func (r *Router) Joins() []string {
	var joins []string
	for _, types := range r.joins {
		joins = append(joins, strings.Join(slices.Sorted(slices.Values(types)), "+"))
	}
	slices.Sort(joins)
	return joins
}

// UnhurriedTypes returns the event types marked Unhurried, sorted.
func (r *Router) UnhurriedTypes() []string { return slices.Sorted(maps.Keys(r.unhurried)) }

// urgency is how soon a message must be applied, for Config.Linger.
type urgency int

const (
	urgent      urgency = iota // a handled event not marked Unhurried, or a message without a type
	unhurried                  // an event of a type marked Unhurried (or of a Join, not its last)
	indifferent                // an event nobody handles: it needs no transaction, and neither starts nor ends a wait
	joining                    // an event of a Join: unhurried unless it is the last of its join to come
)

// urgencyOf tells how soon m must be applied, and its type, reading only its type header.
func (r *Router) urgencyOf(m kafka.Message) (urgency, string) {
	for _, h := range m.Headers {
		if h.Key != events.HeaderType {
			continue
		}
		t := string(h.Value)
		_, routed := r.routes[t]
		_, joins := r.member[t]
		switch {
		case r.unhurried[t]:
			return unhurried, t
		case joins && routed:
			return joining, t
		case !routed && r.def == nil:
			return indifferent, t
		}
		return urgent, t
	}
	return urgent, "" // no type: poison, dead-lettered at once
}

// Default routes every event without a route of its own to h, whose payload is nil when the registry does
// not know the type (a projection records every event of a saga, known or not).
func (r *Router) Default(h Handler) { r.def = h }

func (r *Router) add(eventType string, h Handler) {
	if _, dup := r.routes[eventType]; dup {
		panic(fmt.Sprintf("consumer: two routes for %s", eventType)) // wiring error, found by every test
	}
	r.routes[eventType] = h
}

// Reactions returns the event types with a route of their own, sorted: what the service reacts to, to be
// checked against the saga's table.
func (r *Router) Reactions() []string { return slices.Sorted(maps.Keys(r.routes)) }

// Dispatch decodes the payloads of envs with the router's registry and runs their handlers in order in tx,
// within the router's BatchScope as one batch, as the consumer would after recording the events in its
// inbox; false means an event had no route (nothing is run then). Tests of a service's handlers use it.
func (r *Router) Dispatch(ctx context.Context, tx pgx.Tx, envs ...events.Envelope) (bool, error) {
	hs := make([]Handler, len(envs))
	evs := make([]Event, len(envs))
	for i, env := range envs {
		h, p, err := r.resolve(env)
		if err != nil {
			return true, err // routed, but the payload does not decode
		}
		if h == nil {
			return false, nil
		}
		hs[i], evs[i] = h, Event{Envelope: env, Payload: p, index: i}
	}
	if r.scope != nil {
		var err error
		if ctx, err = r.scope.Begin(ctx, tx, evs); err != nil {
			return true, err
		}
	}
	for i, h := range hs {
		if err := h(ctx, tx, evs[i]); err != nil {
			return true, err
		}
	}
	if r.scope == nil {
		return true, nil
	}
	return true, r.scope.Finish(ctx, tx)
}

// route finds the handler for m, decoding what it needs. A nil handler means: nothing to do.
func (r *Router) route(m kafka.Message) (Handler, Event, error) {
	env, err := events.FromMessage(m)
	if err != nil {
		return nil, Event{}, err
	}
	ev := Event{Envelope: env, Topic: m.Topic, Partition: m.Partition, Offset: m.Offset}
	h, p, err := r.resolve(env)
	ev.Payload = p
	return h, ev, err
}

// resolve returns env's handler (nil if none) and decoded payload. A Default handler receives a type the
// registry does not know with a nil payload; a routed type that does not decode is an error.
func (r *Router) resolve(env events.Envelope) (Handler, events.Payload, error) {
	h, specific := r.routes[env.Type]
	if !specific {
		h = r.def
	}
	if h == nil {
		return nil, nil, nil
	}
	p, err := r.reg.Decode(env)
	if err != nil {
		var unknown *events.UnknownTypeError
		if !specific && errors.As(err, &unknown) {
			return h, nil, nil
		}
		return nil, nil, err
	}
	return h, p, nil
}
