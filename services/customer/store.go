package customer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/choreo-dev/choreo/consumer"
	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/internal/postgres"
	"github.com/choreo-dev/choreo/outbox"
)

// Customer is what a customer sees of their record.
type Customer struct {
	ID        uuid.UUID `json:"id"`
	Email     string    `json:"email"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
}

// Account is what an operator sees: the record with its limit, block and roles.
type Account struct {
	Customer
	CreditLimitCents *int64    `json:"credit_limit_cents"`
	Blocked          bool      `json:"blocked"`
	BlockReason      string    `json:"block_reason,omitempty"`
	Roles            []string  `json:"roles"`
	UpdatedAt        time.Time `json:"updated_at"`
}

const accountColumns = `id, email, name, created_at, credit_limit_cents, blocked, block_reason, roles, updated_at`

func scanAccount(row pgx.Row) (Account, error) {
	var a Account
	err := row.Scan(&a.ID, &a.Email, &a.Name, &a.CreatedAt, &a.CreditLimitCents, &a.Blocked, &a.BlockReason, &a.Roles, &a.UpdatedAt)
	return a, err
}

// Registration is a new customer.
type Registration struct {
	Email    string `json:"email"`
	Name     string `json:"name"`
	Password string `json:"password"`
}

// Register stores a new customer and its customer.registered event in one transaction; ErrEmailTaken when
// another customer has the email in any case.
func (s *Service) Register(ctx context.Context, r Registration) (Customer, error) {
	hash, err := s.hash(ctx, r.Password)
	if err != nil {
		return Customer{}, err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return Customer{}, fmt.Errorf("customer id: %w", err)
	}
	c := Customer{ID: id, Email: r.Email, Name: r.Name}
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `INSERT INTO customers (id, email, name, password_hash) VALUES ($1, $2, $3, $4) RETURNING created_at`,
			id, r.Email, r.Name, hash).Scan(&c.CreatedAt)
		if err != nil {
			return fmt.Errorf("insert customer: %w", uniqueEmail(err))
		}
		return s.publish(ctx, tx, id, events.CustomerRegistered{CustomerID: id.String(), Email: c.Email, Name: c.Name})
	})
	return c, err
}

// EnsureCustomer registers r, or, when its email is registered already, sets that customer's password
// to r.Password: the demo customer of `choreo run`, whose password is new at every start.
func (s *Service) EnsureCustomer(ctx context.Context, r Registration) (Customer, error) {
	c, err := s.Register(ctx, r)
	if !errors.Is(err, ErrEmailTaken) {
		return c, err
	}
	hash, err := s.hash(ctx, r.Password)
	if err != nil {
		return Customer{}, err
	}
	err = s.pool.QueryRow(ctx, `UPDATE customers SET password_hash = $2, updated_at = now() WHERE lower(email) = lower($1)
		RETURNING id, email, name, created_at`, r.Email, hash).Scan(&c.ID, &c.Email, &c.Name, &c.CreatedAt)
	if err != nil {
		return Customer{}, fmt.Errorf("set password of %s: %w", r.Email, err)
	}
	return c, nil
}

// Account returns customer id's record.
func (s *Service) Account(ctx context.Context, id uuid.UUID) (Account, error) {
	a, err := scanAccount(s.pool.QueryRow(ctx, `SELECT `+accountColumns+` FROM customers WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Account{}, ErrNotFound
	}
	if err != nil {
		return Account{}, fmt.Errorf("read customer %s: %w", id, err)
	}
	return a, nil
}

// Change is the body of PATCH /v1/customers/me: the fields to change.
type Change struct {
	Name  *string `json:"name"`
	Email *string `json:"email"`
}

// Update applies ch to customer id and, if anything changed, emits customer.updated.
func (s *Service) Update(ctx context.Context, id uuid.UUID, ch Change) (Account, error) {
	return s.change(ctx, id, func(tx pgx.Tx, before Account) (events.Payload, error) {
		name, email := before.Name, before.Email
		if ch.Name != nil {
			name = *ch.Name
		}
		if ch.Email != nil {
			email = *ch.Email
		}
		if name == before.Name && email == before.Email {
			return nil, nil
		}
		if _, err := tx.Exec(ctx, `UPDATE customers SET name = $2, email = $3, updated_at = now() WHERE id = $1`, id, name, email); err != nil {
			return nil, fmt.Errorf("update customer %s: %w", id, uniqueEmail(err))
		}
		return events.CustomerUpdated{CustomerID: id.String(), Email: email, Name: name}, nil
	})
}

// SetCreditLimit sets customer id's credit limit and emits customer.credit_limit_set.
func (s *Service) SetCreditLimit(ctx context.Context, id uuid.UUID, cents int64) (Account, error) {
	return s.change(ctx, id, func(tx pgx.Tx, before Account) (events.Payload, error) {
		if before.CreditLimitCents != nil && *before.CreditLimitCents == cents {
			return nil, nil
		}
		if _, err := tx.Exec(ctx, `UPDATE customers SET credit_limit_cents = $2, updated_at = now() WHERE id = $1`, id, cents); err != nil {
			return nil, fmt.Errorf("set credit limit of %s: %w", id, err)
		}
		return events.CustomerCreditLimitSet{CustomerID: id.String(), LimitCents: cents}, nil
	})
}

