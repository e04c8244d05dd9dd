package system_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/choreo-dev/choreo/consumer"
	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/internal/kafkaconn"
	"github.com/choreo-dev/choreo/internal/testing/testenv"
	"github.com/choreo-dev/choreo/sagas"
)

// TestReadModelDeadLettersAnEventItCannotDecode: an order.placed whose payload does not decode reaches
// every consumer of the order topic; the read model (a projection, not a consumer group) dead-letters it
// with the reason like the services do, and keeps projecting the orders after it.
func TestReadModelDeadLettersAnEventItCannotDecode(t *testing.T) {
	t.Parallel()
	h := start(t, baseConfig(t))
	s := sku(t)
	h.putProduct(s, 100, 10)
	h.settled(h.place(newOrder(h.customer("before-poison"), s, 1, "tok_visa", "US")), "order.confirmed") // the read model is live

	poison, err := events.New("order", "01a23161-0000-7000-8000-00000000dead", events.OrderPlaced{})
	if err != nil {
		t.Fatal(err)
	}
	poison.Data = []byte(`{"order_id": 42}`) // not a string: does not decode
	w := &kafka.Writer{Addr: kafka.TCP(h.cfg.Brokers...), Topic: h.cfg.Host.Namespace + sagas.Topic(sagas.Order), Balancer: &kafka.Murmur2Balancer{},
		RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond, Transport: &kafka.Transport{}}
	err = w.WriteMessages(context.Background(), events.ToMessage("", poison))
	w.Close()
	if err != nil {
		t.Fatal(err)
	}

	id := h.place(newOrder(h.customer("after-poison"), s, 1, "tok_visa", "US"))
	if o := h.settled(id, "order.confirmed"); o.Status != "CONFIRMED" {
		t.Fatalf("the order after the poison event: %s", o.Status)
	}
	dlq := h.cfg.Host.Namespace + sagas.Topic(sagas.Order) + consumer.DLQSuffix
	var letters []consumer.DeadLetter
	defer func() {
		if t.Failed() {
			for _, d := range letters {
				t.Logf("dead letter %s by %s: %s", d.EventID, d.Consumer, d.Error)
			}
		}
	}()
	testenv.Eventually(t, 30*time.Second, "the read model to dead-letter the poison event", func() bool {
		letters, err = consumer.ListDeadLetters(context.Background(), h.cfg.Brokers, kafkaconn.Config{}, dlq)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range letters {
			if d.EventID == poison.ID && d.Consumer == h.cfg.Host.Namespace+"orderview" && d.Error != "" {
				return true
			}
		}
		return false
	})
	if code, _ := h.do("GET", "/v1/orders/"+poison.Subject, nil, nil); code != http.StatusNotFound {
		t.Errorf("the poison order answers %d, want 404: nothing of it was projected", code)
	}
}
