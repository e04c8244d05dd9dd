package events

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

func mustNew(t *testing.T, source, subject string, p Payload) Envelope {
	t.Helper()
	e, err := New(source, subject, p)
	if err != nil {
		t.Fatalf("new event: %v", err)
	}
	return e
}

func TestNewAndCausedBy(t *testing.T) {
	placed := mustNew(t, "order", "o-1", OrderPlaced{OrderID: "o-1", CustomerID: "c", Items: []Item{{SKU: "a", Quantity: 1}}})
	if placed.ID.Version() != 7 {
		t.Fatalf("id version %d, want UUIDv7", placed.ID.Version())
	}
	if placed.CorrelationID != placed.ID.String() || placed.CausationID != "" {
		t.Fatalf("a saga's first event correlates to itself: %+v", placed)
	}
	placed.TraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	reserved := mustNew(t, "inventory", "o-1", StockReserved{OrderID: "o-1"}).CausedBy(placed)
	if reserved.CorrelationID != placed.CorrelationID || reserved.CausationID != placed.ID.String() || reserved.TraceParent != placed.TraceParent {
		t.Fatalf("caused event lost the saga: %+v", reserved)
	}
	if _, err := New("", "o-1", OrderConfirmed{OrderID: "o-1"}); err == nil {
		t.Fatal("New without source succeeded")
	}
}

func TestKafkaRoundTrip(t *testing.T) {
	e := mustNew(t, "payment", "o-9", PaymentAuthorized{OrderID: "o-9", PaymentID: "p-1", AmountCents: 1234})
	e.CausationID = "cause"
	e.TraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	m := ToMessage("payment.events", e)
	if string(m.Key) != "o-9" || m.Topic != "payment.events" {
		t.Fatalf("key %q topic %q", m.Key, m.Topic)
	}
	got, err := FromMessage(m)
	if err != nil {
		t.Fatalf("from message: %v", err)
	}
	if got.ID != e.ID || got.Type != e.Type || got.Version != e.Version || got.Source != e.Source ||
		got.Subject != e.Subject || got.CorrelationID != e.CorrelationID || got.CausationID != e.CausationID ||
		got.TraceParent != e.TraceParent || !got.Time.Equal(e.Time) || string(got.Data) != string(e.Data) {
		t.Fatalf("round trip changed the envelope:\n got %+v\nwant %+v", got, e)
	}
}

func TestFromMessageRejectsMalformed(t *testing.T) {
	good := ToMessage("t", mustNew(t, "order", "o", OrderConfirmed{OrderID: "o"}))
	without := func(key string) kafka.Message {
		m := good
		m.Headers = nil
		for _, h := range good.Headers {
			if h.Key != key {
				m.Headers = append(m.Headers, h)
			}
		}
		return m
	}
	replaced := func(key, value string) kafka.Message {
		m := without(key)
		m.Headers = append(m.Headers, kafka.Header{Key: key, Value: []byte(value)})
		return m
	}
	cases := map[string]kafka.Message{
		"no headers":        {Value: []byte(`{}`)},
		"no spec version":   without(HeaderSpecVersion),
		"bad id":            replaced(HeaderID, "not-a-uuid"),
		"bad time":          replaced(HeaderTime, "yesterday"),
		"bad version":       replaced(HeaderSchemaVersion, "v1"),
		"no type":           without(HeaderType),
		"no correlation":    without(HeaderCorrelationID),
		"wrong contenttype": replaced(HeaderContentType, "application/xml"),
	}
	for name, m := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := FromMessage(m)
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("err = %v, want *FormatError", err)
			}
		})
	}
}

func TestRegistryDecode(t *testing.T) {
	reg, err := Catalog()
	if err != nil {
		t.Fatalf("catalog: %v", err)
	}
	ok := mustNew(t, "order", "o-1", OrderCancelled{OrderID: "o-1", Reason: ReasonExpired})
	p, err := reg.Decode(ok)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	if c, isCancel := p.(OrderCancelled); !isCancel || c.Reason != ReasonExpired {
		t.Fatalf("decoded %#v", p)
	}

	unknownVersion := ok
	unknownVersion.Version = 99
	notJSON := ok
	notJSON.Data = json.RawMessage(`{"order_id":`)
	wrongType := ok
	wrongType.Data = json.RawMessage(`{"order_id": 42}`)
	invalid := ok
	invalid.Data = json.RawMessage(`{"reason":"expired"}`)
	trailing := ok
	trailing.Data = json.RawMessage(`{"order_id":"o"} {}`)

	var unknown *UnknownTypeError
	if _, err := reg.Decode(unknownVersion); !errors.As(err, &unknown) {
		t.Fatalf("unknown version: err = %v", err)
	}
	for name, e := range map[string]Envelope{"not json": notJSON, "wrong type": wrongType, "missing order id": invalid, "trailing data": trailing} {
		t.Run(name, func(t *testing.T) {
			var de *DecodeError
			if _, err := reg.Decode(e); !errors.As(err, &de) {
				t.Fatalf("err = %v, want *DecodeError", err)
			}
		})
	}
}

func TestRegistryRejectsDuplicates(t *testing.T) {
	if _, err := NewRegistry(OrderPlaced{}, OrderPlaced{}); err == nil {
		t.Fatal("duplicate registration accepted")
	}
}

func TestValidateEnvelope(t *testing.T) {
	e := mustNew(t, "order", "o", OrderConfirmed{OrderID: "o"})
	if err := e.Validate(); err != nil {
		t.Fatalf("valid envelope: %v", err)
	}
	e.Time = time.Time{}
	if err := e.Validate(); err == nil {
		t.Fatal("zero time accepted")
	}
}

func TestTraceParent(t *testing.T) {
	tp := NewTraceParent()
	if id := TraceID(tp); len(id) != 32 {
		t.Fatalf("NewTraceParent %q has no valid trace id", tp)
	}
	if NewTraceParent() == tp {
		t.Fatal("two traces share ids")
	}
	for _, bad := range []string{"", "garbage", "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01", "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"} {
		if TraceID(bad) != "" {
			t.Errorf("TraceID(%q) accepted an invalid traceparent", bad)
		}
	}
}
