-- Sources: senders with their own ingest token (kept only as its SHA-256), each
-- connected to chosen integrations.
CREATE TABLE sources (
    id              TEXT COLLATE "C" PRIMARY KEY,
    name            TEXT NOT NULL,
    token_sha256    BYTEA NOT NULL UNIQUE,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);

CREATE TABLE source_integrations (
    source_id       TEXT COLLATE "C" NOT NULL,
    integration_id  TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (source_id, integration_id)
);
CREATE INDEX source_integrations_integration ON source_integrations (integration_id);
