-- The order in which an order's changes were accepted, which is the order they are
-- sent in. Ids cannot say it: a write makes its ids before it reaches the writer, so
-- an id can be smaller than one the writer committed before it. The writer numbers
-- each order's changes as it commits them.
ALTER TABLE deliveries ADD COLUMN order_seq INTEGER;
UPDATE deliveries SET order_seq = (
    SELECT count(*) FROM deliveries p
    WHERE p.integration_id = deliveries.integration_id AND p.order_key = deliveries.order_key
      AND p.id <= deliveries.id)
WHERE order_key IS NOT NULL;
DROP INDEX deliveries_order;
CREATE INDEX deliveries_order ON deliveries (integration_id, order_key, order_seq) WHERE order_key IS NOT NULL;
