-- 17: credit alerts. An `[[alerts]]` entry with credits_below gets `credits.low` when a
-- customer's available money credits fall below it, and `credits.exhausted` when they run
-- out: rows of `alerts` like the level crossings, with their deliveries in the same outbox.
-- A credit alert's level is its type, its meter_id NULL (it is about no meter, and NULLs never
-- collide in alerts_once), `threshold` and `available` the decimals it crossed and was left
-- with. credit_alerts_sent holds one row per customer x alert x threshold sent and not yet
-- re-armed: a grant that brings the available credits back to the threshold deletes it.
-- SQLite cannot change a CHECK or a NOT NULL in place: `alerts` is rebuilt (with
-- `alert_deliveries`, whose foreign key names it), every row kept.

    CREATE TABLE alert_deliveries_16 AS SELECT * FROM alert_deliveries;
    DROP TABLE alert_deliveries;
    CREATE TABLE alerts_17 (
        id             TEXT PRIMARY KEY,             -- 'alrt_' + UUIDv7: receivers dedupe on it
        customer_id    TEXT NOT NULL REFERENCES customers(id),
        plan_id        TEXT NOT NULL,
        period_start   TEXT NOT NULL,
        period_end     TEXT NOT NULL,
        level          TEXT NOT NULL CHECK (level IN ('warning', 'critical', 'hard_cap',
                                                      'credits.low', 'credits.exhausted')),
        previous_level TEXT NOT NULL,                -- the level before the crossing ('' for credits)
        used           INTEGER NOT NULL,
        included       INTEGER,                      -- the limit at the crossing
        ratio          REAL,
        occurred_at    TEXT NOT NULL,                -- RFC3339 UTC: when it was recorded
        meter_id       TEXT DEFAULT 'usage',         -- NULL: a credit alert
        threshold      TEXT,                         -- a credit alert's credits_below (0: exhausted)
        available      TEXT                          -- a credit alert's available money after it
    ) WITHOUT ROWID;
    INSERT INTO alerts_17 (id, customer_id, plan_id, period_start, period_end, level,
                           previous_level, used, included, ratio, occurred_at, meter_id)
        SELECT id, customer_id, plan_id, period_start, period_end, level, previous_level,
               used, included, ratio, occurred_at, meter_id
        FROM alerts;
    DROP TABLE alerts;
    ALTER TABLE alerts_17 RENAME TO alerts;
    CREATE UNIQUE INDEX alerts_once ON alerts(customer_id, period_start, meter_id, level);
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
    INSERT INTO alert_deliveries SELECT * FROM alert_deliveries_16;
    DROP TABLE alert_deliveries_16;
    CREATE INDEX alert_deliveries_due ON alert_deliveries(next_attempt) WHERE state = 'pending';
    CREATE INDEX alert_deliveries_by_state ON alert_deliveries(state);
    CREATE TABLE credit_alerts_sent (
        customer_id TEXT NOT NULL REFERENCES customers(id),
        level       TEXT NOT NULL,                   -- 'credits.low' or 'credits.exhausted'
        threshold   TEXT NOT NULL,                   -- as in alerts.threshold
        alert_id    TEXT NOT NULL REFERENCES alerts(id),
        PRIMARY KEY (customer_id, level, threshold)
    ) WITHOUT ROWID;
