//! Numbered migrations (`migrations/sqlite/NNNN_name.sql`) tracked in `PRAGMA user_version`.
//! Each runs once, in a transaction.
//! The table and column names are a documented contract: self-hosters query them directly.

use rusqlite::Connection;

use crate::{Error, Result};

/// One numbered migration: `migrations/sqlite/NNNN_<name>.sql`, run once, in order.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Migration {
    /// The `user_version` the file is at once this migration has run: 1, 2, 3, ...
    pub version: i64,
    /// The file name's part after the number.
    #[cfg_attr(
        not(test),
        allow(dead_code, reason = "for the PostgreSQL runner's bookkeeping")
    )]
    pub name: &'static str,
    /// The file's text, run as one batch (a migration's comment heads its file).
    pub sql: &'static str,
}

/// The SQLite migrations, in order. A released migration's file is never edited: a change
/// to the schema is a new migration at the end.
pub(crate) const SQLITE_MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "customers_and_usage",
        sql: include_str!("../migrations/sqlite/0001_customers_and_usage.sql"),
    },
    Migration {
        version: 2,
        name: "stripe_sync",
        sql: include_str!("../migrations/sqlite/0002_stripe_sync.sql"),
    },
    Migration {
        version: 3,
        name: "change_marks",
        sql: include_str!("../migrations/sqlite/0003_change_marks.sql"),
    },
    Migration {
        version: 4,
        name: "stripe_identifiers_and_period_terms",
        sql: include_str!("../migrations/sqlite/0004_stripe_identifiers_and_period_terms.sql"),
    },
    Migration {
        version: 5,
        name: "api_tokens",
        sql: include_str!("../migrations/sqlite/0005_api_tokens.sql"),
    },
    Migration {
        version: 6,
        name: "archived_customers",
        sql: include_str!("../migrations/sqlite/0006_archived_customers.sql"),
    },
    Migration {
        version: 7,
        name: "alerts",
        sql: include_str!("../migrations/sqlite/0007_alerts.sql"),
    },
    Migration {
        version: 8,
        name: "stripe_reports_and_reconcile",
        sql: include_str!("../migrations/sqlite/0008_stripe_reports_and_reconcile.sql"),
    },
    Migration {
        version: 9,
        name: "idempotency_sources",
        sql: include_str!("../migrations/sqlite/0009_idempotency_sources.sql"),
    },
    Migration {
        version: 10,
        name: "meters",
        sql: include_str!("../migrations/sqlite/0010_meters.sql"),
    },
    Migration {
        version: 11,
        name: "meter_terms",
        sql: include_str!("../migrations/sqlite/0011_meter_terms.sql"),
    },
    Migration {
        version: 12,
        name: "one_meter_model",
        sql: include_str!("../migrations/sqlite/0012_one_meter_model.sql"),
    },
];

/// The SHA-256 of a migration's text, lowercase hex: how a runner that records what it ran
/// can tell a migration file edited after it was applied.
#[cfg_attr(
    not(test),
    allow(dead_code, reason = "for the PostgreSQL runner's bookkeeping")
)]
pub(crate) fn checksum(sql: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(sql.as_bytes()))
}

/// Fail unless each of `migrations` still has its `released` checksum, and each is pinned:
/// a released migration is never edited (a PostgreSQL database refuses a changed one).
#[cfg(test)]
pub(crate) fn assert_released(migrations: &[Migration], released: &[&str]) {
    assert_eq!(migrations.len(), released.len(), "pin the new migration");
    for (migration, sum) in migrations.iter().zip(released) {
        assert_eq!(
            checksum(migration.sql),
            *sum,
            "migration {} was edited",
            migration.version
        );
    }
}

/// The schema version this build creates and understands.
pub const SCHEMA_VERSION: i64 = SQLITE_MIGRATIONS.len() as i64;

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
    for migration in SQLITE_MIGRATIONS.iter().skip(found.max(0) as usize) {
        tx.execute_batch(migration.sql)?;
        tx.pragma_update(None, "user_version", migration.version)?;
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
    for migration in SQLITE_MIGRATIONS.iter().take(version.max(0) as usize) {
        conn.execute_batch(migration.sql)?;
    }
    conn.pragma_update(None, "user_version", version)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A released migration is never edited: each file's checksum is pinned here, and a
    /// PostgreSQL database refuses a migration whose checksum changed after it ran.
    #[test]
    fn released_migrations_keep_their_checksums() {
        const RELEASED: [&str; 12] = [
            "0e5426aa14774087a37d3aa067d3eb178c9957d525e6c9711b4c80c5366af260",
            "16e27ae99f06ff8605076b1e8b00e3e8f8d41938a804aaef83d0ae4ab564ab32",
            "88f11d75d255630c48a4113ddb28927c25e581de73db1588870b2355726f4b80",
            "d300dc23b630f8c22c15a100a5ec6ce91eef166efb9dc39e03df5a3df4394742",
            "baee8941e34a10f7e47ebd2c4fe7c287b599185bed0c96e336b9738c2b264d06",
            "7fc182f2d8c5455ae2c8e67e7a2284e520e2ac614809bbb83ea4bba54e0fc890",
            "baa16a0d4bff385c3f907b9624222cd87eac8b8020ba5c9c033085e5a4300c18",
            "850b0f7dc7dfc4d32f032aac23488e7c052e17d7795f43a15b4d7ea93decb69c",
            "78541b5b1c3fe8bacf104539a1b56946b230e5a1693db780fc3a6ae79640c11f",
            "766041ced0bb846390b07c42b9b225783d67f9b98b4317f67f5c96040bdd5d37",
            "1f14b4cf0c9d45bec71555c73aba5f01e6ffacf8299e2c60f80da62c0fb38004",
            "3907b9106c24cf7e36903c968dfb5d9e0db4281683190a31cdc9e955aa45c37d",
        ];
        assert_released(SQLITE_MIGRATIONS, &RELEASED);
    }

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
        conn.execute_batch(SQLITE_MIGRATIONS[0].sql).unwrap();
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
        for migration in &SQLITE_MIGRATIONS[..3] {
            conn.execute_batch(migration.sql).unwrap();
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
    fn migrations_are_numbered_in_order_with_unique_names() {
        let versions: Vec<i64> = SQLITE_MIGRATIONS.iter().map(|m| m.version).collect();
        let expected: Vec<i64> = (1..=SQLITE_MIGRATIONS.len() as i64).collect();
        assert_eq!(versions, expected);
        assert_eq!(SCHEMA_VERSION, SQLITE_MIGRATIONS.len() as i64);
        let mut names = std::collections::HashSet::new();
        for m in SQLITE_MIGRATIONS {
            assert!(
                !m.name.is_empty()
                    && m.name
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{}",
                m.name
            );
            assert!(names.insert(m.name), "two migrations named {}", m.name);
            // Each file starts with its comment, `-- N: ...`.
            assert!(
                m.sql.starts_with(&format!("-- {}: ", m.version)),
                "{}",
                m.name
            );
        }
    }

    #[test]
    fn a_checksum_is_the_sha256_of_the_text() {
        assert_eq!(
            checksum(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let sums: std::collections::HashSet<String> =
            SQLITE_MIGRATIONS.iter().map(|m| checksum(m.sql)).collect();
        assert_eq!(sums.len(), SQLITE_MIGRATIONS.len());
        assert!(sums.iter().all(|s| {
            s.len() == 64
                && s.chars()
                    .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
        }));
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        assert!(matches!(migrate(&mut conn), Err(Error::NewerSchema { .. })));
    }
}
