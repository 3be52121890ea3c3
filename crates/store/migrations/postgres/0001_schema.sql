-- The PostgreSQL counterpart of the SQLite migrations 1-10 (../sqlite/0001 ... 0010): the
-- schema a SQLite database has after all ten, in one step, for a new PostgreSQL database. The
-- tables, their columns (same names, same order), primary keys, unique and partial indexes,
-- other indexes, CHECK constraints, foreign keys, triggers and seed rows are SQLite's; the
-- SQL the store runs against them is the same wherever it can be.
--
-- Types, because the store binds and reads i64, f64, String, Option and Vec<u8>:
--   INTEGER -> BIGINT (primary keys included: ids are max(id) + 1, never a sequence; the
--              booleans stay BIGINT 0/1)
--   REAL    -> DOUBLE PRECISION
--   TEXT    -> TEXT (timestamps stay RFC 3339 text, dates YYYY-MM-DD, decimals text)
--   BLOB    -> BYTEA (there is none yet)
-- `WITHOUT ROWID` is dropped (every PostgreSQL table is a heap with its own primary key index),
-- and `typeof(x) = 'integer'` checks are the BIGINT type itself.
--
-- What SQLite does implicitly and is spelled out here:
--   * An INTEGER PRIMARY KEY is SQLite's rowid: an INSERT without an id gets max(id) + 1.
--     The store relies on it for stripe_reports, reconcile_runs, sync_runs, alert_runs and
--     api_tokens. A BEFORE INSERT trigger (`..._id`, `meterline_next_id`) does the same here
--     for every such table, only when the id is missing; no sequence, so ids stay max + 1
--     whoever inserts (a copy of SQLite rows included).
--   * customers has a TEXT primary key and SQLite's hidden rowid, which the dashboard orders by
--     (insertion order). Here it is an explicit last column `rowid`, filled the same way.
--   * SQLite's triggers (change_counters, stripe_changes) are trigger functions here.
--
-- Run it in one transaction. Text compares and sorts as SQLite's BINARY collation only in a
-- database whose collation is "C" (CREATE DATABASE ... LC_COLLATE 'C' TEMPLATE template0).

-- The id of an INSERT that gave none: max(id) + 1, as SQLite picks a rowid.
CREATE FUNCTION meterline_next_id() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('SELECT COALESCE(MAX(id), 0) + 1 FROM %I.%I', TG_TABLE_SCHEMA, TG_TABLE_NAME)
        INTO NEW.id;
    RETURN NEW;
END
$$;

-- 1: customers, usage events, per-period and per-member counters.
CREATE TABLE customers (
    id                 TEXT PRIMARY KEY,
    name               TEXT NOT NULL,
    plan_id            TEXT NOT NULL,
    stripe_customer_id TEXT,
    billing_anchor     TEXT NOT NULL,            -- YYYY-MM-DD
    created_at         TEXT NOT NULL,
    archived_at        TEXT,                     -- 6: RFC3339 UTC; NULL = active
    rowid              BIGINT NOT NULL           -- SQLite's implicit rowid: insertion order
);
CREATE UNIQUE INDEX customers_rowid ON customers(rowid);
CREATE FUNCTION meterline_next_customer_rowid() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.rowid := (SELECT COALESCE(MAX(rowid), 0) + 1 FROM customers);
    RETURN NEW;
END
$$;
CREATE TRIGGER customers_next_rowid BEFORE INSERT ON customers
    FOR EACH ROW WHEN (NEW.rowid IS NULL) EXECUTE FUNCTION meterline_next_customer_rowid();

