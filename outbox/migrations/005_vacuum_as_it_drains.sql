-- The outbox is a queue: every row is deleted within milliseconds of its insert, so the table is all dead
-- rows until VACUUM runs. With the defaults (a fifth of the table dead, at most once a minute per
-- database) tens of thousands pile up under load, and every relay read, which scans the primary key from
-- its lowest entry, and every delete wade through them: at 300 orders/s the relays' deletes cost Postgres
-- 1.9 s a 20 s run instead of 0.14–0.26 s. Vacuum it after a fixed number of deletes, at full speed (the table
-- holds only the backlog, so a vacuum is small). The server's autovacuum_naptime still bounds how often
-- a database is visited; choreo's embedded Postgres sets 5 s (docs/operations.md).
ALTER TABLE outbox SET (
    autovacuum_vacuum_threshold = 500,
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_cost_delay = 0
);
