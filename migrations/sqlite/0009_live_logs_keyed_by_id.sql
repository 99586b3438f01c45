-- Live-log entries kept in a table ordered by their id (WITHOUT ROWID) instead of by a
-- hidden rowid with a separate index on the id. Every index of the table already
-- holds the id, so each entry loses the id index's copy of its id (about 45 bytes)
-- and the rowid in its row and in each of its indexes. The id is time-ordered, so new
-- entries still go to the end of the table. Rebuilding the table copies every stored
-- entry once: on a store of millions of entries this migration takes a while (and
-- needs the table's size again in free disk space until it is done).
CREATE TABLE live_logs_by_id (
    id              TEXT PRIMARY KEY NOT NULL,
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
    -- Button's answer (packed: store/pack.rs; entries written before 0008 hold text)
    response        BLOB,
    test            BOOLEAN NOT NULL,
    created_at      BIGINT NOT NULL,
    replaces        TEXT
) WITHOUT ROWID;
INSERT INTO live_logs_by_id
SELECT id, integration_id, delivery_id, message_id, event_name, call, attempt, outcome,
       status_code, status_line, latency_ms, error, hint, warnings, next_attempt_at,
       response, test, created_at, replaces
FROM live_logs ORDER BY id;
DROP TABLE live_logs;
ALTER TABLE live_logs_by_id RENAME TO live_logs;
-- The indexes of 0001 and 0007, as they were.
CREATE INDEX live_logs_integration ON live_logs (integration_id, id);
CREATE INDEX live_logs_outcome ON live_logs (integration_id, outcome, id, event_name);
CREATE INDEX live_logs_event ON live_logs (integration_id, event_name, id, outcome);
CREATE INDEX live_logs_message ON live_logs (integration_id, message_id, id);
CREATE INDEX live_logs_test ON live_logs (integration_id, id) WHERE test = 1;
