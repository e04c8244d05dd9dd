-- A row's transaction takes its transaction id before the row takes its outbox id. The relay may then
-- publish the rows a transaction of its own process hands it after commit without reading them back
-- (outbox.LocalCommits, the relay's frontier): it needs to know that every lower id is accounted for, and
-- an id it has not seen may belong to a transaction still in progress. With this order, every id below one
-- that a read saw belongs to a transaction older than that read's snapshot, so a later read whose
-- snapshot's xmin is past it sees the row if it ever commits. A plain identity takes its id first and gets
-- a transaction id only when the row is written, which may come after any snapshot.
LOCK TABLE outbox IN ACCESS EXCLUSIVE MODE; -- no writer takes an id of the old sequence meanwhile

CREATE SEQUENCE outbox_next AS bigint CACHE 1; -- ids in the order they are taken, across sessions
SELECT setval('outbox_next', coalesce(pg_sequence_last_value(pg_get_serial_sequence('outbox', 'id')), 1),
              pg_sequence_last_value(pg_get_serial_sequence('outbox', 'id')) IS NOT NULL);

-- A SQL-standard body runs its statements in order and binds the sequence now, whatever the search_path
-- of a writer. Writers need USAGE on the sequence (an identity did not); choreo's services own theirs.
CREATE FUNCTION outbox_next_id() RETURNS bigint LANGUAGE sql VOLATILE
BEGIN ATOMIC
    SELECT pg_current_xact_id(); -- assigns the transaction's id if it has none yet
    SELECT nextval('outbox_next');
END;

ALTER TABLE outbox ALTER COLUMN id DROP IDENTITY;
ALTER TABLE outbox ALTER COLUMN id SET DEFAULT outbox_next_id();
ALTER SEQUENCE outbox_next OWNED BY outbox.id;
