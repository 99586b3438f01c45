-- One row that /readyz rewrites: proof that the store can commit a write right now
-- (a full disk or a lost database fails it, where a read would still answer).
CREATE TABLE store_probe (
    id          SMALLINT PRIMARY KEY CHECK (id = 1),
    probed_at   BIGINT NOT NULL
);