CREATE TABLE usage_events (
    id                     BIGINT PRIMARY KEY,
    customer_id            TEXT NOT NULL REFERENCES customers(id),
    user_id                TEXT,                 -- member of an organisation account
    quantity               BIGINT NOT NULL CHECK (quantity > 0),
    occurred_at            TEXT NOT NULL,        -- RFC3339 UTC, whole seconds
    recorded_at            TEXT NOT NULL,
    period_start           TEXT NOT NULL,        -- joins usage_records
    idempotency_key        TEXT,                 -- unique when set, per source (index below)
    stripe_reported_at     TEXT,                 -- NULL = not yet reported
    stripe_attempts        BIGINT NOT NULL DEFAULT 0,
    stripe_error           TEXT,                 -- last error Stripe gave, if any
    stripe_failed_at       TEXT,                 -- set when Stripe refused it for good
    stripe_expired_at      TEXT,                 -- set when past Stripe's 35-day window
    stripe_identifier      TEXT,                 -- 4: the meter event identifier
    stripe_report_id       BIGINT,               -- 8: REFERENCES stripe_reports(id), below
    stripe_first_sent_at   TEXT,                 -- 8: per_event mode
    stripe_in_doubt_at     TEXT,                 -- 8: per_event mode
    idempotency_source     TEXT,                 -- 9: native, stripe, ce, lago or legacy
    meter_id               TEXT NOT NULL DEFAULT 'usage',  -- 10
    properties             TEXT,                 -- 10: JSON object of strings; NULL = none
    amount                 BIGINT                -- 10: what it added to its meter; NULL = quantity
);
CREATE TRIGGER usage_events_id BEFORE INSERT ON usage_events
    FOR EACH ROW WHEN (NEW.id IS NULL) EXECUTE FUNCTION meterline_next_id();
-- 9: partial, so events recorded without a key cost no index write.
CREATE UNIQUE INDEX usage_events_idempotency_key
    ON usage_events(idempotency_key, idempotency_source) WHERE idempotency_key IS NOT NULL;
CREATE INDEX usage_events_by_customer_time ON usage_events(customer_id, occurred_at);

CREATE TABLE usage_records (
    customer_id      TEXT NOT NULL REFERENCES customers(id),
    period_start     TEXT NOT NULL,
    period_end       TEXT NOT NULL,
    used             BIGINT NOT NULL CHECK (used >= 0),
    plan_id          TEXT NOT NULL,
    meter_event_name TEXT NOT NULL,
    included         BIGINT,                     -- 4: NULL: unlimited
    at_limit         TEXT,                       -- 4: 'block' or 'overage'; NULL: no terms yet
    overage_rate     TEXT,                       -- 4: decimal text
    price            TEXT,                       -- 4: decimal text
    PRIMARY KEY (customer_id, period_start)
);

CREATE TABLE usage_members (
    customer_id  TEXT NOT NULL REFERENCES customers(id),
    period_start TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    used         BIGINT NOT NULL,                -- SQLite's CHECK (typeof(used) = 'integer')
    PRIMARY KEY (customer_id, period_start, user_id)
);

