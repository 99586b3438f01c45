-- The PostgreSQL schema: the same tables as the embedded SQLite store, in PostgreSQL's
-- own types, for any number of replicas on one database.
--
-- Times are BIGINT milliseconds since the Unix epoch (UTC). Ids are prefixed ULIDs
-- (TEXT COLLATE "C": compared byte by byte, whatever the database's collation), so
-- ordering by id is ordering by creation time, and index comparisons stay cheap. An event's own strings
-- (messageId, event name) are BYTEA: they may hold U+0000, which TEXT refuses; the
-- event itself is kept as the JSON text received, where U+0000 can only appear
-- escaped. The words of `state`, `lane_state` and `outcome` are defined in the
-- service's code (domain/states.rs); the partial indexes name the ones they serve.

CREATE TABLE integrations (
    id              TEXT COLLATE "C" PRIMARY KEY,
    catalog_key     TEXT NOT NULL,
    name            TEXT NOT NULL,
    variant         TEXT NOT NULL,
    delivery_mode   TEXT NOT NULL,
    enabled         BOOLEAN NOT NULL,
    -- non-secret config values, a JSON object as text
    config          TEXT NOT NULL,
    -- secret config values, sealed with XChaCha20-Poly1305 (see secrets.rs)
    secrets         BYTEA NOT NULL,
    -- the blueprint document, as written
    blueprint       TEXT NOT NULL,
    lane_state      TEXT NOT NULL,
    lane_reason     TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);

-- Button's Retry-After for an integration: every replica's lane holds until then.
CREATE TABLE lane_holds (
    integration_id  TEXT COLLATE "C" PRIMARY KEY,
    held_until      BIGINT NOT NULL
);

CREATE TABLE events (
    message_id      BYTEA PRIMARY KEY,
    event_name      BYTEA,
    received_at     BIGINT NOT NULL,
    payload         TEXT NOT NULL
);
CREATE INDEX events_received ON events (received_at);

CREATE TABLE deliveries (
    id              TEXT COLLATE "C" PRIMARY KEY,
    integration_id  TEXT COLLATE "C" NOT NULL,
    message_id      BYTEA NOT NULL,
    event_name      BYTEA NOT NULL,
    call            TEXT,
    state           TEXT NOT NULL,
    attempts        BIGINT NOT NULL,
    available_at    BIGINT NOT NULL,
    lease_token     TEXT,
    url             TEXT,
    body            BYTEA,
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

CREATE TABLE live_logs (
    id              TEXT COLLATE "C" PRIMARY KEY,
    integration_id  TEXT COLLATE "C" NOT NULL,
    delivery_id     TEXT COLLATE "C",
    message_id      BYTEA,
    event_name      BYTEA,
    call            TEXT,
    attempt         BIGINT,
    outcome         TEXT COLLATE "C" NOT NULL,
    status_code     BIGINT,
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
    integration_id  TEXT COLLATE "C" NOT NULL,
    outcome         TEXT COLLATE "C" NOT NULL,
    count           BIGINT NOT NULL,
    PRIMARY KEY (integration_id, outcome)
);

-- Live-log entries stored per integration (kept current on insert and prune, so
-- retention by count never counts).
CREATE TABLE live_log_counts (
    integration_id  TEXT COLLATE "C" PRIMARY KEY,
    entries         BIGINT NOT NULL
);
