//! The SQLite schema: the files of `migrations/sqlite/` (`db::migrations`), each run once, in
//! a transaction, with the file's number kept in `PRAGMA user_version`; the file is marked as
//! meterline's by `PRAGMA application_id`.

use rusqlite::Connection;

use super::from_sqlite;
use crate::db::migrations::{SCHEMA_VERSION, SQLITE};
use crate::{Error, OpenOptions, Result};

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
    let (app_id, version, tables): (i32, i64, String) = conn
        .query_row(
            "SELECT (SELECT application_id FROM pragma_application_id),
                    (SELECT user_version FROM pragma_user_version),
                    (SELECT COALESCE(group_concat(name, ' '), '') FROM sqlite_schema WHERE type = 'table')",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .map_err(from_sqlite)?;
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

/// Check whose file it is, then create, migrate (switching to WAL first) or only check the
/// schema as `options` say.
pub(crate) fn prepare(conn: &mut Connection, options: OpenOptions) -> Result<()> {
    // The first real read: a non-SQLite file fails here, before anything is written.
    match owner(conn)? {
        Owner::Foreign => return Err(Error::ForeignDatabase),
        Owner::Empty if !options.create => return Err(Error::NoDatabase),
        // A file being created gets its whole schema, whatever `migrate` says.
        Owner::Empty => {}
        Owner::Meterline if !options.migrate => return check_current(conn),
        Owner::Meterline => {}
    }
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .map_err(from_sqlite)?;
    if mode != "wal"
        && mode != "memory"
        && !conn.is_readonly(rusqlite::MAIN_DB).map_err(from_sqlite)?
    {
        conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
            .map_err(from_sqlite)?;
    }
    migrate(conn)
}

/// The schema version the file is at.
pub(crate) fn version(conn: &Connection) -> Result<i64> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(from_sqlite)
}

/// Changes whenever another connection commits.
pub(crate) fn changes(conn: &Connection) -> Result<i64> {
    conn.query_row("PRAGMA data_version", [], |r| r.get(0))
        .map_err(from_sqlite)
}

/// A file at `found` is one this build cannot write to: from a newer meterline.
fn refuse_newer(found: i64) -> Result<()> {
    if found > SCHEMA_VERSION {
        return Err(Error::NewerSchema {
            found,
            known: SCHEMA_VERSION,
        });
    }
    Ok(())
}

/// For read-only use: the file must be at exactly this build's schema version.
fn check_current(conn: &Connection) -> Result<()> {
    let found = version(conn)?;
    refuse_newer(found)?;
    if found < SCHEMA_VERSION {
        return Err(Error::OlderSchema {
            found,
            known: SCHEMA_VERSION,
        });
    }
    Ok(())
}

/// Bring the schema up to date and mark the file as meterline's. The caller has checked
/// [`owner`]: the file is empty or ours.
pub(crate) fn migrate(conn: &mut Connection) -> Result<()> {
    let found = version(conn)?;
    refuse_newer(found)?;
    let app_id: i32 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .map_err(from_sqlite)?;
    if found == SCHEMA_VERSION && app_id == APPLICATION_ID {
        return Ok(());
    }
    apply_migrations(conn).map_err(from_sqlite)
}

/// Every migration past the file's version, and the mark that the file is meterline's, in
/// one write transaction.
fn apply_migrations(conn: &mut Connection) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    // Re-read under the write lock: another process may have migrated meanwhile.
    let found: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for migration in SQLITE.iter().filter(|m| m.version > found) {
        tx.execute_batch(migration.sql)?;
        tx.pragma_update(None, "user_version", migration.version)?;
    }
    // In the same transaction as the tables: no process ever sees one without the other.
    tx.pragma_update(None, "application_id", APPLICATION_ID)?;
    tx.commit()
}

/// A database exactly as an older meterline left it: migrations 1..=`version` only, for
/// tests of upgrades. Not for use on real data.
#[doc(hidden)]
pub fn create_at_version(conn: &Connection, version: i64) -> Result<()> {
    let create = || -> rusqlite::Result<()> {
        for migration in SQLITE.iter().filter(|m| m.version <= version) {
            conn.execute_batch(migration.sql)?;
        }
        conn.pragma_update(None, "user_version", version)
    };
    create().map_err(from_sqlite)
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
        conn.execute_batch(SQLITE[0].sql).unwrap();
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
        for migration in &SQLITE[..3] {
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
    fn a_newer_schema_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        assert!(matches!(migrate(&mut conn), Err(Error::NewerSchema { .. })));
    }
}
