package events

import (
	"errors"
	"fmt"
	"time"
)

// Reasons an order is cancelled, carried by OrderCancelled.Reason.
const (
	ReasonOutOfStock      = "out_of_stock"
	ReasonPaymentDeclined = "payment_declined"
	ReasonShippingFailed  = "shipping_failed"
	ReasonExpired         = "expired"
	// ReasonCustomerRejected: the customer service did not approve the order's customer.
	ReasonCustomerRejected = "customer_rejected"
)

// Item is one line of an order as the customer placed it.
type Item struct {
	SKU      string `json:"sku"`
	Quantity int    `json:"quantity"`
}

// Address is where an order ships to.
type Address struct {
	Name       string `json:"name"`
	Line1      string `json:"line1"`
	City       string `json:"city"`
	PostalCode string `json:"postal_code"`
	Country    string `json:"country"`
}

// OrderPlaced starts the saga: the order service accepted an order, now PENDING.
type OrderPlaced struct {
	OrderID         string    `json:"order_id"`
	CustomerID      string    `json:"customer_id"`
	Items           []Item    `json:"items"`
	PaymentToken    string    `json:"payment_token"`
	ShippingAddress Address   `json:"shipping_address"`
	Deadline        time.Time `json:"deadline"`
}

func (OrderPlaced) EventType() string { return "order.placed" }
func (OrderPlaced) EventVersion() int { return 1 }

func (p OrderPlaced) Validate() error {
	if p.OrderID == "" || p.CustomerID == "" || len(p.Items) == 0 {
		return errors.New("order_id, customer_id and items are required")
	}
	for i, it := range p.Items {
		if it.SKU == "" || it.Quantity < 1 {
			return fmt.Errorf("items[%d]: sku required and quantity >= 1", i)
		}
	}
	return nil
}

// OrderConfirmed ends the saga successfully.
type OrderConfirmed struct {
	OrderID string `json:"order_id"`
}

func (OrderConfirmed) EventType() string { return "order.confirmed" }
func (OrderConfirmed) EventVersion() int { return 1 }
func (p OrderConfirmed) Validate() error { return requireOrderID(p.OrderID) }

// OrderCancelled ends the saga unsuccessfully; every service undoes what it did for the order.
type OrderCancelled struct {
	OrderID string `json:"order_id"`
	Reason  string `json:"reason"`
}

func (OrderCancelled) EventType() string { return "order.cancelled" }
func (OrderCancelled) EventVersion() int { return 1 }
func (p OrderCancelled) Validate() error { return requireOrderID(p.OrderID) }

func requireOrderID(id string) error {
	if id == "" {
		return errors.New("order_id is required")
	}
	return nil
}
