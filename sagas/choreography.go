// Package sagas describes choreo's order saga as data: which service reacts to which event, what it does,
// what it may emit, and which reactions are compensations. Services derive their subscriptions from it,
// cmd/choreo/system's TestHandlersMatchTheSaga checks every service registers exactly these reactions, and
// docs/saga.md is generated from it.
package sagas

import (
	"slices"
	"sort"
	"strings"
)

// Service names; each owns a database of that name and publishes to Topic(name).
const (
	Order        = "order"
	Inventory    = "inventory"
	Payment      = "payment"
	Shipping     = "shipping"
	Notification = "notification"
	Customer     = "customer"
)

// Kind classifies a reaction.
type Kind string

const (
	Forward      Kind = "step"         // moves the saga forward
	Compensation Kind = "compensation" // undoes an earlier step
	Outcome      Kind = "outcome"      // settles the order's final state
	Record       Kind = "record"       // keeps data a later step needs; emits nothing
	Lifecycle    Kind = "lifecycle"    // changes a customer, outside any order's saga; others keep copies
)

// Reaction is one edge of the choreography: Service does Action when Trigger happens.
type Reaction struct {
	Service string
	Trigger string   // an event type, or a non-event trigger such as "POST /v1/orders" or "deadline"
	Action  string   // what the service does, in words
	Emits   []string // events the reaction may emit (alternatives)
	Kind    Kind
}

// IsEvent reports whether the reaction's trigger is an event (as opposed to a request or a timer).
func (r Reaction) IsEvent() bool {
	return r.Trigger != TriggerDeadline && !r.IsRequest()
}

// IsRequest reports whether the reaction's trigger is an HTTP request of a client.
func (r Reaction) IsRequest() bool { return slices.Contains(requests, r.Trigger) }

// Triggers that are not events: a timer, and the clients' requests.
const (
	TriggerDeadline         = "saga deadline"
	TriggerPlaceOrder       = "POST /v1/orders"
	TriggerRegisterCustomer = "POST /v1/customers"
	TriggerUpdateCustomer   = "PATCH /v1/customers/me"
	TriggerSetCreditLimit   = "PUT /v1/customers/{id}/credit-limit"
	TriggerBlockCustomer    = "POST /v1/customers/{id}/block"
	TriggerUnblockCustomer  = "POST /v1/customers/{id}/unblock"
)

var requests = []string{TriggerPlaceOrder, TriggerRegisterCustomer, TriggerUpdateCustomer, TriggerSetCreditLimit, TriggerBlockCustomer, TriggerUnblockCustomer}

// OrderSaga returns the order placement saga.
func OrderSaga() []Reaction {
	return []Reaction{
		{Order, TriggerPlaceOrder, "accept the order as PENDING", []string{"order.placed"}, Forward},
		{Inventory, "order.placed", "reserve every line or none", []string{"stock.reserved", "stock.rejected"}, Forward},
		{Customer, "order.placed", "check the customer exists and is not blocked", []string{"customer.approved", "customer.rejected"}, Forward},
		{Payment, "order.placed", "remember the payment token and customer (authorize if it comes last of its join)", nil, Record},
		{Shipping, "order.placed", "remember the shipping address (schedule if it comes last of its join)", nil, Record},
		{Notification, "order.placed", "remember the customer", nil, Record},
		{Payment, "stock.reserved", "authorize the total once the customer is approved", []string{"payment.authorized", "payment.declined"}, Forward},
		{Payment, "customer.approved", "authorize the total once the stock is reserved", []string{"payment.authorized", "payment.declined"}, Forward},
		{Shipping, "payment.authorized", "schedule a shipment", []string{"shipment.scheduled", "shipment.failed"}, Forward},
		{Order, "shipment.scheduled", "confirm the order", []string{"order.confirmed"}, Outcome},

		{Order, "stock.rejected", "cancel the order (out_of_stock)", []string{"order.cancelled"}, Outcome},
		{Order, "customer.rejected", "cancel the order (customer_rejected)", []string{"order.cancelled"}, Outcome},
		{Order, "payment.declined", "cancel the order (payment_declined)", []string{"order.cancelled"}, Outcome},
		{Order, "shipment.failed", "cancel the order (shipping_failed)", []string{"order.cancelled"}, Outcome},
		{Order, TriggerDeadline, "cancel an order still PENDING (expired)", []string{"order.cancelled"}, Outcome},

		{Inventory, "payment.declined", "release the reservation", []string{"stock.released"}, Compensation},
		{Inventory, "shipment.failed", "release the reservation", []string{"stock.released"}, Compensation},
		{Inventory, "order.cancelled", "release the reservation if still held", []string{"stock.released"}, Compensation},
		{Payment, "shipment.failed", "refund the authorization", []string{"payment.refunded"}, Compensation},
		{Payment, "order.cancelled", "refund if authorized; never authorize afterwards", []string{"payment.refunded"}, Compensation},
		{Shipping, "order.cancelled", "cancel the shipment if scheduled; never schedule afterwards", []string{"shipment.cancelled"}, Compensation},

		{Inventory, "order.confirmed", "turn the reservation into a sale", []string{"stock.sold"}, Forward},
		{Notification, "order.confirmed", "tell the customer", []string{"notification.sent"}, Forward},
		{Notification, "order.cancelled", "tell the customer", []string{"notification.sent"}, Forward},

		// The customer's own lifecycle: state the others keep copies of, carried by events, not calls.
		{Customer, TriggerRegisterCustomer, "register the customer", []string{"customer.registered"}, Lifecycle},
		{Customer, TriggerUpdateCustomer, "change the customer's name or email", []string{"customer.updated"}, Lifecycle},
		{Customer, TriggerSetCreditLimit, "set the customer's credit limit (operators)", []string{"customer.credit_limit_set"}, Lifecycle},
		{Customer, TriggerBlockCustomer, "block the customer (operators)", []string{"customer.blocked"}, Lifecycle},
		{Customer, TriggerUnblockCustomer, "unblock the customer (operators)", []string{"customer.unblocked"}, Lifecycle},
		{Notification, "customer.registered", "keep the address; send the messages that waited for it", []string{"notification.sent"}, Forward},
		{Notification, "customer.updated", "keep the new address", nil, Record},
		{Payment, "customer.credit_limit_set", "keep the customer's limit", nil, Record},
	}
}

