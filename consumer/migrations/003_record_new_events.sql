-- Records a batch's event ids in the inbox, failing where the consumer's other inbox statement skips: when
-- an id is there already (a redelivery) or a key of the batch is parked. A consumer's first try of a batch
-- expects only new events and sends this with its handlers' statements instead of waiting for the inbox
-- first; should it fail, the transaction is rolled back and the batch tried again with the statement that
-- finds the redeliveries and the parked keys before the handlers run.
CREATE FUNCTION inbox_record_new(p_consumer text, p_ids uuid[], p_topics text[], p_partitions int[],
                                 p_offsets bigint[], p_keys text[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM parked WHERE consumer = p_consumer AND key = ANY (p_keys)) THEN
        RAISE EXCEPTION 'a key of the batch is parked' USING ERRCODE = 'P0001';
    END IF;
    INSERT INTO inbox (consumer, event_id, topic, partition, "offset")
    SELECT p_consumer, u.id, u.topic, u.part, u.off
    FROM unnest(p_ids, p_topics, p_partitions, p_offsets) AS u(id, topic, part, off);
END
$$;
