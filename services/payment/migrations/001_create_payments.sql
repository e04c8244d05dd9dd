-- One row per order. The payment token and customer come with order.placed, the amount with
-- stock.reserved; they may arrive in either order, and authorization waits for both.
CREATE TABLE payments (
    order_id     text PRIMARY KEY,
    customer_id  text,
    token        text,
    amount_cents bigint,
    status       text        NOT NULL CHECK (status IN ('WAITING', 'AUTHORIZED', 'DECLINED', 'REFUNDED', 'CANCELLED')),
    payment_id   uuid,
    reason       text        NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- Per-customer authorization limits; customers not listed get the configured default.
CREATE TABLE customer_limits (
    customer_id text PRIMARY KEY,
    limit_cents bigint NOT NULL CHECK (limit_cents >= 0)
);
