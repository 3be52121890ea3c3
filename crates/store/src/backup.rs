//! `meterline backup`: a consistent copy of a live database, verified before it is reported.

use std::path::Path;

use rusqlite::Connection;
use rusqlite::backup::Backup;

use super::Store;
use crate::db::sqlite::from_sqlite;
use crate::{Error, Result};

/// What `backup_to` wrote and checked.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BackupReport {
    pub bytes: u64,
    pub customers: i64,
    pub events: i64,
    pub schema_version: i64,
}

/// Online backup; serves `meterline backup`.
impl Store {
    /// Copy the database to `dest` (which must not exist) with SQLite's online backup API.
    ///
    /// The copy is made in one step under one read transaction, so it is a consistent
    /// snapshot while other processes keep recording (WAL readers never block writers). It is
    /// written next to `dest`, checked (`integrity_check`, every counter equal to the sum of
    /// its events, every credit balance to its ledger's) and only then renamed into place: a file at `dest` is always a good backup.
    /// On PostgreSQL it refuses ([`Error::InvalidInput`], exit 2) and names `pg_dump`: the
    /// server's own tool makes a consistent dump of a live database, and restores with it.
    pub fn backup_to(&self, dest: &Path) -> Result<BackupReport> {
        let Some(conn) = self.conn.sqlite_only() else {
            return Err(Error::InvalidInput(
                "on PostgreSQL, back up with the server's own tool: \
                 `pg_dump --format=custom --file=meterline.dump DATABASE_URL` \
                 (restore with pg_restore); meterline backup copies SQLite files only"
                    .into(),
            ));
        };
        if dest.exists() {
            return Err(Error::InvalidInput(format!(
                "{} already exists; meterline never overwrites a backup, choose another path",
                dest.display()
            )));
        }
        let dir = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let staging = tempfile::Builder::new()
            .prefix(".meterline-backup-")
            .tempfile_in(dir)
            .map_err(|e| Error::CannotOpen(format!("{}: {e}", dir.display())))?;
        {
            let mut copy = Connection::open(staging.path()).map_err(from_sqlite)?;
            // -1: every page in one step, so the whole copy reads one snapshot.
            Backup::new(conn, &mut copy)
                .and_then(|b| b.step(-1))
                .map_err(from_sqlite)?;
            // A backup is one self-contained file: no -wal or -shm beside it.
            copy.query_row("PRAGMA journal_mode = DELETE", [], |_| Ok(()))
                .map_err(from_sqlite)?;
        }
        let report = verify(staging.path())?;
        staging
            .persist_noclobber(dest)
            .map_err(|e| Error::CannotOpen(format!("{}: {}", dest.display(), e.error)))?;
        Ok(report)
    }
}

/// Meter totals that differ from their events: a sum, count or unique_count total is the sum
/// of what each event added (a distinct value adds 1, a seen one 0), a max the largest
/// value, a latest the value of the event it names. Rows counted before migration 12 name
/// no aggregation and are checked once a write names it.
const COUNTERS_OFF_THEIR_EVENTS: &str = "
    SELECT COUNT(*) FROM meter_counters m
    WHERE m.group_key = '' AND m.aggregation IS NOT NULL
      AND m.used != CASE m.aggregation
          WHEN 'latest' THEN COALESCE((SELECT COALESCE(l.amount, l.quantity)
                                       FROM usage_events l WHERE l.id = m.latest_id), 0)
          ELSE (SELECT CASE m.aggregation
                           WHEN 'max' THEN COALESCE(MAX(COALESCE(e.amount, e.quantity)), 0)
                           ELSE COALESCE(SUM(COALESCE(e.amount, e.quantity)), 0) END
                FROM usage_events e
                WHERE e.customer_id = m.customer_id AND e.period_start = m.period_start
                  AND e.meter_id = m.meter_id)
          END";

/// Meter totals whose units past `included` differ from their groups': each event adds its
/// units to both, so a meter with groups has in its total exactly what they have together.
const MONEY_OFF_ITS_GROUPS: &str = "
    SELECT COUNT(*) FROM meter_counters m
    WHERE m.group_key = ''
      AND EXISTS (SELECT 1 FROM meter_counters g
                  WHERE g.customer_id = m.customer_id AND g.period_start = m.period_start
                    AND g.meter_id = m.meter_id AND g.group_key <> '')
      AND m.overage_units != (SELECT SUM(g.overage_units) FROM meter_counters g
                              WHERE g.customer_id = m.customer_id
                                AND g.period_start = m.period_start
                                AND g.meter_id = m.meter_id AND g.group_key <> '')";

/// Check a database copy: SQLite's own integrity check, every meter's total equal to what
/// its events make by the aggregation it counts by and its money to its groups', every
/// event under a period row, and every credit balance equal to the sum of its ledger.
pub fn verify(path: &Path) -> Result<BackupReport> {
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map(crate::db::Connection::Sqlite)
        .map_err(from_sqlite)?;
    let integrity: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    if integrity != "ok" {
        return Err(Error::Corrupt(format!(
            "the copy fails integrity_check: {integrity}"
        )));
    }
    let mismatched = conn.query_row(COUNTERS_OFF_THEIR_EVENTS, [], |r| r.get::<_, i64>(0))?
        + conn.query_row(MONEY_OFF_ITS_GROUPS, [], |r| r.get::<_, i64>(0))?;
    let uncounted: i64 = conn.query_row(
        "SELECT COUNT(*) FROM usage_events e WHERE NOT EXISTS
             (SELECT 1 FROM usage_records r
              WHERE r.customer_id = e.customer_id AND r.period_start = e.period_start)",
        [],
        |r| r.get(0),
    )?;
    if mismatched + uncounted > 0 {
        return Err(Error::Corrupt(format!(
            "the copy's counters disagree with its events ({mismatched} counters differ, \
             {uncounted} events have no counter)"
        )));
    }
    let ledger = crate::credits::check_ledger(&conn)?;
    if let Some(first) = ledger.mismatches.first() {
        return Err(Error::Corrupt(format!(
            "the copy's credit ledger does not add up ({} problems; the first: {first})",
            ledger.mismatches.len()
        )));
    }
    let count = |rows: &str| -> Result<i64> {
        conn.query_row(&format!("SELECT COUNT(*) FROM {rows}"), [], |r| r.get(0))
    };
    Ok(BackupReport {
        bytes: std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
        customers: count("customers")?,
        // An event of a type is a row per meter it fed: counted once.
        events: count("usage_events WHERE event_of IS NULL")?,
        schema_version: conn.schema_version()?,
    })
}