// SetBlocked blocks or unblocks customer id and emits customer.blocked or customer.unblocked when that
// changes anything.
func (s *Service) SetBlocked(ctx context.Context, id uuid.UUID, blocked bool, reason string) (Account, error) {
	return s.change(ctx, id, func(tx pgx.Tx, before Account) (events.Payload, error) {
		if before.Blocked == blocked {
			return nil, nil
		}
		if !blocked {
			reason = ""
		}
		if _, err := tx.Exec(ctx, `UPDATE customers SET blocked = $2, block_reason = $3, updated_at = now() WHERE id = $1`, id, blocked, reason); err != nil {
			return nil, fmt.Errorf("block customer %s: %w", id, err)
		}
		if blocked {
			return events.CustomerBlocked{CustomerID: id.String(), Reason: reason}, nil
		}
		return events.CustomerUnblocked{CustomerID: id.String()}, nil
	})
}

// change locks customer id, lets apply change it and return the event to emit (nil: nothing changed),
// emits it and returns the record as it is afterwards, all in one transaction.
func (s *Service) change(ctx context.Context, id uuid.UUID, apply func(tx pgx.Tx, before Account) (events.Payload, error)) (Account, error) {
	var after Account
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		before, err := scanAccount(tx.QueryRow(ctx, `SELECT `+accountColumns+` FROM customers WHERE id = $1 FOR UPDATE`, id))
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("lock customer %s: %w", id, err)
		}
		ev, err := apply(tx, before)
		if err != nil {
			return err
		}
		if ev != nil {
			if err := s.publish(ctx, tx, id, ev); err != nil {
				return err
			}
		}
		after, err = scanAccount(tx.QueryRow(ctx, `SELECT `+accountColumns+` FROM customers WHERE id = $1`, id))
		if err != nil {
			return fmt.Errorf("read customer %s: %w", id, err)
		}
		return nil
	})
	return after, err
}

// credentials are what a token request is checked against.
type credentials struct {
	ID    uuid.UUID
	Hash  string
	Roles []string
}

// byEmail returns the credentials of the customer with email in any case; found=false if there is none.
func (s *Service) byEmail(ctx context.Context, email string) (credentials, bool, error) {
	c, err := postgres.QueryOne[credentials](ctx, s.pool, `SELECT id, password_hash, roles FROM customers WHERE lower(email) = lower($1)`, email)
	if errors.Is(err, pgx.ErrNoRows) {
		return credentials{}, false, nil
	}
	if err != nil {
		return credentials{}, false, fmt.Errorf("look up customer by email: %w", err)
	}
	return c, true, nil
}

// approve decides whether order.placed's customer may order: it exists and is not blocked. The decision
// is recorded per order, so a redelivered order.placed emits nothing again.
func (s *Service) approve(ctx context.Context, tx pgx.Tx, ev consumer.Event, p events.OrderPlaced) error {
	reason := ""
	id, err := uuid.Parse(p.CustomerID)
	if err != nil {
		reason = events.RejectUnknownCustomer
	} else {
		var blocked bool
		err := tx.QueryRow(ctx, `SELECT blocked FROM customers WHERE id = $1`, id).Scan(&blocked)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			reason = events.RejectUnknownCustomer
		case err != nil:
			return fmt.Errorf("look up customer %s of order %s: %w", p.CustomerID, p.OrderID, err)
		case blocked:
			reason = events.RejectBlocked
		}
	}
	tag, err := tx.Exec(ctx, `INSERT INTO approvals (order_id, customer_id, approved, reason) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING`,
		p.OrderID, p.CustomerID, reason == "", reason)
	if err != nil {
		return fmt.Errorf("record decision on order %s: %w", p.OrderID, err)
	}
	if tag.RowsAffected() == 0 {
		return nil // decided before
	}
	if reason != "" {
		return s.emit.Emit(ctx, tx, ev.Envelope, events.CustomerRejected{OrderID: p.OrderID, CustomerID: p.CustomerID, Reason: reason})
	}
	return s.emit.Emit(ctx, tx, ev.Envelope, events.CustomerApproved{OrderID: p.OrderID, CustomerID: p.CustomerID})
}

// publish appends a customer lifecycle event about customer id: no order's saga, so it starts its own
// correlation and trace.
func (s *Service) publish(ctx context.Context, tx pgx.Tx, id uuid.UUID, p events.Payload) error {
	ev, err := events.New(s.emit.Source, id.String(), p)
	if err != nil {
		return err
	}
	ev.TraceParent = events.NewTraceParent()
	if err := outbox.Append(ctx, tx, s.emit.Topic, ev); err != nil {
		return fmt.Errorf("publish %s for %s: %w", ev.Type, id, err)
	}
	return nil
}

func (s *Service) inTx(ctx context.Context, f func(pgx.Tx) error) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(ctx)
	if err := f(tx); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", uniqueEmail(err))
	}
	return nil
}

// uniqueEmail turns a violation of the email index into ErrEmailTaken.
func uniqueEmail(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" && pgErr.ConstraintName == "customers_email" {
		return ErrEmailTaken
	}
	return err
}
