-- Headers as two parallel arrays instead of JSON: the relay decoded the JSON (with base64 values) of every
-- row it published, and that decoding was most of its CPU time. pgx reads arrays in Postgres' binary
-- format, and psql still shows them: header_values[array_position(header_keys, 'ce_type')].
-- The headers column stays for rows written by processes of the previous version during a rolling upgrade;
-- the relay reads it when header_keys is NULL.
ALTER TABLE outbox ADD COLUMN header_keys text[], ADD COLUMN header_values bytea[];
