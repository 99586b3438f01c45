-- The order a delivery creates or changes: deliveries of one order are sent one at a
-- time, each after the one before it was delivered.
ALTER TABLE deliveries ADD COLUMN order_key TEXT COLLATE "C";
CREATE INDEX deliveries_order ON deliveries (integration_id, order_key, id) WHERE order_key IS NOT NULL;
