package events

import (
	"os"
	"reflect"
	"testing"
	"time"
)

// TestOrderPlacedV1IsUpcast decodes a stored v1 order.placed (as producers emitted it before v2) and
// expects the v2 payload: the default currency, the address split.
func TestOrderPlacedV1IsUpcast(t *testing.T) {
	data, err := os.ReadFile("testdata/order_placed_v1.json")
	if err != nil {
		t.Fatal(err)
	}
	reg, err := Catalog()
	if err != nil {
		t.Fatal(err)
	}
	env := mustNew(t, "order", "0190f3a2-6c1e-7b3d-9a51-2f7c8d9e0a11", OrderConfirmed{OrderID: "x"})
	env.Type, env.Version, env.Data = "order.placed", 1, data
	p, err := reg.Decode(env)
	if err != nil {
		t.Fatalf("decode v1: %v", err)
	}
	want := OrderPlaced{
		OrderID: "0190f3a2-6c1e-7b3d-9a51-2f7c8d9e0a11", CustomerID: "alice",
		Items:    []Item{{SKU: "TEA-1", Quantity: 2}, {SKU: "MUG-3", Quantity: 1}},
		Currency: "USD", PaymentToken: "tok_visa",
		ShippingAddress: PostalAddress{Name: "Alice Liddell", Street: "Baker Street", HouseNumber: "221B", City: "London", PostalCode: "NW1 6XE", Country: "GB"},
		Deadline:        time.Date(2031, 3, 14, 9, 31, 53, 0, time.UTC),
	}
	if !reflect.DeepEqual(p, want) {
		t.Fatalf("v1 decoded as\n %#v\nwant\n %#v", p, want)
	}

	// The same order as v2 decodes to the same payload, without upcasting.
	v2 := mustNew(t, "order", want.OrderID, want)
	if v2.Version != 2 {
		t.Fatalf("order.placed is emitted as version %d, want 2", v2.Version)
	}
	if p, err := reg.Decode(v2); err != nil || !reflect.DeepEqual(p, want) {
		t.Fatalf("decode v2: %v\n %#v", err, p)
	}
	env.Data = []byte(`{"order_id":"o","customer_id":"c","items":[{"sku":"a","quantity":1}],"currency":"usd"}`)
	env.Version = 2
	if _, err := reg.Decode(env); err == nil {
		t.Fatal("a v2 order.placed with currency \"usd\" decoded")
	}
}

func TestAddressSplit(t *testing.T) {
	for _, tc := range []struct{ line1, street, number string }{
		{"221B Baker Street", "Baker Street", "221B"},
		{"Hauptstraße 5", "Hauptstraße", "5"},
		{"1 Loop Rd", "Loop Rd", "1"},
		{"The Old Rectory", "The Old Rectory", ""},
		{"  ", "", ""},
	} {
		got := Address{Line1: tc.line1, Country: "DE"}.Split()
		if got.Street != tc.street || got.HouseNumber != tc.number || got.Country != "DE" {
			t.Errorf("%q split into street %q number %q, want %q %q", tc.line1, got.Street, got.HouseNumber, tc.street, tc.number)
		}
	}
}
