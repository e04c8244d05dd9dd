-- One row per order. The address comes with order.placed, the go-ahead with payment.authorized; they may
-- arrive in either order, and scheduling waits for both.
CREATE TABLE shipments (
    order_id    text PRIMARY KEY,
    address     jsonb,
    authorized  boolean     NOT NULL DEFAULT false,
    status      text        NOT NULL CHECK (status IN ('WAITING', 'SCHEDULED', 'FAILED', 'CANCELLED')),
    shipment_id uuid,
    reason      text        NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
