-- The large values are kept packed (zstd with a dictionary per kind of value; see
-- store/pack.rs): each event as received, each of Button's answers and each order as
-- last delivered become bytes.
-- Rows already stored are converted as they are (their UTF-8 text), which the service
-- reads as written before packing; new rows are packed. (deliveries.body was bytes
-- already.)
ALTER TABLE events ALTER COLUMN payload TYPE BYTEA USING convert_to(payload, 'UTF8');
ALTER TABLE live_logs ALTER COLUMN response TYPE BYTEA USING convert_to(response, 'UTF8');
ALTER TABLE order_states ALTER COLUMN body TYPE BYTEA USING convert_to(body, 'UTF8');
