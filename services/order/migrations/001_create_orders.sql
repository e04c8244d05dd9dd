CREATE TABLE orders (
    id               uuid PRIMARY KEY,
    customer_id      text        NOT NULL,
    status           text        NOT NULL CHECK (status IN ('PENDING', 'CONFIRMED', 'CANCELLED')),
    reason           text        NOT NULL DEFAULT '',
    items            jsonb       NOT NULL,
    correlation_id   text        NOT NULL,
    deadline         timestamptz NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- The deadline sweeper looks only at pending orders.
CREATE INDEX orders_pending_deadline ON orders (deadline) WHERE status = 'PENDING';

-- A retried POST with the same Idempotency-Key returns the order the first one created.
CREATE TABLE idempotency_keys (
    key          text PRIMARY KEY,
    request_hash bytea       NOT NULL,
    order_id     uuid        NOT NULL REFERENCES orders (id),
    created_at   timestamptz NOT NULL DEFAULT now()
);
