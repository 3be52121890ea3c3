-- 10: meters. Each event counts on one meter (`usage`, the sum of quantity, when
-- plans.toml has no [[meters]]) with its properties. The `usage` meter's total stays in
-- usage_records.used; every other meter's total and its group_by breakdown live in
-- meter_counters (group_key '' = the meter's total), the distinct values a unique_count
-- meter has seen in meter_values. Caps are decided on these rows inside the record
-- transaction, as for usage_records.

    ALTER TABLE usage_events ADD COLUMN meter_id TEXT NOT NULL DEFAULT 'usage';
    ALTER TABLE usage_events ADD COLUMN properties TEXT;  -- JSON object of strings; NULL = none
    ALTER TABLE usage_events ADD COLUMN amount INTEGER;   -- what it added to its meter; NULL = quantity
    CREATE TABLE meter_counters (
        customer_id  TEXT NOT NULL REFERENCES customers(id),
        period_start TEXT NOT NULL,
        meter_id     TEXT NOT NULL,
        group_key    TEXT NOT NULL DEFAULT '',       -- '' = total; else the group_by values as JSON
        used         INTEGER NOT NULL CHECK (typeof(used) = 'integer' AND used >= 0),
        latest_at    TEXT,                           -- latest: the event whose value `used` is
        latest_id    INTEGER,
        PRIMARY KEY (customer_id, period_start, meter_id, group_key)
    ) WITHOUT ROWID;
    CREATE TABLE meter_values (
        customer_id  TEXT NOT NULL REFERENCES customers(id),
        period_start TEXT NOT NULL,
        meter_id     TEXT NOT NULL,
        group_key    TEXT NOT NULL DEFAULT '',
        value        TEXT NOT NULL,
        PRIMARY KEY (customer_id, period_start, meter_id, group_key, value)
    ) WITHOUT ROWID;
    -- Alerts per meter: one per customer × period × meter × level.
    ALTER TABLE alerts ADD COLUMN meter_id TEXT NOT NULL DEFAULT 'usage';
    DROP INDEX alerts_once;
    CREATE UNIQUE INDEX alerts_once ON alerts(customer_id, period_start, meter_id, level);
    -- Stripe reports per meter (docs/sync.md). A report is one customer x meter x period
    -- (x group_by group, for sum and count meters, its values in `dimensions`, sent as
    -- payload keys). `formula` is the Stripe meter's: 'sum' (the report's value is the sum of
    -- its events' amounts) or 'last' (max, unique_count, latest: the meter's value when the
    -- report was made, and 0 is a value to send). For that, `value` may now be 0: the table is
    -- rebuilt for its CHECK, its rows copied back under their ids while the foreign keys of
    -- usage_events.stripe_report_id wait for the commit.
    PRAGMA defer_foreign_keys = ON;
    CREATE TEMP TABLE stripe_reports_copy AS SELECT * FROM stripe_reports;
    DROP TABLE stripe_reports;
    CREATE TABLE stripe_reports (
        id               INTEGER PRIMARY KEY,
        customer_id      TEXT NOT NULL REFERENCES customers(id),
        period_start     TEXT NOT NULL,
        meter_event_name TEXT NOT NULL,
        value            INTEGER NOT NULL CHECK (value >= 0),
        events           INTEGER NOT NULL,
        occurred_at      TEXT NOT NULL,              -- the meter event's timestamp
        identifier       TEXT NOT NULL UNIQUE,
        created_at       TEXT NOT NULL,
        first_sent_at    TEXT,
        reported_at      TEXT,                       -- NULL = not yet reported
        attempts         INTEGER NOT NULL DEFAULT 0,
        error            TEXT,
        failed_at        TEXT,
        expired_at       TEXT,
        in_doubt_at      TEXT,                       -- held: unanswered and past 23 hours
        meter_id         TEXT NOT NULL DEFAULT 'usage',
        dimensions       TEXT,                       -- JSON object of group_by values; NULL = none
        formula          TEXT NOT NULL DEFAULT 'sum' CHECK (formula IN ('sum', 'last'))
    );
    INSERT INTO stripe_reports (id, customer_id, period_start, meter_event_name, value, events,
            occurred_at, identifier, created_at, first_sent_at, reported_at, attempts, error,
            failed_at, expired_at, in_doubt_at)
        SELECT id, customer_id, period_start, meter_event_name, value, events, occurred_at,
               identifier, created_at, first_sent_at, reported_at, attempts, error, failed_at,
               expired_at, in_doubt_at
        FROM stripe_reports_copy;
    DROP TABLE stripe_reports_copy;
    CREATE INDEX stripe_reports_open ON stripe_reports(occurred_at, id)
        WHERE reported_at IS NULL AND expired_at IS NULL;
    CREATE INDEX stripe_reports_by_customer ON stripe_reports(customer_id, period_start);
    -- Reconcile compares every meter: each row names its meter.
    ALTER TABLE reconcile_rows ADD COLUMN meter_id TEXT NOT NULL DEFAULT 'usage';