-- 2: Stripe sync bookkeeping. `database_id`: 16 lowercase hex digits, random per database
-- (SQLite's lower(hex(randomblob(8)))).
CREATE TABLE meterline_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
INSERT INTO meterline_meta (key, value)
    VALUES ('database_id', substr(md5(gen_random_uuid()::text), 1, 16));
-- (Migration 4's 'period_terms_pending' row is written only over existing usage_records, and
-- migrations 4 and 9 backfill existing events: a new database has none.)
CREATE INDEX usage_events_outbox ON usage_events(occurred_at, id)
    WHERE stripe_reported_at IS NULL AND stripe_expired_at IS NULL;

CREATE TABLE sync_runs (
    id           BIGINT PRIMARY KEY,
    started_at   TEXT NOT NULL,                  -- RFC3339 UTC
    finished_at  TEXT,                           -- NULL while running (or if it died)
    outcome      TEXT NOT NULL,                  -- running, completed, incomplete, cancelled, aborted, interrupted
    attempted    BIGINT NOT NULL DEFAULT 0,
    accepted     BIGINT NOT NULL DEFAULT 0,
    duplicates   BIGINT NOT NULL DEFAULT 0,
    failed       BIGINT NOT NULL DEFAULT 0,
    expired      BIGINT NOT NULL DEFAULT 0,
    unmapped     BIGINT NOT NULL DEFAULT 0,
    remaining    BIGINT NOT NULL DEFAULT 0,
    error        TEXT
);
CREATE TRIGGER sync_runs_id BEFORE INSERT ON sync_runs
    FOR EACH ROW WHEN (NEW.id IS NULL) EXECUTE FUNCTION meterline_next_id();

CREATE TABLE sync_lock (
    id           BIGINT PRIMARY KEY CHECK (id = 1),
    run_id       BIGINT NOT NULL REFERENCES sync_runs(id),
    host         TEXT NOT NULL,
    pid          BIGINT NOT NULL,
    acquired_at  TEXT NOT NULL,
    heartbeat    BIGINT NOT NULL                 -- Unix seconds, real clock
);
CREATE TRIGGER sync_lock_id BEFORE INSERT ON sync_lock
    FOR EACH ROW WHEN (NEW.id IS NULL) EXECUTE FUNCTION meterline_next_id();

-- 3: change marks for live views, and a covering index for the Stripe backlog counts.
CREATE TABLE change_counters (
    name  TEXT PRIMARY KEY,                      -- 'customers' or 'stripe'
    value BIGINT NOT NULL
);
INSERT INTO change_counters (name, value) VALUES ('customers', 0), ('stripe', 0);

CREATE FUNCTION meterline_customers_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE change_counters SET value = value + 1 WHERE name = 'customers';
    RETURN NULL;
END
$$;
CREATE TRIGGER customers_inserted AFTER INSERT ON customers
    FOR EACH ROW EXECUTE FUNCTION meterline_customers_changed();
CREATE TRIGGER customers_updated AFTER UPDATE ON customers
    FOR EACH ROW EXECUTE FUNCTION meterline_customers_changed();
CREATE TRIGGER customers_deleted AFTER DELETE ON customers
    FOR EACH ROW EXECUTE FUNCTION meterline_customers_changed();

-- Each customer's last Stripe change, so a refresh recounts only those customers.
CREATE TABLE stripe_changes (
    customer_id TEXT PRIMARY KEY,
    seq         BIGINT NOT NULL                  -- the 'stripe' counter at the change
);
CREATE INDEX stripe_changes_by_seq ON stripe_changes(seq);

CREATE FUNCTION meterline_usage_events_stripe_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE change_counters SET value = value + 1 WHERE name = 'stripe';
    INSERT INTO stripe_changes (customer_id, seq)
        VALUES (NEW.customer_id, (SELECT value FROM change_counters WHERE name = 'stripe'))
        ON CONFLICT (customer_id) DO UPDATE SET seq = excluded.seq;
    RETURN NULL;
END
$$;
CREATE TRIGGER usage_events_stripe_changed
    AFTER UPDATE OF stripe_reported_at, stripe_failed_at, stripe_expired_at, stripe_error
    ON usage_events
    FOR EACH ROW EXECUTE FUNCTION meterline_usage_events_stripe_changed();
CREATE INDEX usage_events_backlog
    ON usage_events(customer_id, stripe_failed_at, stripe_expired_at)
    WHERE stripe_reported_at IS NULL;

-- 4: a random Stripe identifier per event.
CREATE UNIQUE INDEX usage_events_stripe_identifier ON usage_events(stripe_identifier);

-- 5: bearer tokens for `meterline serve`. Only the SHA-256 of a token is stored.
CREATE TABLE api_tokens (
    id           BIGINT PRIMARY KEY,
    name         TEXT NOT NULL UNIQUE,
    token_sha256 TEXT NOT NULL UNIQUE,           -- lowercase hex
    created_at   TEXT NOT NULL,                  -- RFC3339 UTC
    last_used_at TEXT,                           -- precise to about a minute
    revoked_at   TEXT                            -- set by `token revoke`; never reused
);
CREATE TRIGGER api_tokens_id BEFORE INSERT ON api_tokens
    FOR EACH ROW WHEN (NEW.id IS NULL) EXECUTE FUNCTION meterline_next_id();

-- 7: usage alerts, one per customer x period x meter x level, and their deliveries.
CREATE TABLE alerts (
    id             TEXT PRIMARY KEY,             -- 'alrt_' + UUIDv7: receivers dedupe on it
    customer_id    TEXT NOT NULL REFERENCES customers(id),
    plan_id        TEXT NOT NULL,
    period_start   TEXT NOT NULL,
    period_end     TEXT NOT NULL,
    level          TEXT NOT NULL CHECK (level IN ('warning', 'critical', 'hard_cap')),
    previous_level TEXT NOT NULL,                -- the level before the crossing
    used           BIGINT NOT NULL,
    included       BIGINT,                       -- the limit at the crossing
    ratio          DOUBLE PRECISION,
    occurred_at    TEXT NOT NULL,                -- RFC3339 UTC: when it was recorded
    meter_id       TEXT NOT NULL DEFAULT 'usage' -- 10
);
CREATE UNIQUE INDEX alerts_once ON alerts(customer_id, period_start, meter_id, level);
CREATE INDEX alerts_by_time ON alerts(occurred_at);

CREATE TABLE alert_deliveries (
    alert_id     TEXT NOT NULL REFERENCES alerts(id),
    target       TEXT NOT NULL,                  -- 'webhook <url>' or 'command <json argv>'
    state        TEXT NOT NULL DEFAULT 'pending'
                 CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts     BIGINT NOT NULL DEFAULT 0,
    next_attempt BIGINT NOT NULL DEFAULT 0,      -- Unix seconds, real clock
    last_error   TEXT,
    delivered_at TEXT,
    PRIMARY KEY (alert_id, target)
);
CREATE INDEX alert_deliveries_due ON alert_deliveries(next_attempt) WHERE state = 'pending';
CREATE INDEX alert_deliveries_by_state ON alert_deliveries(state);

CREATE TABLE alert_runs (
    id           BIGINT PRIMARY KEY,
    started_at   TEXT NOT NULL,
    finished_at  TEXT,                           -- NULL while running (or if it died)
    outcome      TEXT NOT NULL,                  -- running, completed, incomplete, interrupted
    attempted    BIGINT NOT NULL DEFAULT 0,
    delivered    BIGINT NOT NULL DEFAULT 0,
    retrying     BIGINT NOT NULL DEFAULT 0,
    failed       BIGINT NOT NULL DEFAULT 0
);
CREATE TRIGGER alert_runs_id BEFORE INSERT ON alert_runs
    FOR EACH ROW WHEN (NEW.id IS NULL) EXECUTE FUNCTION meterline_next_id();

CREATE TABLE alert_lock (
    id           BIGINT PRIMARY KEY CHECK (id = 1),
    run_id       BIGINT NOT NULL REFERENCES alert_runs(id),
    host         TEXT NOT NULL,
    pid          BIGINT NOT NULL,
    acquired_at  TEXT NOT NULL,
    heartbeat    BIGINT NOT NULL                 -- Unix seconds, real clock
);
CREATE TRIGGER alert_lock_id BEFORE INSERT ON alert_lock
    FOR EACH ROW WHEN (NEW.id IS NULL) EXECUTE FUNCTION meterline_next_id();

-- 8 and 10: aggregated reports (one customer x meter x period x group), with its events
-- pointing at it; reconciliation runs and rows.
CREATE TABLE stripe_reports (
    id               BIGINT PRIMARY KEY,
    customer_id      TEXT NOT NULL REFERENCES customers(id),
    period_start     TEXT NOT NULL,
    meter_event_name TEXT NOT NULL,
    value            BIGINT NOT NULL CHECK (value >= 0),
    events           BIGINT NOT NULL,
    occurred_at      TEXT NOT NULL,              -- the meter event's timestamp
    identifier       TEXT NOT NULL UNIQUE,
    created_at       TEXT NOT NULL,
    first_sent_at    TEXT,
    reported_at      TEXT,                       -- NULL = not yet reported
    attempts         BIGINT NOT NULL DEFAULT 0,
    error            TEXT,
    failed_at        TEXT,
    expired_at       TEXT,
    in_doubt_at      TEXT,                       -- held: unanswered and past 23 hours
    meter_id         TEXT NOT NULL DEFAULT 'usage',
    dimensions       TEXT,                       -- JSON object of group_by values; NULL = none
    formula          TEXT NOT NULL DEFAULT 'sum' CHECK (formula IN ('sum', 'last'))
);
CREATE TRIGGER stripe_reports_id BEFORE INSERT ON stripe_reports
    FOR EACH ROW WHEN (NEW.id IS NULL) EXECUTE FUNCTION meterline_next_id();
CREATE INDEX stripe_reports_open ON stripe_reports(occurred_at, id)
    WHERE reported_at IS NULL AND expired_at IS NULL;
CREATE INDEX stripe_reports_by_customer ON stripe_reports(customer_id, period_start);

ALTER TABLE usage_events ADD CONSTRAINT usage_events_stripe_report_id_fkey
    FOREIGN KEY (stripe_report_id) REFERENCES stripe_reports(id);
CREATE INDEX usage_events_by_report ON usage_events(stripe_report_id)
    WHERE stripe_report_id IS NOT NULL;

CREATE TABLE reconcile_runs (
    id           BIGINT PRIMARY KEY,
    started_at   TEXT NOT NULL,
    finished_at  TEXT NOT NULL,
    rows         BIGINT NOT NULL,
    drifted      BIGINT NOT NULL,
    pending      BIGINT NOT NULL,
    in_doubt     BIGINT NOT NULL
);
CREATE TRIGGER reconcile_runs_id BEFORE INSERT ON reconcile_runs
    FOR EACH ROW WHEN (NEW.id IS NULL) EXECUTE FUNCTION meterline_next_id();

CREATE TABLE reconcile_rows (
    run_id           BIGINT NOT NULL REFERENCES reconcile_runs(id),
    customer_id      TEXT NOT NULL,
    meter_event_name TEXT NOT NULL,
    period_start     TEXT NOT NULL,
    period_end       TEXT NOT NULL,
    local            BIGINT NOT NULL,
    stripe           BIGINT NOT NULL,
    status           TEXT NOT NULL,              -- ok, drift, pending, in_doubt
    meter_id         TEXT NOT NULL DEFAULT 'usage',  -- 10
    PRIMARY KEY (run_id, customer_id, meter_event_name)
);

-- 10: meters. Every meter but `usage` keeps its total and group_by breakdown in
-- meter_counters (group_key '' = the total); a unique_count meter's values in meter_values.
CREATE TABLE meter_counters (
    customer_id  TEXT NOT NULL REFERENCES customers(id),
    period_start TEXT NOT NULL,
    meter_id     TEXT NOT NULL,
    group_key    TEXT NOT NULL DEFAULT '',       -- '' = total; else the group_by values as JSON
    used         BIGINT NOT NULL CHECK (used >= 0),
    latest_at    TEXT,                           -- latest: the event whose value `used` is
    latest_id    BIGINT,
    PRIMARY KEY (customer_id, period_start, meter_id, group_key)
);

CREATE TABLE meter_values (
    customer_id  TEXT NOT NULL REFERENCES customers(id),
    period_start TEXT NOT NULL,
    meter_id     TEXT NOT NULL,
    group_key    TEXT NOT NULL DEFAULT '',
    value        TEXT NOT NULL,
    PRIMARY KEY (customer_id, period_start, meter_id, group_key, value)
);
