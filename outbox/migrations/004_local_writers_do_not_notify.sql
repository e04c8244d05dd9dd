-- The active relay names its process in outbox_relay.holder. Connections of that process carry the same
-- name in the session setting choreo.outbox_writer and tell their relay of a commit in process
-- (outbox.LocalCommits), so the trigger notifies only for the others: a NOTIFY serialises the commits of
-- every notifying transaction through their WAL flush. Sessions without the setting, and every session
-- while the holder is '' (a relay without LocalCommits), notify as before.
ALTER TABLE outbox_relay ADD COLUMN holder text NOT NULL DEFAULT '';

CREATE OR REPLACE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (SELECT waiting AND holder IS DISTINCT FROM current_setting('choreo.outbox_writer', true)
        FROM outbox_relay WHERE id = 1) THEN
        PERFORM pg_notify('outbox', '');
    END IF;
    RETURN NULL;
END
$$;
