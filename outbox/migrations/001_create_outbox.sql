-- Rows are Kafka messages waiting to be published. The relay deletes a row once Kafka acknowledged it,
-- so the table holds only the backlog.
CREATE TABLE outbox (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    topic      text        NOT NULL,
    key        bytea,
    headers    jsonb       NOT NULL DEFAULT '[]',
    value      bytea,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- One notification per transaction: Postgres folds identical NOTIFYs sent in one transaction into one.
CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('outbox', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();
