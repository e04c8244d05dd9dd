-- Events a consumer group parked: a transient failure outlasted its attempts, so the event's key (an order)
-- is quarantined and its later events queue here behind it, in order, while other keys keep flowing. The
-- rows are applied in seq order when the key is released (`choreo dlq SERVICE release KEY`).
CREATE TABLE parked (
    seq           bigserial   PRIMARY KEY, -- the order to apply them in
    consumer      text        NOT NULL,
    key           text        NOT NULL,
    event_id      uuid        NOT NULL,
    topic         text        NOT NULL,
    partition     int         NOT NULL,
    "offset"      bigint      NOT NULL,
    value         bytea       NOT NULL,
    headers       jsonb       NOT NULL, -- [{"k": key, "v": base64 value}], as the message carried them
    reason        text        NOT NULL,
    parked_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (consumer, event_id)
);

CREATE INDEX parked_key ON parked (consumer, key, seq);