// Services returns the saga's services, in the order the table first names them.
func Services() []string {
	var services []string
	for _, r := range OrderSaga() {
		if !slices.Contains(services, r.Service) {
			services = append(services, r.Service)
		}
	}
	return services
}

// Topic is the topic a service publishes its events to.
func Topic(service string) string { return service + ".events" }

// Topics returns every service's events topic.
func Topics() []string {
	var ts []string
	for _, s := range Services() {
		ts = append(ts, Topic(s))
	}
	return ts
}

// Emitter returns the service that emits eventType, or "" if none does.
func Emitter(eventType string) string {
	for _, r := range OrderSaga() {
		if slices.Contains(r.Emits, eventType) {
			return r.Service
		}
	}
	return ""
}

// Unhurried returns the event types service reacts to only off the order saga's critical path, sorted:
// a record of an order's event that a later step of the same order reads, or a step taken after the
// order's outcome. No step waits for these soon, so the service's consumer may let them wait for other
// events to share a transaction (consumer.Router.Unhurried). A compensation is never among them (a release
// frees stock others may need), nor a record of a customer's lifecycle (keyed by customer, not order, so no
// later event of the same key ends its wait).
func Unhurried(service string) []string {
	var outcomes []string
	for _, r := range OrderSaga() {
		if r.Kind == Outcome {
			outcomes = append(outcomes, r.Emits...)
		}
	}
	lifecycle := lifecycleEvents()
	off := map[string]bool{}
	for _, r := range OrderSaga() {
		if r.Service != service || !r.IsEvent() {
			continue
		}
		ok := !joined(service, r.Trigger) && // a Join's member may be the one that completes it
			((r.Kind == Record && !slices.Contains(lifecycle, r.Trigger)) ||
				(r.Kind == Forward && slices.Contains(outcomes, r.Trigger)))
		if seen, known := off[r.Trigger]; known {
			ok = ok && seen // every reaction to the type must be off the path
		}
		off[r.Trigger] = ok
	}
	var types []string
	for t, ok := range off {
		if ok {
			types = append(types, t)
		}
	}
	sort.Strings(types)
	return types
}

// A Join is a step that needs several events of an order, in whichever order they come: the reactions to
// all but the last only record, so they may wait for the last to share its transaction
// (consumer.Router.Join).
type Join struct {
	Service string
	Types   []string
}

// OrderJoins are the saga's joins: payment authorizes once it has the payment token (order.placed), the
// reserved total and the customer's approval, the last two decided in parallel by inventory and customer;
// shipping schedules once it has the address and the authorization. In the saga's usual course the last
// of each is the step's trigger, but a consumer reads each topic with a reader of its own, so any of them
// may come last.
func OrderJoins() []Join {
	return []Join{
		{Payment, []string{"order.placed", "stock.reserved", "customer.approved"}},
		{Shipping, []string{"order.placed", "payment.authorized"}},
	}
}

// Joins returns service's joins, each as its types sorted and joined by "+", sorted, as
// consumer.Router.Joins lists them.
func Joins(service string) []string {
	var joins []string
	for _, j := range OrderJoins() {
		if j.Service == service {
			joins = append(joins, strings.Join(slices.Sorted(slices.Values(j.Types)), "+"))
		}
	}
	sort.Strings(joins)
	return joins
}

// joined reports whether service's reaction to eventType is part of a Join.
func joined(service, eventType string) bool {
	for _, j := range OrderJoins() {
		if j.Service == service && slices.Contains(j.Types, eventType) {
			return true
		}
	}
	return false
}

// lifecycleEvents are the events of a customer's lifecycle, outside any order's saga.
func lifecycleEvents() []string {
	var es []string
	for _, r := range OrderSaga() {
		if r.Kind == Lifecycle {
			es = append(es, r.Emits...)
		}
	}
	return es
}

// ReactionsOf returns the event types service reacts to, sorted.
func ReactionsOf(service string) []string {
	var types []string
	for _, r := range OrderSaga() {
		if r.Service == service && r.IsEvent() && !slices.Contains(types, r.Trigger) {
			types = append(types, r.Trigger)
		}
	}
	sort.Strings(types)
	return types
}

// Subscriptions returns the topics service must consume: those of the emitters of what it reacts to.
func Subscriptions(service string) []string {
	var topics []string
	for _, t := range ReactionsOf(service) {
		if topic := Topic(Emitter(t)); !slices.Contains(topics, topic) {
			topics = append(topics, topic)
		}
	}
	sort.Strings(topics)
	return topics
}
