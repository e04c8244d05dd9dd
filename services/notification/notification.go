// Package notification is the notification service: it tells the customer each order's outcome, exactly
// one message per order. With SMTP configured the message is mailed by a sender loop (retried with backoff,
// recorded as FAILED with the error after Config.MaxAttempts); without it the message is recorded in the
// service's database and logged.
//
// It writes to the address the customer registered: it keeps its own copy of each customer's email and
// name from customer.registered and customer.updated. An outcome for a customer it has not heard of yet
// is recorded as WAITING, without a recipient, and goes out when that customer's customer.registered
// arrives; no address is ever guessed. An order placed for an id nobody registered (possible only
// without authentication) is rejected by the customer service, and its message waits for good.
package notification

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"

	"github.com/choreo-dev/choreo/consumer"
	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/internal/host"
	"github.com/choreo-dev/choreo/internal/postgres"
	"github.com/choreo-dev/choreo/outbox"
	"github.com/choreo-dev/choreo/sagas"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Config configures the notification service.
type Config struct {
	SMTP        SMTPConfig    // zero Addr: no mail, messages are recorded and logged
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
	return &Service{cfg: cfg, pool: pool, log: log, emit: outbox.Emitter{Source: sagas.Notification, Topic: topic}}
}

// Handlers registers the outcomes to notify, the order.placed that names the customer and the customer
// events that say where to write.
func (s *Service) Handlers(r *consumer.Router) {
	r.Scope(customerLocks{})
	consumer.On(r, s.rememberCustomer)
	r.OnEach(s.notify, events.OrderConfirmed{}, events.OrderCancelled{})
	// The record and the outcomes come after the order's final state is known or before it is needed: a
	// message may leave a moment later, several orders' in one transaction.
	r.Unhurried(events.OrderPlaced{}, events.OrderConfirmed{}, events.OrderCancelled{})
	consumer.On(r, s.onRegistered)
	consumer.On(r, s.onUpdated)
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
	if _, err := postgres.Later(tx).Exec(ctx, `INSERT INTO customers (order_id, customer_id) VALUES ($1, $2) ON CONFLICT DO NOTHING`, p.OrderID, p.CustomerID); err != nil {
		return fmt.Errorf("remember customer of %s: %w", p.OrderID, err)
	}
	return nil
}

// notify records the outcome message. Without SMTP it is "sent" at once, to the log; for a customer whose
// address is not known yet it waits for customer.registered.
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
	if err := lockCustomer(ctx, tx, customer); err != nil {
		return err
	}
	var recipient, name string
	err = tx.QueryRow(ctx, `SELECT email, name FROM contacts WHERE customer_id = $1`, customer).Scan(&recipient, &name)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("find address of customer %s: %w", customer, err)
	}
	subject, body := message(orderID, ev.Payload)
	channel, status := "smtp", "PENDING"
	if s.cfg.SMTP.Addr == "" {
		channel, status = "log", "SENT"
	}
	if recipient == "" {
		status = "WAITING"
	} else {
		body = greeting(name) + body
	}
	tag, err := tx.Exec(ctx, `INSERT INTO notifications (order_id, customer_id, outcome, recipient, subject, body, channel, status, correlation_id, sent_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, CASE WHEN $8 = 'SENT' THEN now() END) ON CONFLICT DO NOTHING`,
		orderID, customer, ev.Type, recipient, subject, body, channel, status, ev.CorrelationID)
	if err != nil {
		return fmt.Errorf("record notification for %s: %w", orderID, err)
	}
	switch {
	case tag.RowsAffected() == 0:
		return nil // already notified
	case status == "WAITING":
		zerolog.Ctx(ctx).Info().Str("order_id", orderID).Str("customer_id", customer).Msg("no address for the customer yet; the notification waits for customer.registered")
		return nil
	case channel != "log":
		return nil // the sender loop mails it
	}
	zerolog.Ctx(ctx).Info().Str("order_id", orderID).Str("customer_id", customer).Str("subject", subject).Msg("customer notified (log channel)")
	return s.emit.Emit(ctx, tx, ev.Envelope, events.NotificationSent{OrderID: orderID, Outcome: ev.Type, Channel: channel})
}

