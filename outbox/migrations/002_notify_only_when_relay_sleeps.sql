-- NOTIFY takes a database-wide lock at commit and holds it through the WAL flush, so transactions that
-- notify commit one at a time: group commit stops working (about 6k durable commits/s instead of 18k+
-- with 8 writers on the same disk). The relay therefore asks for notifications only while it sleeps:
-- it sets waiting before it sleeps (and reads once more afterwards), and clears it when it wakes.
CREATE TABLE outbox_relay (
    id      int PRIMARY KEY CHECK (id = 1),
    waiting boolean NOT NULL DEFAULT true
);
INSERT INTO outbox_relay (id) VALUES (1);

CREATE OR REPLACE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (SELECT waiting FROM outbox_relay WHERE id = 1) THEN
        PERFORM pg_notify('outbox', '');
    END IF;
    RETURN NULL;
END
$$;
