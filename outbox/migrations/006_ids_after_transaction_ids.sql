-- A row's transaction takes its transaction id before the row takes its outbox id. The relay may then
-- publish the rows a transaction of its own process hands it after commit without reading them back
-- (outbox.LocalCommits, the relay's frontier): it needs to know that every lower id is accounted for, and
-- an id it has not seen may belong to a transaction still in progress. With this order, every id below one
-- the relay has seen belongs to a transaction older than any transaction id taken after that, so a later
-- read whose snapshot's xmin is past such an id sees the row if it ever commits. Without it a transaction
-- takes its id (nextval, in the row's defaults) before the row is written, which is when it would get a
-- transaction id, and that may come after any snapshot.
--
-- A statement trigger fires before the statement's rows are formed, defaults included, for INSERT and
-- COPY alike, and costs one call per statement. The id stays an identity (its sequence caches 1 id, so
-- ids are taken in order across sessions).
CREATE FUNCTION outbox_take_xact_id() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_current_xact_id(); -- assigns the transaction's id if it has none yet
    RETURN NULL;
END
$$;

CREATE TRIGGER outbox_take_xact_id BEFORE INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_take_xact_id();
