-- The sales report, created in the schema being built (search_path): live in schema salesview.

-- What the report needs to know of each order until it is counted: its currency (order.placed), its
-- priced lines (stock.reserved, on another topic, so in any order) and the day it was confirmed.
CREATE TABLE sales_orders (
    order_id     uuid PRIMARY KEY,
    currency     text,
    lines        jsonb,  -- [{"sku","quantity","price_cents"}]
    confirmed_on date,   -- the UTC day of order.confirmed
    counted      boolean NOT NULL DEFAULT false -- added to daily_sales
);

-- Sales per product per day: confirmed orders' lines, by the day of confirmation.
CREATE TABLE daily_sales (
    day           date   NOT NULL,
    sku           text   NOT NULL,
    currency      text   NOT NULL,
    quantity      bigint NOT NULL,
    revenue_cents bigint NOT NULL,
    orders        bigint NOT NULL,
    PRIMARY KEY (day, sku, currency)
);
