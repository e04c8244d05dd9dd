package notification_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/choreo-dev/choreo/consumer"
	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/internal/host"
	"github.com/choreo-dev/choreo/internal/kafkaadmin"
	"github.com/choreo-dev/choreo/internal/testing/testenv"
	"github.com/choreo-dev/choreo/sagas"
	"github.com/choreo-dev/choreo/services/notification"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// smtpServer is a minimal SMTP server on loopback that records the mails it accepts, or refuses every
// recipient when refuse is set.
type smtpServer struct {
	addr   string
	refuse bool
	mu     sync.Mutex
	mails  []string
}

func newSMTPServer(t *testing.T, refuse bool) *smtpServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &smtpServer{addr: ln.Addr().String(), refuse: refuse}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serve(c)
		}
	}()
	return s
}

func (s *smtpServer) serve(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	say := func(line string) { fmt.Fprintf(c, "%s\r\n", line) }
	say("220 test ESMTP")
	var data strings.Builder
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		cmd := strings.ToUpper(strings.TrimSpace(line))
		switch {
		case strings.HasPrefix(cmd, "EHLO"), strings.HasPrefix(cmd, "HELO"):
			say("250 test")
		case strings.HasPrefix(cmd, "MAIL FROM"):
			say("250 ok")
		case strings.HasPrefix(cmd, "RCPT TO"):
			if s.refuse {
				say("550 no such mailbox")
			} else {
				say("250 ok")
			}
		case cmd == "DATA":
			say("354 go ahead")
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
				data.WriteString(l)
			}
			s.mu.Lock()
			s.mails = append(s.mails, data.String())
			s.mu.Unlock()
			data.Reset()
			say("250 queued")
		case cmd == "QUIT":
			say("221 bye")
			return
		default:
			say("250 ok")
		}
	}
}

func (s *smtpServer) received() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.mails...)
}

// start runs the notification service with SMTP at addr, consuming a private namespace's topics. The
// function it returns publishes payloads about a subject to the topic of the service that emits them.
func start(t *testing.T, smtpAddr string) (*host.Unit, func(source, subject string, ps ...events.Payload)) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ns := "n" + testenv.Name(t, "x")[len(testenv.Name(t, "x"))-8:] + "_"
	brokers := testenv.Kafka(t)
	spec := notification.Spec(notification.Config{
		SMTP:        notification.SMTPConfig{Addr: smtpAddr, From: "orders@choreo.test"},
		MaxAttempts: 2, PollEvery: 20 * time.Millisecond,
	})
	topics := []kafkaadmin.Topic{{Name: ns + sagas.Topic(sagas.Notification), Partitions: 1}}
	for _, c := range spec.Consumes {
		topics = append(topics, kafkaadmin.Topic{Name: ns + c, Partitions: 1}, kafkaadmin.Topic{Name: ns + c + consumer.DLQSuffix, Partitions: 1})
	}
	if err := kafkaadmin.EnsureTopics(ctx, brokers, topics...); err != nil {
		t.Fatal(err)
	}
	reg, _ := events.Catalog()
	u, err := host.Open(ctx, spec, testenv.DatabaseURL(t), brokers, reg, testenv.Logger(t), host.Options{Namespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- u.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; u.Close() })

	w := &kafka.Writer{Addr: kafka.TCP(brokers...), RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond, Transport: &kafka.Transport{}}
	t.Cleanup(func() { w.Close() })
	publish := func(source, subject string, ps ...events.Payload) {
		t.Helper()
		var msgs []kafka.Message
		for _, p := range ps {
			e, err := events.New(source, subject, p)
			if err != nil {
				t.Fatal(err)
			}
			msgs = append(msgs, events.ToMessage(ns+sagas.Topic(source), e))
		}
		if err := w.WriteMessages(context.Background(), msgs...); err != nil {
			t.Fatal(err)
		}
	}
	return u, publish
}

func status(t *testing.T, u *host.Unit) (string, int, string) {
	t.Helper()
	var st, lastErr string
	var attempts int
	err := u.Pool().QueryRow(context.Background(), `SELECT status, attempts, last_error FROM notifications WHERE order_id = 'o-1'`).Scan(&st, &attempts, &lastErr)
	if err != nil {
		return "NONE", 0, ""
	}
	return st, attempts, lastErr
}

func TestOutcomeIsMailedExactlyOnce(t *testing.T) {
	t.Parallel()
	srv := newSMTPServer(t, false)
	u, publish := start(t, srv.addr)
	placed := events.OrderPlaced{OrderID: "o-1", CustomerID: "alice", Items: []events.Item{{SKU: "A", Quantity: 1}}}
	confirmed := events.OrderConfirmed{OrderID: "o-1"}
	publish("order", "o-1", placed, confirmed, confirmed) // the outcome twice, as two distinct events
	// The address comes from the customer's registration, on another topic, before or after the outcome.
	publish("customer", "alice", events.CustomerRegistered{CustomerID: "alice", Email: "alice@example.test", Name: "Alice"})

	testenv.Eventually(t, 30*time.Second, "the notification to be sent", func() bool { s, _, _ := status(t, u); return s == "SENT" })
	mails := srv.received()
	if len(mails) != 1 {
		t.Fatalf("%d mails, want exactly 1", len(mails))
	}
	for _, want := range []string{"To: alice@example.test", "Subject: Your order o-1 is confirmed", "Message-ID: <o-1.order.confirmed@choreo>", "Hello Alice,"} {
		if !strings.Contains(mails[0], want) {
			t.Errorf("mail lacks %q:\n%s", want, mails[0])
		}
	}
	testenv.Eventually(t, 30*time.Second, "notification.sent to be published", func() bool { return u.Relay().Stats().Published >= 1 })
}

func TestUndeliverableMailIsRecordedAsFailed(t *testing.T) {
	t.Parallel()
	srv := newSMTPServer(t, true)
	u, publish := start(t, srv.addr)
	publish("customer", "bob", events.CustomerRegistered{CustomerID: "bob", Email: "bob@example.test", Name: "Bob"})
	publish("order", "o-1", events.OrderPlaced{OrderID: "o-1", CustomerID: "bob", Items: []events.Item{{SKU: "A", Quantity: 1}}},
		events.OrderCancelled{OrderID: "o-1", Reason: events.ReasonOutOfStock})

	testenv.Eventually(t, 30*time.Second, "the notification to fail", func() bool { s, _, _ := status(t, u); return s == "FAILED" })
	_, attempts, lastErr := status(t, u)
	if attempts != 2 || !strings.Contains(lastErr, "550") {
		t.Fatalf("attempts %d, last error %q; want 2 attempts and the server's 550", attempts, lastErr)
	}
}
