-- Each customer's address and name, copied from customer.registered and customer.updated; updated_at is
-- the time of the event that set them, so a redelivered older event does not undo a newer one.
CREATE TABLE contacts (
    customer_id text PRIMARY KEY,
    email       text        NOT NULL,
    name        text        NOT NULL,
    updated_at  timestamptz NOT NULL
);

-- An outcome for a customer not heard of yet WAITs for customer.registered instead of guessing an address.
ALTER TABLE notifications ADD COLUMN customer_id text NOT NULL DEFAULT '';
ALTER TABLE notifications DROP CONSTRAINT notifications_status_check;
ALTER TABLE notifications ADD CONSTRAINT notifications_status_check CHECK (status IN ('WAITING', 'PENDING', 'SENT', 'FAILED'));
CREATE INDEX notifications_waiting ON notifications (customer_id) WHERE status = 'WAITING';
