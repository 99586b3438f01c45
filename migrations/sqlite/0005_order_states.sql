-- Each order as last delivered to Button, per integration: what a partial refund is
-- computed from.
CREATE TABLE order_states (
    integration_id  TEXT NOT NULL,
    order_id        TEXT NOT NULL,
    -- the Order object, JSON, as Button last accepted it
    body            TEXT NOT NULL,
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (integration_id, order_id)
);
