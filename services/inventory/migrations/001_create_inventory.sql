-- stock is what can still be reserved; reserved is held for pending orders; sold left with confirmed ones.
CREATE TABLE products (
    sku         text PRIMARY KEY,
    name        text        NOT NULL,
    price_cents bigint      NOT NULL CHECK (price_cents >= 0),
    stock       int         NOT NULL CHECK (stock >= 0),
    reserved    int         NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    sold        int         NOT NULL DEFAULT 0 CHECK (sold >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- One row per order: what was decided for it, so redeliveries and compensations are idempotent.
CREATE TABLE reservations (
    order_id    text PRIMARY KEY,
    status      text        NOT NULL CHECK (status IN ('RESERVED', 'REJECTED', 'RELEASED', 'SOLD')),
    lines       jsonb       NOT NULL DEFAULT '[]',
    total_cents bigint      NOT NULL DEFAULT 0,
    reason      text        NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
