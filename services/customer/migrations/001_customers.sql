-- Customers. The email is unique without regard to case (the index on lower(email)); the password is
-- stored only as an argon2id hash in PHC string format, parameters included, so they can be raised later.
CREATE TABLE customers (
    id                 uuid PRIMARY KEY,
    email              text        NOT NULL,
    name               text        NOT NULL,
    password_hash      text        NOT NULL,
    roles              text[]      NOT NULL DEFAULT '{}', -- e.g. {operator}; set by hand, no API grants roles
    credit_limit_cents bigint      CHECK (credit_limit_cents >= 0),
    blocked            boolean     NOT NULL DEFAULT false,
    block_reason       text        NOT NULL DEFAULT '',
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX customers_email ON customers (lower(email));

-- The decision taken on each order, so that a redelivered order.placed decides nothing twice.
CREATE TABLE approvals (
    order_id    text PRIMARY KEY,
    customer_id text        NOT NULL,
    approved    boolean     NOT NULL,
    reason      text        NOT NULL DEFAULT '',
    decided_at  timestamptz NOT NULL DEFAULT now()
);
