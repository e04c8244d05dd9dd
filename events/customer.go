package events

import "errors"

// Reasons the customer service rejects an order, carried by CustomerRejected.Reason.
const (
	RejectUnknownCustomer = "unknown_customer"
	RejectBlocked         = "blocked"
)

// CustomerRegistered: a customer registered. Its subject is the customer id, not an order: customer
// lifecycle events carry state (the address, the credit limit) that other services keep copies of.
// The password never leaves the customer service.
type CustomerRegistered struct {
	CustomerID string `json:"customer_id"`
	Email      string `json:"email"`
	Name       string `json:"name"`
}

func (CustomerRegistered) EventType() string { return "customer.registered" }
func (CustomerRegistered) EventVersion() int { return 1 }
func (p CustomerRegistered) Validate() error {
	if p.CustomerID == "" || p.Email == "" {
		return errors.New("customer_id and email are required")
	}
	return nil
}

// CustomerUpdated: a customer changed their name or email; it carries both, as they are now.
type CustomerUpdated struct {
	CustomerID string `json:"customer_id"`
	Email      string `json:"email"`
	Name       string `json:"name"`
}

func (CustomerUpdated) EventType() string { return "customer.updated" }
func (CustomerUpdated) EventVersion() int { return 1 }
func (p CustomerUpdated) Validate() error {
	if p.CustomerID == "" || p.Email == "" {
		return errors.New("customer_id and email are required")
	}
	return nil
}

// CustomerCreditLimitSet: an operator set the most a customer's order may total.
type CustomerCreditLimitSet struct {
	CustomerID string `json:"customer_id"`
	LimitCents int64  `json:"limit_cents"`
}

func (CustomerCreditLimitSet) EventType() string { return "customer.credit_limit_set" }
func (CustomerCreditLimitSet) EventVersion() int { return 1 }
func (p CustomerCreditLimitSet) Validate() error {
	if p.CustomerID == "" || p.LimitCents < 0 {
		return errors.New("customer_id is required and limit_cents must not be negative")
	}
	return nil
}

// CustomerBlocked: an operator blocked a customer; their new orders are rejected.
type CustomerBlocked struct {
	CustomerID string `json:"customer_id"`
	Reason     string `json:"reason,omitempty"`
}

func (CustomerBlocked) EventType() string { return "customer.blocked" }
func (CustomerBlocked) EventVersion() int { return 1 }
func (p CustomerBlocked) Validate() error { return requireCustomerID(p.CustomerID) }

// CustomerUnblocked: an operator lifted a customer's block.
type CustomerUnblocked struct {
	CustomerID string `json:"customer_id"`
}

func (CustomerUnblocked) EventType() string { return "customer.unblocked" }
func (CustomerUnblocked) EventVersion() int { return 1 }
func (p CustomerUnblocked) Validate() error { return requireCustomerID(p.CustomerID) }

// CustomerApproved: a saga step, about an order: its customer exists and is not blocked.
type CustomerApproved struct {
	OrderID    string `json:"order_id"`
	CustomerID string `json:"customer_id"`
}

func (CustomerApproved) EventType() string { return "customer.approved" }
func (CustomerApproved) EventVersion() int { return 1 }
func (p CustomerApproved) Validate() error { return requireOrderID(p.OrderID) }

// CustomerRejected: a saga step, about an order: its customer is unknown or blocked.
type CustomerRejected struct {
	OrderID    string `json:"order_id"`
	CustomerID string `json:"customer_id"`
	Reason     string `json:"reason"` // RejectUnknownCustomer or RejectBlocked
}

func (CustomerRejected) EventType() string { return "customer.rejected" }
func (CustomerRejected) EventVersion() int { return 1 }
func (p CustomerRejected) Validate() error { return requireOrderID(p.OrderID) }

// CustomerLifecycle lists the events whose subject is a customer rather than an order: they belong to no
// order's saga, so the order read model leaves them out.
func CustomerLifecycle() []Payload {
	return []Payload{CustomerRegistered{}, CustomerUpdated{}, CustomerCreditLimitSet{}, CustomerBlocked{}, CustomerUnblocked{}}
}

func requireCustomerID(id string) error {
	if id == "" {
		return errors.New("customer_id is required")
	}
	return nil
}
