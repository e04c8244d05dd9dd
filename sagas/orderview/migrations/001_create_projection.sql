-- The order read model. Every statement is idempotent (IF NOT EXISTS): a replay under a new consumer group
-- hosts the service under that group's name, so these migrations run again, under that name's version table,
-- in a database that may already hold them. Later migrations must keep that property.

-- One row per order the projection has seen any event of. Columns stay NULL until the event that sets them
-- arrives: stock.reserved may be applied before order.placed, which sets created_at (NULL: not placed yet).
CREATE TABLE IF NOT EXISTS orders (
    id           uuid PRIMARY KEY,
    customer_id  text,
    status       text CHECK (status IN ('PENDING', 'CONFIRMED', 'CANCELLED')),
    reason       text        NOT NULL DEFAULT '',
    items        jsonb,      -- order.placed's lines: [{"sku","quantity"}]
    priced_lines jsonb,      -- stock.reserved's lines: [{"sku","quantity","price_cents"}]
    total_cents  bigint,
    created_at   timestamptz, -- order.placed's event time
    updated_at   timestamptz NOT NULL -- the latest event time applied
);

-- Keyset pagination, newest first, over placed orders, optionally by status or customer.
CREATE INDEX IF NOT EXISTS orders_created ON orders (created_at DESC, id DESC) WHERE created_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS orders_status_created ON orders (status, created_at DESC, id DESC) WHERE created_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS orders_customer_created ON orders (customer_id, created_at DESC, id DESC) WHERE created_at IS NOT NULL;

-- Every event of every saga, known type or not. No foreign key to orders: Reset truncates both, and the
-- event's row and its order's row are written in the same transaction anyway.
CREATE TABLE IF NOT EXISTS timeline (
    event_id uuid PRIMARY KEY,
    order_id uuid        NOT NULL,
    type     text        NOT NULL,
    version  int         NOT NULL,
    source   text        NOT NULL,
    time     timestamptz NOT NULL
);

CREATE INDEX IF NOT EXISTS timeline_order ON timeline (order_id, time, event_id);
