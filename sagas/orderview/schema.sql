-- The order read model, created in the schema being built (search_path): the live copy is schema
-- orderview, a replay builds the next one beside it. A change here takes effect with `choreo replay
-- orderview`, which builds the new tables from the topics and swaps them in.

-- One row per order the projection has seen any event of. Columns stay NULL until the event that sets them
-- arrives: stock.reserved may be applied before order.placed, which sets created_at (NULL: not placed yet).
CREATE TABLE orders (
    id           uuid PRIMARY KEY,
    customer_id  text,
    status       text CHECK (status IN ('PENDING', 'CONFIRMED', 'CANCELLED')),
    reason       text        NOT NULL DEFAULT '',
    items        jsonb,      -- order.placed's lines: [{"sku","quantity"}]
    currency     text,       -- order.placed's currency (v1 events: USD)
    priced_lines jsonb,      -- stock.reserved's lines: [{"sku","quantity","price_cents"}]
    total_cents  bigint,
    created_at   timestamptz, -- order.placed's event time
    updated_at   timestamptz NOT NULL -- the latest event time applied
);

-- Every event of every saga, known type or not.
CREATE TABLE timeline (
    event_id uuid PRIMARY KEY,
    order_id uuid        NOT NULL,
    type     text        NOT NULL,
    version  int         NOT NULL,
    source   text        NOT NULL,
    time     timestamptz NOT NULL
);
