package events

// PricedLine is an order line with the unit price inventory reserved it at.
type PricedLine struct {
	SKU        string `json:"sku"`
	Quantity   int    `json:"quantity"`
	PriceCents int64  `json:"price_cents"`
}

// StockReserved: inventory reserved every line of the order.
type StockReserved struct {
	OrderID    string       `json:"order_id"`
	Lines      []PricedLine `json:"lines"`
	TotalCents int64        `json:"total_cents"`
}

func (StockReserved) EventType() string { return "stock.reserved" }
func (StockReserved) EventVersion() int { return 1 }
func (p StockReserved) Validate() error { return requireOrderID(p.OrderID) }

// StockRejected: inventory could not reserve the order (unknown sku or not enough stock); nothing is held.
type StockRejected struct {
	OrderID string `json:"order_id"`
	Reason  string `json:"reason"`
	SKU     string `json:"sku,omitempty"`
}

func (StockRejected) EventType() string { return "stock.rejected" }
func (StockRejected) EventVersion() int { return 1 }
func (p StockRejected) Validate() error { return requireOrderID(p.OrderID) }

// StockReleased: compensation, inventory put a reservation back.
type StockReleased struct {
	OrderID string `json:"order_id"`
	Reason  string `json:"reason"`
}

func (StockReleased) EventType() string { return "stock.released" }
func (StockReleased) EventVersion() int { return 1 }
func (p StockReleased) Validate() error { return requireOrderID(p.OrderID) }

// StockSold: the order was confirmed and its reservation became a sale.
type StockSold struct {
	OrderID string `json:"order_id"`
}

func (StockSold) EventType() string { return "stock.sold" }
func (StockSold) EventVersion() int { return 1 }
func (p StockSold) Validate() error { return requireOrderID(p.OrderID) }

// PaymentAuthorized: payment authorized the order's total.
type PaymentAuthorized struct {
	OrderID     string `json:"order_id"`
	PaymentID   string `json:"payment_id"`
	AmountCents int64  `json:"amount_cents"`
}

func (PaymentAuthorized) EventType() string { return "payment.authorized" }
func (PaymentAuthorized) EventVersion() int { return 1 }
func (p PaymentAuthorized) Validate() error { return requireOrderID(p.OrderID) }

// PaymentDeclined: payment refused to authorize the order's total.
type PaymentDeclined struct {
	OrderID string `json:"order_id"`
	Reason  string `json:"reason"`
}

func (PaymentDeclined) EventType() string { return "payment.declined" }
func (PaymentDeclined) EventVersion() int { return 1 }
func (p PaymentDeclined) Validate() error { return requireOrderID(p.OrderID) }

// PaymentRefunded: compensation, an authorization was voided/refunded.
type PaymentRefunded struct {
	OrderID     string `json:"order_id"`
	PaymentID   string `json:"payment_id"`
	AmountCents int64  `json:"amount_cents"`
	Reason      string `json:"reason"`
}

func (PaymentRefunded) EventType() string { return "payment.refunded" }
func (PaymentRefunded) EventVersion() int { return 1 }
func (p PaymentRefunded) Validate() error { return requireOrderID(p.OrderID) }

// ShipmentScheduled: shipping booked a shipment; the last step of the happy path.
type ShipmentScheduled struct {
	OrderID    string `json:"order_id"`
	ShipmentID string `json:"shipment_id"`
}

func (ShipmentScheduled) EventType() string { return "shipment.scheduled" }
func (ShipmentScheduled) EventVersion() int { return 1 }
func (p ShipmentScheduled) Validate() error { return requireOrderID(p.OrderID) }

// ShipmentFailed: shipping cannot ship the order (e.g. unsupported country).
type ShipmentFailed struct {
	OrderID string `json:"order_id"`
	Reason  string `json:"reason"`
}

func (ShipmentFailed) EventType() string { return "shipment.failed" }
func (ShipmentFailed) EventVersion() int { return 1 }
func (p ShipmentFailed) Validate() error { return requireOrderID(p.OrderID) }

// ShipmentCancelled: compensation, a scheduled shipment was cancelled because the order was cancelled.
type ShipmentCancelled struct {
	OrderID    string `json:"order_id"`
	ShipmentID string `json:"shipment_id"`
}

func (ShipmentCancelled) EventType() string { return "shipment.cancelled" }
func (ShipmentCancelled) EventVersion() int { return 1 }
func (p ShipmentCancelled) Validate() error { return requireOrderID(p.OrderID) }

// NotificationSent: the customer was told the order's outcome.
type NotificationSent struct {
	OrderID string `json:"order_id"`
	Outcome string `json:"outcome"` // the outcome event type, e.g. "order.confirmed"
	Channel string `json:"channel"` // "smtp" or "log"
}

func (NotificationSent) EventType() string { return "notification.sent" }
func (NotificationSent) EventVersion() int { return 1 }
func (p NotificationSent) Validate() error { return requireOrderID(p.OrderID) }

// Catalog returns a registry of every event type choreo's services emit.
func Catalog() (*Registry, error) {
	return NewRegistry(
		OrderPlaced{}, OrderPlacedV1{}, OrderConfirmed{}, OrderCancelled{},
		StockReserved{}, StockRejected{}, StockReleased{}, StockSold{},
		PaymentAuthorized{}, PaymentDeclined{}, PaymentRefunded{},
		ShipmentScheduled{}, ShipmentFailed{}, ShipmentCancelled{},
		NotificationSent{},
		CustomerRegistered{}, CustomerUpdated{}, CustomerCreditLimitSet{}, CustomerBlocked{}, CustomerUnblocked{},
		CustomerApproved{}, CustomerRejected{},
	)
}