// onRegistered keeps the new customer's address and releases the messages that waited for it.
func (s *Service) onRegistered(ctx context.Context, tx pgx.Tx, ev consumer.Event, p events.CustomerRegistered) error {
	if err := keepContact(ctx, tx, ev, p.CustomerID, p.Email, p.Name); err != nil {
		return err
	}
	rows, err := tx.Query(ctx, `UPDATE notifications SET recipient = $2, body = $3 || body, next_attempt_at = now(),
			status = CASE channel WHEN 'log' THEN 'SENT' ELSE 'PENDING' END, sent_at = CASE channel WHEN 'log' THEN now() END
		WHERE customer_id = $1 AND status = 'WAITING' RETURNING order_id, outcome, correlation_id, channel`,
		p.CustomerID, p.Email, greeting(p.Name))
	if err != nil {
		return fmt.Errorf("release notifications of customer %s: %w", p.CustomerID, err)
	}
	type released struct{ OrderID, Outcome, CorrelationID, Channel string }
	rel, err := pgx.CollectRows(rows, pgx.RowToStructByPos[released])
	if err != nil {
		return fmt.Errorf("release notifications of customer %s: %w", p.CustomerID, err)
	}
	for _, n := range rel {
		if n.Channel != "log" {
			continue // the sender loop mails it
		}
		zerolog.Ctx(ctx).Info().Str("order_id", n.OrderID).Str("customer_id", p.CustomerID).Msg("customer notified (log channel), once registered")
		if err := s.emit.EmitInSaga(ctx, tx, n.OrderID, n.CorrelationID, events.NotificationSent{OrderID: n.OrderID, Outcome: n.Outcome, Channel: n.Channel}); err != nil {
			return err
		}
	}
	return nil
}

// onUpdated keeps the customer's new address for the messages to come.
func (s *Service) onUpdated(ctx context.Context, tx pgx.Tx, ev consumer.Event, p events.CustomerUpdated) error {
	return keepContact(ctx, tx, ev, p.CustomerID, p.Email, p.Name)
}

// keepContact stores the customer's address and name unless a later event set them already.
func keepContact(ctx context.Context, tx pgx.Tx, ev consumer.Event, customer, email, name string) error {
	if err := lockCustomer(ctx, tx, customer); err != nil {
		return err
	}
	_, err := postgres.Later(tx).Exec(ctx, `INSERT INTO contacts (customer_id, email, name, updated_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (customer_id) DO UPDATE SET email = EXCLUDED.email, name = EXCLUDED.name, updated_at = EXCLUDED.updated_at
		WHERE contacts.updated_at <= EXCLUDED.updated_at`, customer, email, name, ev.Time)
	if err != nil {
		return fmt.Errorf("keep address of customer %s: %w", customer, err)
	}
	return nil
}

// lockCustomer serializes, per customer, recording an outcome and learning the address: they come from
// different topics, so in parallel transactions; without the lock an outcome could miss the address
// committed beside it and wait for a registration that has already been handled.
//
// The lock is held back (postgres.Later) and taken in the round trip of the next statement, before it.
func lockCustomer(ctx context.Context, tx pgx.Tx, customer string) error {
	if _, err := postgres.Later(tx).Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('notification.customer:' || $1, 0))`, customer); err != nil {
		return fmt.Errorf("lock customer %s: %w", customer, err)
	}
	return nil
}

func greeting(name string) string {
	if name == "" {
		return ""
	}
	return "Hello " + name + ",\n\n"
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
	case events.ReasonCustomerRejected:
		return "we cannot accept orders from this account"
	}
	return reason
}
