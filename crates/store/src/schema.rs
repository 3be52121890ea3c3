//! Numbered migrations tracked in `PRAGMA user_version`. Each runs once, in a transaction.
//! The table and column names are a documented contract: self-hosters query them directly.

use rusqlite::Connection;

use crate::{Error, Result};

const MIGRATIONS: &[&str] = &[
    // 1: customers, usage events, per-period and per-member counters.
    r#"
    CREATE TABLE customers (
        id                 TEXT PRIMARY KEY,
        name               TEXT NOT NULL,
        plan_id            TEXT NOT NULL,
        stripe_customer_id TEXT,
        billing_anchor     TEXT NOT NULL,            -- YYYY-MM-DD
        created_at         TEXT NOT NULL
    );
    CREATE TABLE usage_events (
        id                     INTEGER PRIMARY KEY,
        customer_id            TEXT NOT NULL REFERENCES customers(id),
        user_id                TEXT,                 -- member of an organisation account
        quantity               INTEGER NOT NULL CHECK (quantity > 0),
        occurred_at            TEXT NOT NULL,        -- RFC3339 UTC, whole seconds
        recorded_at            TEXT NOT NULL,
        period_start           TEXT NOT NULL,        -- joins usage_records
        idempotency_key        TEXT,                 -- unique when set (index below)
        stripe_reported_at     TEXT,                 -- NULL = not yet reported
        stripe_attempts        INTEGER NOT NULL DEFAULT 0,
        stripe_error           TEXT,                 -- last error Stripe gave, if any
        stripe_failed_at       TEXT,                 -- set when Stripe refused it for good
        stripe_expired_at      TEXT                  -- set when past Stripe's 35-day window
    );
    -- Partial: events recorded without a key cost no index write.
    CREATE UNIQUE INDEX usage_events_idempotency_key ON usage_events(idempotency_key)
        WHERE idempotency_key IS NOT NULL;
    -- The unreported events are indexed by migrations 2 (the outbox, oldest first) and
    -- 3 (the backlog per customer); every index here costs a page write per record.
    CREATE INDEX usage_events_by_customer_time ON usage_events(customer_id, occurred_at);
    CREATE TABLE usage_records (
        customer_id      TEXT NOT NULL REFERENCES customers(id),
        period_start     TEXT NOT NULL,
        period_end       TEXT NOT NULL,
        used             INTEGER NOT NULL CHECK (typeof(used) = 'integer' AND used >= 0),
        plan_id          TEXT NOT NULL,
        meter_event_name TEXT NOT NULL,
        PRIMARY KEY (customer_id, period_start)
    ) WITHOUT ROWID;
    CREATE TABLE usage_members (
        customer_id  TEXT NOT NULL REFERENCES customers(id),
        period_start TEXT NOT NULL,
        user_id      TEXT NOT NULL,
        used         INTEGER NOT NULL CHECK (typeof(used) = 'integer'),
        PRIMARY KEY (customer_id, period_start, user_id)
    ) WITHOUT ROWID;
    "#,
    // 2: Stripe sync bookkeeping. `database_id` made meter event identifiers unique across
    // databases (until migration 4); the outbox index serves "unreported, oldest first"; one lock row at most.
    r#"
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
    "#,
    // 3: change marks for live views, and a covering index for the Stripe backlog counts.
    // The dashboard polls these instead of rescanning 100k customers or millions of events.
    r#"
    CREATE TABLE change_counters (
        name  TEXT PRIMARY KEY,                      -- 'customers' or 'stripe'
        value INTEGER NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO change_counters (name, value) VALUES ('customers', 0), ('stripe', 0);
    CREATE TRIGGER customers_inserted AFTER INSERT ON customers BEGIN
        UPDATE change_counters SET value = value + 1 WHERE name = 'customers';
    END;
    CREATE TRIGGER customers_updated AFTER UPDATE ON customers BEGIN
        UPDATE change_counters SET value = value + 1 WHERE name = 'customers';
    END;
    CREATE TRIGGER customers_deleted AFTER DELETE ON customers BEGIN
        UPDATE change_counters SET value = value + 1 WHERE name = 'customers';
    END;
    -- Recording only inserts events (new ids are seen cheaply); syncing updates them. Each
    -- customer's last Stripe change is kept, so a refresh recounts only those customers.
    CREATE TABLE stripe_changes (
        customer_id TEXT PRIMARY KEY,
        seq         INTEGER NOT NULL                 -- the 'stripe' counter at the change
    ) WITHOUT ROWID;
    CREATE INDEX stripe_changes_by_seq ON stripe_changes(seq);
    CREATE TRIGGER usage_events_stripe_changed
        AFTER UPDATE OF stripe_reported_at, stripe_failed_at, stripe_expired_at, stripe_error
        ON usage_events BEGIN
        UPDATE change_counters SET value = value + 1 WHERE name = 'stripe';
        INSERT INTO stripe_changes (customer_id, seq)
            VALUES (NEW.customer_id, (SELECT value FROM change_counters WHERE name = 'stripe'))
            ON CONFLICT (customer_id) DO UPDATE SET seq = excluded.seq;
    END;
    CREATE INDEX usage_events_backlog
        ON usage_events(customer_id, stripe_failed_at, stripe_expired_at)
        WHERE stripe_reported_at IS NULL;
    "#,
    // 4: a random Stripe identifier per event, and each period's plan terms.
    // Identifiers were `ml-<database id>-<event id>`; a restored backup reuses event ids, so
    // Stripe took new usage for old. New events get `ml-<UUIDv7>`; existing rows keep the value
    // they were (or will be) sent with, so nothing already delivered changes.
    // The terms (included, at_limit, overage_rate, price; plan_id and meter_event_name were
    // there) are the plan's as the period was billed: a closed period reads them, the current
    // one follows plans.toml. Rows from before this migration have no terms (at_limit NULL):
    // the first record after the upgrade fills them from plans.toml as it is then, under each
    // row's own plan (`period_terms_pending` marks that work; record.rs), and from then on
    // editing plans.toml no longer changes them. Rows of plans no longer defined stay NULL.
    r#"
    ALTER TABLE usage_events ADD COLUMN stripe_identifier TEXT;
    UPDATE usage_events SET stripe_identifier =
        'ml-' || (SELECT value FROM meterline_meta WHERE key = 'database_id') || '-' || id;
    CREATE UNIQUE INDEX usage_events_stripe_identifier ON usage_events(stripe_identifier);
    ALTER TABLE usage_records ADD COLUMN included INTEGER;      -- NULL: unlimited
    ALTER TABLE usage_records ADD COLUMN at_limit TEXT;         -- 'block' or 'overage'; NULL: no terms yet
    ALTER TABLE usage_records ADD COLUMN overage_rate TEXT;     -- decimal text
    ALTER TABLE usage_records ADD COLUMN price TEXT;            -- decimal text
    INSERT INTO meterline_meta (key, value)
        SELECT 'period_terms_pending', '1' WHERE EXISTS (SELECT 1 FROM usage_records);
    "#,
    // 5: bearer tokens for `meterline serve`. Only the SHA-256 of a token is stored.
    r#"
    CREATE TABLE api_tokens (
        id           INTEGER PRIMARY KEY,
        name         TEXT NOT NULL UNIQUE,
        token_sha256 TEXT NOT NULL UNIQUE,           -- lowercase hex
        created_at   TEXT NOT NULL,                  -- RFC3339 UTC
        last_used_at TEXT,                           -- precise to about a minute
        revoked_at   TEXT                            -- set by `token revoke`; never reused
    );
    "#,
    // 6: archived customers. NULL = active; an archived customer keeps
    // its data and its unreported usage (still synced) but records nothing new.
    r#"
    ALTER TABLE customers ADD COLUMN archived_at TEXT;   -- RFC3339 UTC; NULL = active
    "#,
    // 7: usage alerts. One row per customer x period x level crossed,
    // written by the transaction that crossed it (the unique index makes it exactly one);
    // one delivery row per alert and `[[alerts]]` destination, an outbox like the Stripe sync.
    r#"
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
    "#,
    // 8: aggregated reporting, events in doubt, reconciliation. A report is one meter event
    // standing for the unreported events of one customer, meter and period; it is created,
    // identifier included, with its events pointing at it, before anything is sent.
    // A report's `first_sent_at` (an event's `stripe_first_sent_at` in per_event mode) is
    // when a request for it may first have gone out: past Stripe's 24-hour identifier window
    // an unanswered one is held in doubt (`in_doubt_at`, `stripe_in_doubt_at`).
    r#"
    CREATE TABLE stripe_reports (
        id               INTEGER PRIMARY KEY,
        customer_id      TEXT NOT NULL REFERENCES customers(id),
        period_start     TEXT NOT NULL,
        meter_event_name TEXT NOT NULL,
        value            INTEGER NOT NULL CHECK (value > 0),
        events           INTEGER NOT NULL,
        occurred_at      TEXT NOT NULL,              -- the latest event's: the meter event's timestamp
        identifier       TEXT NOT NULL UNIQUE,
        created_at       TEXT NOT NULL,
        first_sent_at    TEXT,
        reported_at      TEXT,                       -- NULL = not yet reported
        attempts         INTEGER NOT NULL DEFAULT 0,
        error            TEXT,
        failed_at        TEXT,
        expired_at       TEXT,
        in_doubt_at      TEXT                        -- held: unanswered and past 23 hours
    );
    CREATE INDEX stripe_reports_open ON stripe_reports(occurred_at, id)
        WHERE reported_at IS NULL AND expired_at IS NULL;
    CREATE INDEX stripe_reports_by_customer ON stripe_reports(customer_id, period_start);
    ALTER TABLE usage_events ADD COLUMN stripe_report_id INTEGER REFERENCES stripe_reports(id);
    ALTER TABLE usage_events ADD COLUMN stripe_first_sent_at TEXT;  -- per_event mode
    ALTER TABLE usage_events ADD COLUMN stripe_in_doubt_at TEXT;    -- per_event mode
    CREATE INDEX usage_events_by_report ON usage_events(stripe_report_id)
        WHERE stripe_report_id IS NOT NULL;
    CREATE TABLE reconcile_runs (
        id           INTEGER PRIMARY KEY,
        started_at   TEXT NOT NULL,
        finished_at  TEXT NOT NULL,
        rows         INTEGER NOT NULL,
        drifted      INTEGER NOT NULL,
        pending      INTEGER NOT NULL,
        in_doubt     INTEGER NOT NULL
    );
    CREATE TABLE reconcile_rows (
        run_id           INTEGER NOT NULL REFERENCES reconcile_runs(id),
        customer_id      TEXT NOT NULL,
        meter_event_name TEXT NOT NULL,
        period_start     TEXT NOT NULL,
        period_end       TEXT NOT NULL,
        local            INTEGER NOT NULL,
        stripe           INTEGER NOT NULL,
        status           TEXT NOT NULL,              -- ok, drift, pending, in_doubt
        PRIMARY KEY (run_id, customer_id, meter_event_name)
    ) WITHOUT ROWID;
    "#,
    // 9: a namespace per idempotency key source (native, stripe, ce, lago), so that a key
    // sent to one route never takes the identity of another route's event. A key kept from
    // before that could have been made by a drop-in route is `legacy`: either side may have
    // sent it, so both still find it and a resend gets the answer it got before. Every other
    // old key can only have been a native one (the drop-in routes' keys always have those
    // prefixes).
    r#"
    ALTER TABLE usage_events ADD COLUMN idempotency_source TEXT;
    UPDATE usage_events SET idempotency_source = CASE
            WHEN idempotency_key GLOB 'stripe:*' OR idempotency_key GLOB 'stripe-sha256:*'
              OR idempotency_key GLOB 'ce:*' OR idempotency_key GLOB 'ce-sha256:*'
              OR idempotency_key GLOB 'lago:*' OR idempotency_key GLOB 'lago-sha256:*'
            THEN 'legacy' ELSE 'native' END
        WHERE idempotency_key IS NOT NULL;
    DROP INDEX usage_events_idempotency_key;
    CREATE UNIQUE INDEX usage_events_idempotency_key
        ON usage_events(idempotency_key, idempotency_source) WHERE idempotency_key IS NOT NULL;
    "#,
    // 10: meters. Each event counts on one meter (`usage`, the sum of quantity, when
    // plans.toml has no [[meters]]) with its properties. The `usage` meter's total stays in
    // usage_records.used; every other meter's total and its group_by breakdown live in
    // meter_counters (group_key '' = the meter's total), the distinct values a unique_count
    // meter has seen in meter_values. Caps are decided on these rows inside the record
    // transaction, as for usage_records.
    r#"
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
    "#,
];

/// The schema version this build creates and understands.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// `PRAGMA application_id` of every meterline database ("mtrl"): how meterline tells its own
/// files from another program's SQLite file, which it must never touch.
pub const APPLICATION_ID: i32 = 0x6d74_726c;

/// Whose file a connection has open.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Owner {
    /// A new or empty file: no tables, no version.
    Empty,
    /// A meterline database (older ones, from before the application id, by their tables).
    Meterline,
    /// Some other program's database.
    Foreign,
}

