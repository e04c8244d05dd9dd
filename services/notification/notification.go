// Package notification is the notification service: it tells the customer each order's outcome, exactly
// one message per order. With SMTP configured the message is mailed by a sender loop (retried with backoff,
// recorded as FAILED with the error after Config.MaxAttempts); without it the message is recorded in the
// service's database and logged.
package notification

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"

	"github.com/choreo-dev/choreo/consumer"
	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/internal/host"
	"github.com/choreo-dev/choreo/outbox"
	"github.com/choreo-dev/choreo/sagas"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Config configures the notification service.
type Config struct {
	SMTP        SMTPConfig    // zero Addr: no mail, messages are recorded and logged
	Domain      string        // recipients are <customer_id>@Domain unless the customer id is an address
	MaxAttempts int           // SMTP attempts before a message is recorded as FAILED (default 10)
	PollEvery   time.Duration // how often the sender looks for due messages (default 500ms)
}

// SMTPConfig is where and as whom to send mail.
type SMTPConfig struct {
	Addr     string // host:port
	From     string
	Username string
	Password string // secret: never logged
}

// Spec describes the notification service to the host.
func Spec(cfg Config) host.Spec {
	return host.Spec{
		Name:       sagas.Notification,
		Doc:        "the notification service",
		Topic:      sagas.Topic(sagas.Notification),
		Consumes:   sagas.Subscriptions(sagas.Notification),
		Migrations: migrationFiles,
		Build: func(d host.Deps) (host.Service, error) {
			if cfg.SMTP.Addr != "" && cfg.SMTP.From == "" {
				return nil, errors.New("notification: SMTP needs a From address")
			}
			return New(cfg, d.Pool, d.Topic, d.Log), nil
		},
	}
}

// Service is the notification service.
type Service struct {
	cfg  Config
	pool *pgxpool.Pool
	emit outbox.Emitter
	log  zerolog.Logger
}

// New returns the notification service over pool, publishing to topic.
func New(cfg Config, pool *pgxpool.Pool, topic string, log zerolog.Logger) *Service {
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 10
	}
	if cfg.PollEvery <= 0 {
		cfg.PollEvery = 500 * time.Millisecond
	}
	if cfg.Domain == "" {
		cfg.Domain = "customers.invalid"
	}
	return &Service{cfg: cfg, pool: pool, log: log, emit: outbox.Emitter{Source: sagas.Notification, Topic: topic}}
}

// Handlers registers the outcomes to notify and the order.placed that names the customer.
func (s *Service) Handlers(r *consumer.Router) {
	consumer.On(r, s.rememberCustomer)
	r.OnEach(s.notify, events.OrderConfirmed{}, events.OrderCancelled{})
}

// Run sends pending mail when SMTP is configured.
func (s *Service) Run(ctx context.Context) error {
	if s.cfg.SMTP.Addr == "" {
		<-ctx.Done()
		return nil
	}
	s.sendLoop(ctx)
	return nil
}

func (s *Service) rememberCustomer(ctx context.Context, tx pgx.Tx, _ consumer.Event, p events.OrderPlaced) error {
	if _, err := tx.Exec(ctx, `INSERT INTO customers (order_id, customer_id) VALUES ($1, $2) ON CONFLICT DO NOTHING`, p.OrderID, p.CustomerID); err != nil {
		return fmt.Errorf("remember customer of %s: %w", p.OrderID, err)
	}
	return nil
}

// notify records the outcome message. Without SMTP it is "sent" at once, to the log.
func (s *Service) notify(ctx context.Context, tx pgx.Tx, ev consumer.Event) error {
	orderID := ev.Subject
	var customer string
	err := tx.QueryRow(ctx, `SELECT customer_id FROM customers WHERE order_id = $1`, orderID).Scan(&customer)
	if errors.Is(err, pgx.ErrNoRows) {
		// order.placed precedes every outcome on the order topic, so this order never went through order.placed.
		return consumer.Permanent(fmt.Errorf("no customer known for order %s", orderID))
	}
	if err != nil {
		return fmt.Errorf("find customer of %s: %w", orderID, err)
	}
	subject, body := message(orderID, ev.Payload)
	channel, status := "smtp", "PENDING"
	if s.cfg.SMTP.Addr == "" {
		channel, status = "log", "SENT"
	}
	tag, err := tx.Exec(ctx, `INSERT INTO notifications (order_id, outcome, recipient, subject, body, channel, status, correlation_id, sent_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, CASE WHEN $7 = 'SENT' THEN now() END) ON CONFLICT DO NOTHING`,
		orderID, ev.Type, s.recipient(customer), subject, body, channel, status, ev.CorrelationID)
	if err != nil {
		return fmt.Errorf("record notification for %s: %w", orderID, err)
	}
	if tag.RowsAffected() == 0 || channel != "log" {
		return nil // already notified, or the sender loop mails it
	}
	zerolog.Ctx(ctx).Info().Str("order_id", orderID).Str("customer_id", customer).Str("subject", subject).Msg("customer notified (log channel)")
	return s.emit.Emit(ctx, tx, ev.Envelope, events.NotificationSent{OrderID: orderID, Outcome: ev.Type, Channel: channel})
}

func (s *Service) recipient(customer string) string {
	if strings.Contains(customer, "@") {
		return customer
	}
	return customer + "@" + s.cfg.Domain
}

// message renders the customer-facing text of an outcome.
func message(orderID string, outcome events.Payload) (subject, body string) {
	switch p := outcome.(type) {
	case events.OrderCancelled:
		return "Your order " + orderID + " was cancelled",
			fmt.Sprintf("We are sorry: your order %s was cancelled (%s). Nothing was charged, and any reserved items were released.\n", orderID, humanReason(p.Reason))
	default:
		return "Your order " + orderID + " is confirmed",
			fmt.Sprintf("Good news: your order %s is confirmed, paid and scheduled for shipping.\n", orderID)
	}
}

func humanReason(reason string) string {
	switch reason {
	case events.ReasonOutOfStock:
		return "an item is out of stock"
	case events.ReasonPaymentDeclined:
		return "the payment was declined"
	case events.ReasonShippingFailed:
		return "we cannot ship to the address given"
	case events.ReasonExpired:
		return "it could not be completed in time"
	}
	return reason
}
