-- 7: usage alerts. One row per customer x period x level crossed,
-- written by the transaction that crossed it (the unique index makes it exactly one);
-- one delivery row per alert and `[[alerts]]` destination, an outbox like the Stripe sync.

    CREATE TABLE alerts (
        id             TEXT PRIMARY KEY,             -- 'alrt_' + UUIDv7: receivers dedupe on it
        customer_id    TEXT NOT NULL REFERENCES customers(id),
        plan_id        TEXT NOT NULL,
        period_start   TEXT NOT NULL,
        period_end     TEXT NOT NULL,
        level          TEXT NOT NULL CHECK (level IN ('warning', 'critical', 'hard_cap')),
        previous_level TEXT NOT NULL,                -- the level before the crossing
        used           INTEGER NOT NULL,
        included       INTEGER,                      -- the limit at the crossing
        ratio          REAL,
        occurred_at    TEXT NOT NULL                 -- RFC3339 UTC: when it was recorded
    ) WITHOUT ROWID;
    CREATE UNIQUE INDEX alerts_once ON alerts(customer_id, period_start, level);
    CREATE INDEX alerts_by_time ON alerts(occurred_at);
    CREATE TABLE alert_deliveries (
        alert_id     TEXT NOT NULL REFERENCES alerts(id),
        target       TEXT NOT NULL,                  -- 'webhook <url>' or 'command <json argv>'
        state        TEXT NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'delivered', 'failed')),
        attempts     INTEGER NOT NULL DEFAULT 0,
        next_attempt INTEGER NOT NULL DEFAULT 0,     -- Unix seconds, real clock
        last_error   TEXT,
        delivered_at TEXT,
        PRIMARY KEY (alert_id, target)
    ) WITHOUT ROWID;
    CREATE INDEX alert_deliveries_due ON alert_deliveries(next_attempt) WHERE state = 'pending';
    CREATE INDEX alert_deliveries_by_state ON alert_deliveries(state);
    CREATE TABLE alert_runs (
        id           INTEGER PRIMARY KEY,
        started_at   TEXT NOT NULL,
        finished_at  TEXT,                           -- NULL while running (or if it died)
        outcome      TEXT NOT NULL,                  -- running, completed, incomplete, interrupted
        attempted    INTEGER NOT NULL DEFAULT 0,
        delivered    INTEGER NOT NULL DEFAULT 0,
        retrying     INTEGER NOT NULL DEFAULT 0,
        failed       INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE alert_lock (
        id           INTEGER PRIMARY KEY CHECK (id = 1),
        run_id       INTEGER NOT NULL REFERENCES alert_runs(id),
        host         TEXT NOT NULL,
        pid          INTEGER NOT NULL,
        acquired_at  TEXT NOT NULL,
        heartbeat    INTEGER NOT NULL                -- Unix seconds, real clock
    );