pub(crate) fn owner(conn: &Connection) -> Result<Owner> {
    // One statement, so one consistent snapshot while another process may be creating it.
    let (app_id, version, tables): (i32, i64, String) = conn.query_row(
        "SELECT (SELECT application_id FROM pragma_application_id),
                (SELECT user_version FROM pragma_user_version),
                (SELECT COALESCE(group_concat(name, ' '), '') FROM sqlite_schema WHERE type = 'table')",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    if app_id == APPLICATION_ID {
        return Ok(Owner::Meterline);
    }
    if app_id != 0 {
        return Ok(Owner::Foreign);
    }
    if tables.is_empty() && version == 0 {
        return Ok(Owner::Empty);
    }
    let ours = ["customers", "usage_events", "usage_records"]
        .iter()
        .all(|t| tables.split(' ').any(|name| name == *t));
    Ok(if ours && version >= 1 {
        Owner::Meterline
    } else {
        Owner::Foreign
    })
}

/// For read-only use: the file must be at exactly this build's schema version.
pub(crate) fn check_current(conn: &Connection) -> Result<()> {
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    match found.cmp(&SCHEMA_VERSION) {
        std::cmp::Ordering::Less => Err(Error::OlderSchema {
            found,
            known: SCHEMA_VERSION,
        }),
        std::cmp::Ordering::Greater => Err(Error::NewerSchema {
            found,
            known: SCHEMA_VERSION,
        }),
        std::cmp::Ordering::Equal => Ok(()),
    }
}

