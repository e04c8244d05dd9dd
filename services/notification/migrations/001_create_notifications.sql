-- The customer of each order, from order.placed, so the outcome message knows whom to tell.
CREATE TABLE customers (
    order_id    text PRIMARY KEY,
    customer_id text NOT NULL
);

-- Exactly one message per order outcome: the primary key is the order.
CREATE TABLE notifications (
    order_id        text PRIMARY KEY,
    outcome         text        NOT NULL,
    recipient       text        NOT NULL,
    subject         text        NOT NULL,
    body            text        NOT NULL,
    channel         text        NOT NULL CHECK (channel IN ('smtp', 'log')),
    status          text        NOT NULL CHECK (status IN ('PENDING', 'SENT', 'FAILED')),
    attempts        int         NOT NULL DEFAULT 0,
    last_error      text        NOT NULL DEFAULT '',
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    correlation_id  text        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz
);

CREATE INDEX notifications_pending ON notifications (next_attempt_at) WHERE status = 'PENDING';
