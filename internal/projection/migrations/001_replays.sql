-- Replays of the projections of this database, one row each (the latest), written by the replay in the
-- same transaction as each batch it applies: the progress /metrics shows, wherever the replay runs.
CREATE TABLE IF NOT EXISTS projection_replays (
    projection  text PRIMARY KEY,
    shadow      text        NOT NULL,             -- the schema being built
    started_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    finished_at timestamptz,                      -- NULL while it runs (or if it stopped half-way)
    applied     bigint      NOT NULL DEFAULT 0,   -- events applied so far
    total       bigint      NOT NULL DEFAULT 0,   -- events to apply, as far as known (it grows as new ones arrive)
    rate        double precision NOT NULL DEFAULT 0 -- events a second since it started
);
