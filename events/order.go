package events

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
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

// Address is where an order ships to, as customers give it to the order API and as order.placed v1
// carried it: the street and the house number on one line.
type Address struct {
	Name       string `json:"name"`
	Line1      string `json:"line1"`
	City       string `json:"city"`
	PostalCode string `json:"postal_code"`
	Country    string `json:"country"`
}

// PostalAddress is where an order ships to as order.placed v2 carries it: the street and the house number
// apart, so that carriers' label formats (number first or last) can be produced.
type PostalAddress struct {
	Name        string `json:"name"`
	Street      string `json:"street"`
	HouseNumber string `json:"house_number"`
	City        string `json:"city"`
	PostalCode  string `json:"postal_code"`
	Country     string `json:"country"`
}

// Split turns a's one line into a PostalAddress. The house number is the first word of Line1 when it starts
// with a digit ("221B Baker Street"), else its last word when that does ("Hauptstraße 5"); otherwise the
// whole line is the street and the number is empty.
func (a Address) Split() PostalAddress {
	street, number := strings.TrimSpace(a.Line1), ""
	if first, rest, ok := strings.Cut(street, " "); ok && startsWithDigit(first) {
		street, number = strings.TrimSpace(rest), first
	} else if i := strings.LastIndexByte(street, ' '); i > 0 && startsWithDigit(street[i+1:]) {
		street, number = strings.TrimSpace(street[:i]), street[i+1:]
	}
	return PostalAddress{Name: a.Name, Street: street, HouseNumber: number, City: a.City, PostalCode: a.PostalCode, Country: a.Country}
}

func startsWithDigit(s string) bool { return s != "" && s[0] >= '0' && s[0] <= '9' }

// DefaultCurrency is the currency of every price before order.placed v2 named one: v1 orders were in it.
const DefaultCurrency = "USD"

// OrderPlaced starts the saga: the order service accepted an order, now PENDING. Version 2 names the
// order's currency and splits the shipping address (see PostalAddress); version 1 events (OrderPlacedV1)
// are upcast to it on decode, so every handler sees version 2.
type OrderPlaced struct {
	OrderID         string        `json:"order_id"`
	CustomerID      string        `json:"customer_id"`
	Items           []Item        `json:"items"`
	Currency        string        `json:"currency"` // ISO 4217, e.g. "USD"; empty reads as DefaultCurrency
	PaymentToken    string        `json:"payment_token"`
	ShippingAddress PostalAddress `json:"shipping_address"`
	Deadline        time.Time     `json:"deadline"`
}

func (OrderPlaced) EventType() string { return "order.placed" }
func (OrderPlaced) EventVersion() int { return 2 }

func (p OrderPlaced) Validate() error {
	if err := validatePlaced(p.OrderID, p.CustomerID, p.Items); err != nil {
		return err
	}
	if p.Currency != "" && !currencyCode.MatchString(p.Currency) {
		return fmt.Errorf("currency %q is not an ISO 4217 code", p.Currency)
	}
	return nil
}

var currencyCode = regexp.MustCompile(`^[A-Z]{3}$`)

// OrderPlacedV1 is order.placed as producers emitted it before version 2: no currency (DefaultCurrency),
// the address on one line. It stays registered so that stored and in-flight v1 events still decode: the
// registry upcasts it to OrderPlaced.
type OrderPlacedV1 struct {
	OrderID         string    `json:"order_id"`
	CustomerID      string    `json:"customer_id"`
	Items           []Item    `json:"items"`
	PaymentToken    string    `json:"payment_token"`
	ShippingAddress Address   `json:"shipping_address"`
	Deadline        time.Time `json:"deadline"`
}

func (OrderPlacedV1) EventType() string { return "order.placed" }
func (OrderPlacedV1) EventVersion() int { return 1 }

func (p OrderPlacedV1) Validate() error { return validatePlaced(p.OrderID, p.CustomerID, p.Items) }

// Upcast turns the v1 event into version 2.
func (p OrderPlacedV1) Upcast() Payload {
	return OrderPlaced{
		OrderID: p.OrderID, CustomerID: p.CustomerID, Items: p.Items, Currency: DefaultCurrency,
		PaymentToken: p.PaymentToken, ShippingAddress: p.ShippingAddress.Split(), Deadline: p.Deadline,
	}
}

func validatePlaced(orderID, customerID string, items []Item) error {
	if orderID == "" || customerID == "" || len(items) == 0 {
		return errors.New("order_id, customer_id and items are required")
	}
	for i, it := range items {
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
