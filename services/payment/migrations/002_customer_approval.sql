-- Authorization waits for a third half: the customer service's customer.approved.
ALTER TABLE payments ADD COLUMN customer_approved boolean NOT NULL DEFAULT false;

-- Limits now come from customer.credit_limit_set; set_at (the event's time) keeps a redelivered older
-- limit from overwriting a newer one.
ALTER TABLE customer_limits ADD COLUMN set_at timestamptz;
