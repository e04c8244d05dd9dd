-- The read model's secondary indexes. A replay creates them once the new copy has caught up, before the
-- swap: building them at once is much faster than keeping them row by row during the bulk load.

-- Keyset pagination, newest first, over placed orders, optionally by status or customer.
CREATE INDEX orders_created ON orders (created_at DESC, id DESC) WHERE created_at IS NOT NULL;
CREATE INDEX orders_status_created ON orders (status, created_at DESC, id DESC) WHERE created_at IS NOT NULL;
CREATE INDEX orders_customer_created ON orders (customer_id, created_at DESC, id DESC) WHERE created_at IS NOT NULL;

-- An order's timeline, oldest first.
CREATE INDEX timeline_order ON timeline (order_id, time, event_id);
