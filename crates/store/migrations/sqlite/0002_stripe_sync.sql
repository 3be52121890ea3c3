-- 2: Stripe sync bookkeeping. `database_id` made meter event identifiers unique across
-- databases (until migration 4); the outbox index serves "unreported, oldest first"; one lock row at most.

    CREATE TABLE meterline_meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO meterline_meta (key, value) VALUES ('database_id', lower(hex(randomblob(8))));
    CREATE INDEX usage_events_outbox ON usage_events(occurred_at, id)
        WHERE stripe_reported_at IS NULL AND stripe_expired_at IS NULL;
    CREATE TABLE sync_runs (
        id           INTEGER PRIMARY KEY,
        started_at   TEXT NOT NULL,                  -- RFC3339 UTC
        finished_at  TEXT,                           -- NULL while running (or if it died)
        outcome      TEXT NOT NULL,                  -- running, completed, incomplete, cancelled, aborted, interrupted
        attempted    INTEGER NOT NULL DEFAULT 0,
        accepted     INTEGER NOT NULL DEFAULT 0,
        duplicates   INTEGER NOT NULL DEFAULT 0,
        failed       INTEGER NOT NULL DEFAULT 0,
        expired      INTEGER NOT NULL DEFAULT 0,
        unmapped     INTEGER NOT NULL DEFAULT 0,
        remaining    INTEGER NOT NULL DEFAULT 0,
        error        TEXT
    );
    CREATE TABLE sync_lock (
        id           INTEGER PRIMARY KEY CHECK (id = 1),
        run_id       INTEGER NOT NULL REFERENCES sync_runs(id),
        host         TEXT NOT NULL,
        pid          INTEGER NOT NULL,
        acquired_at  TEXT NOT NULL,
        heartbeat    INTEGER NOT NULL                -- Unix seconds, real clock
    );
