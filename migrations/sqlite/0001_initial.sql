-- Times are integer milliseconds since the Unix epoch (UTC). Ids are prefixed ULIDs,
-- so ordering by id is ordering by creation time.

CREATE TABLE integrations (
    id              TEXT PRIMARY KEY,
    catalog_key     TEXT NOT NULL,
    name            TEXT NOT NULL,
    variant         TEXT NOT NULL,
    delivery_mode   TEXT NOT NULL,
    enabled         BOOLEAN NOT NULL,
    -- non-secret config values, JSON object
    config          TEXT NOT NULL,
    -- secret config values, JSON object sealed with XChaCha20-Poly1305 (see secrets.rs)
    secrets         BLOB NOT NULL,
    -- the blueprint document, JSON
    blueprint       TEXT NOT NULL,
    -- 'active' or 'auth_failed' (Button answered 401; the lane waits for a new key)
    lane_state      TEXT NOT NULL,
    lane_reason     TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);

-- Every event accepted at ingest, exactly as received; message_id is the
-- deduplication key.
CREATE TABLE events (
    message_id      TEXT PRIMARY KEY,
    event_name      TEXT,
    received_at     BIGINT NOT NULL,
    payload         TEXT NOT NULL
);
CREATE INDEX events_received ON events (received_at);

-- One row per (event, integration) the event was routed to: the queue.
-- state: pending | delivered | failed | dead | filtered | mapping_failed | discarded
-- A pending row can be leased when available_at <= now; leasing moves available_at to
-- the lease expiry and sets lease_token, so a crashed holder's rows come back by
-- themselves.
CREATE TABLE deliveries (
    id              TEXT PRIMARY KEY,
    integration_id  TEXT NOT NULL,
    message_id      TEXT NOT NULL,
    event_name      TEXT NOT NULL,
    call            TEXT,
    state           TEXT NOT NULL,
    attempts        INTEGER NOT NULL,
    available_at    BIGINT NOT NULL,
    lease_token     TEXT,
    -- the Button request produced at ingest: its URL and the exact body bytes every
    -- attempt sends (method and headers follow from the call)
    url             TEXT,
    body            BLOB,
    warnings        TEXT,
    test            BOOLEAN NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
-- An event reaches each integration once: this is ingest's deduplication.
CREATE UNIQUE INDEX deliveries_once ON deliveries (integration_id, message_id);
CREATE INDEX deliveries_due ON deliveries (integration_id, available_at) WHERE state = 'pending';
CREATE INDEX deliveries_dead ON deliveries (integration_id, id) WHERE state = 'dead';
CREATE INDEX deliveries_finished ON deliveries (updated_at) WHERE state NOT IN ('pending', 'dead');

-- Immutable record of every attempt, filtering and mapping failure.
CREATE TABLE live_logs (
    id              TEXT PRIMARY KEY,
    integration_id  TEXT NOT NULL,
    delivery_id     TEXT,
    message_id      TEXT,
    event_name      TEXT,
    call            TEXT,
    attempt         INTEGER,
    outcome         TEXT NOT NULL,
    status_code     INTEGER,
    status_line     TEXT,
    latency_ms      DOUBLE PRECISION,
    error           TEXT,
    hint            TEXT,
    warnings        TEXT,
    next_attempt_at BIGINT,
    -- Button's answer: JSON {headers, body (cut to a bound), truncated}
    response        TEXT,
    test            BOOLEAN NOT NULL,
    created_at      BIGINT NOT NULL
);
CREATE INDEX live_logs_integration ON live_logs (integration_id, id);
CREATE INDEX live_logs_message ON live_logs (message_id);

-- Lifetime counts of live-log outcomes per integration (not reduced by pruning).
CREATE TABLE outcome_counts (
    integration_id  TEXT NOT NULL,
    outcome         TEXT NOT NULL,
    count           BIGINT NOT NULL,
    PRIMARY KEY (integration_id, outcome)
);

-- Live-log entries stored per integration (kept current on insert and prune, so
-- retention by count never counts).
CREATE TABLE live_log_counts (
    integration_id  TEXT PRIMARY KEY,
    entries         BIGINT NOT NULL
);
