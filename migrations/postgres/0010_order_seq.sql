-- The order in which an order's changes were accepted, which is the order they are
-- sent in. Ids cannot say it: two writes make their ids (on different threads, or
-- replicas) before either commits, so an id can be smaller than one committed before
-- it. A write takes its numbers after it holds the order (an advisory lock per order,
-- until its commit), so an order's numbers follow its commits. Each write takes one
-- step of the sequence, a block of 2^20 numbers, for all its changes.
CREATE SEQUENCE deliveries_order_seq INCREMENT BY 1048576;
ALTER TABLE deliveries ADD COLUMN order_seq BIGINT;
UPDATE deliveries SET order_seq = r.n
FROM (SELECT id, row_number() OVER (PARTITION BY integration_id, order_key ORDER BY id) AS n
      FROM deliveries WHERE order_key IS NOT NULL) AS r
WHERE deliveries.id = r.id;
SELECT setval('deliveries_order_seq', (SELECT COALESCE(MAX(order_seq), 0) + 1 FROM deliveries), false);
-- This service binds the column on every row (NULL where there is no order). A replica
-- still on the release before, running while this one migrated, does not name it:
-- its rows take a number here instead, so that none is left out of its order's
-- sequence (their writes hold no lock, as before this migration).
ALTER TABLE deliveries ALTER COLUMN order_seq SET DEFAULT nextval('deliveries_order_seq');
DROP INDEX deliveries_order;
CREATE INDEX deliveries_order ON deliveries (integration_id, order_key, order_seq) WHERE order_key IS NOT NULL;