/// Bring the schema up to date and mark the file as meterline's. The caller has checked
/// [`owner`]: the file is empty or ours.
pub(crate) fn migrate(conn: &mut Connection) -> Result<()> {
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let app_id: i32 = conn.query_row("PRAGMA application_id", [], |r| r.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(Error::NewerSchema {
            found,
            known: SCHEMA_VERSION,
        });
    }
    if found == SCHEMA_VERSION && app_id == APPLICATION_ID {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    // Re-read under the write lock: another process may have migrated meanwhile.
    let found: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(found.max(0) as usize) {
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", index as i64 + 1)?;
    }
    // In the same transaction as the tables: no process ever sees one without the other.
    tx.pragma_update(None, "application_id", APPLICATION_ID)?;
    tx.commit()?;
    Ok(())
}

/// A database exactly as an older meterline left it: migrations 1..=`version` only, for
/// tests of upgrades. Not for use on real data.
#[doc(hidden)]
pub fn create_at_version(conn: &Connection, version: i64) -> Result<()> {
    for sql in MIGRATIONS.iter().take(version.max(0) as usize) {
        conn.execute_batch(sql)?;
    }
    conn.pragma_update(None, "user_version", version)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_idempotent_and_set_the_version() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        migrate(&mut conn).unwrap();
        let v: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
    }

    fn database_id(conn: &Connection) -> String {
        conn.query_row(
            "SELECT value FROM meterline_meta WHERE key = 'database_id'",
            [],
            |r| r.get(0),
        )
        .unwrap()
    }

    #[test]
    fn a_version_1_database_upgrades_with_its_data_and_a_random_id() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute_batch(
            "INSERT INTO customers VALUES ('acme', 'Acme', 'free', NULL, '2026-01-01', '2026-01-01T00:00:00Z');
             INSERT INTO usage_events (customer_id, quantity, occurred_at, recorded_at, period_start)
             VALUES ('acme', 5, '2026-01-02T00:00:00Z', '2026-01-02T00:00:00Z', '2026-01-01T00:00:00Z');",
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let id = database_id(&conn);
        assert!(
            id.len() == 16 && id.chars().all(|c| c.is_ascii_hexdigit()),
            "{id}"
        );
        let events: i64 = conn
            .query_row("SELECT COUNT(*) FROM usage_events INDEXED BY usage_events_outbox WHERE stripe_reported_at IS NULL AND stripe_expired_at IS NULL", [], |r| r.get(0))
            .unwrap();
        assert_eq!(events, 1);
        // Another database gets another id.
        let mut other = Connection::open_in_memory().unwrap();
        migrate(&mut other).unwrap();
        let other_id = database_id(&other);
        assert_ne!(id, other_id);
    }

    #[test]
    fn version_3_events_keep_their_identifier() {
        let mut conn = Connection::open_in_memory().unwrap();
        for sql in &MIGRATIONS[..3] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 3).unwrap();
        conn.execute_batch(
            "INSERT INTO customers VALUES ('acme', 'Acme', 'free', NULL, '2026-01-01', '2026-01-01T00:00:00Z');
             INSERT INTO usage_events (id, customer_id, quantity, occurred_at, recorded_at, period_start)
             VALUES (7, 'acme', 5, '2026-01-02T00:00:00Z', '2026-01-02T00:00:00Z', '2026-01-01T00:00:00Z');
             INSERT INTO usage_records VALUES ('acme', '2026-01-01T00:00:00Z', '2026-02-01T00:00:00Z', 5, 'free', 'meterline_usage');",
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let identifier: String = conn
            .query_row(
                "SELECT stripe_identifier FROM usage_events WHERE id = 7",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(identifier, format!("ml-{}-7", database_id(&conn)));
        // The counter row has no terms yet; the first record fills them (record.rs).
        let pending: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM meterline_meta WHERE key = 'period_terms_pending'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(pending, 1);
    }

    #[test]
    fn version_9_reports_keep_their_rows_and_events_and_may_carry_zero() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("PRAGMA foreign_keys = ON").unwrap();
        create_at_version(&conn, 9).unwrap();
        conn.execute_batch(
            "INSERT INTO customers VALUES ('acme', 'Acme', 'free', 'cus_1', '2026-01-01', '2026-01-01T00:00:00Z', NULL);
             INSERT INTO stripe_reports (id, customer_id, period_start, meter_event_name, value,
                 events, occurred_at, identifier, created_at, reported_at)
             VALUES (4, 'acme', '2026-01-01T00:00:00Z', 'meterline_usage', 5, 1,
                 '2026-01-02T00:00:00Z', 'ml-r4', '2026-01-02T00:00:00Z', '2026-01-02T00:01:00Z');
             INSERT INTO usage_events (id, customer_id, quantity, occurred_at, recorded_at,
                 period_start, stripe_identifier, stripe_report_id)
             VALUES (7, 'acme', 5, '2026-01-02T00:00:00Z', '2026-01-02T00:00:00Z',
                 '2026-01-01T00:00:00Z', 'ml-e7', 4);",
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let (identifier, meter, formula, dimensions): (String, String, String, Option<String>) =
            conn.query_row(
                "SELECT identifier, meter_id, formula, dimensions FROM stripe_reports WHERE id = 4",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .unwrap();
        assert_eq!(
            (
                identifier.as_str(),
                meter.as_str(),
                formula.as_str(),
                dimensions
            ),
            ("ml-r4", "usage", "sum", None)
        );
        let report: i64 = conn
            .query_row(
                "SELECT stripe_report_id FROM usage_events WHERE id = 7",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(report, 4);
        // The foreign key still holds, and a `last` report may carry 0.
        assert!(
            conn.execute(
                "UPDATE usage_events SET stripe_report_id = 99 WHERE id = 7",
                []
            )
            .is_err()
        );
        conn.execute(
            "INSERT INTO stripe_reports (customer_id, period_start, meter_event_name, value,
                 events, occurred_at, identifier, created_at, meter_id, formula)
             VALUES ('acme', '2026-01-01T00:00:00Z', 'seats', 0, 1, '2026-01-02T00:00:00Z',
                 'ml-r5', '2026-01-02T00:00:00Z', 'seats', 'last')",
            [],
        )
        .unwrap();
        let indexes: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_schema WHERE type = 'index'
                 AND name IN ('stripe_reports_open', 'stripe_reports_by_customer')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(indexes, 2);
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        assert!(matches!(migrate(&mut conn), Err(Error::NewerSchema { .. })));
    }
}

// TEMP until the pgschema branch lands.
pub(crate) struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}
pub(crate) fn checksum(sql: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(sql.as_bytes()))
}
