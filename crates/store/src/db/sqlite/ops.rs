//! SQLite's side of what [`Connection`](crate::db::Connection) does its own way on each
//! engine (its PostgreSQL side is `postgres/ops.rs`).

use super::{bind, from_sqlite};
use crate::Result;
use crate::db::{EngineCheck, Param, SessionLock};

/// SQLite's limit on a statement's parameters (`SQLITE_MAX_VARIABLE_NUMBER` since 3.32).
const MAX_PARAMS: usize = 32_766;
/// Rows per INSERT at most: SQLite keeps a statement journal for every INSERT into a table
/// with unique indexes, so one statement per few hundred rows instead of one per row is most
/// of a record batch's speed.
const ROWS_PER_INSERT: usize = 250;

/// `values` (rows of `columns.len()` values, one after another) in multi-row INSERTs.
pub(crate) fn insert_rows(
    conn: &rusqlite::Connection,
    table: &str,
    columns: &[&str],
    values: &[&dyn Param],
) -> Result<()> {
    let width = columns.len().max(1);
    let per_insert = (MAX_PARAMS / width).min(ROWS_PER_INSERT);
    let row = format!("({})", vec!["?"; width].join(","));
    let mut rest = values;
    for count in crate::db::list_sizes(values.len() / width, per_insert) {
        let (chunk, after) = rest.split_at(count * width);
        rest = after;
        let rows = vec![row.as_str(); count].join(",");
        conn.prepare_cached(&format!(
            "INSERT INTO {table} ({}) VALUES {rows}",
            columns.join(", ")
        ))
        .and_then(|mut insert| insert.execute(bind(chunk)))
        .map_err(from_sqlite)?;
    }
    Ok(())
}

/// A file has no sessions another host could see end: the lock row and its heartbeat decide.
pub(crate) fn try_session_lock(_name: &str) -> SessionLock {
    SessionLock::NotKept
}

/// Nothing was taken.
pub(crate) fn release_session_lock(_name: &str) -> Result<()> {
    Ok(())
}

/// SQLite's own check of the file's pages, its journal mode and its version.
pub(crate) fn check(conn: &rusqlite::Connection) -> Result<EngineCheck> {
    let pragma = |name: &str| {
        conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))
            .map_err(from_sqlite)
    };
    Ok(EngineCheck {
        quick_check: pragma("quick_check(1)")?,
        journal_mode: Some(pragma("journal_mode")?),
        engine: format!("SQLite {}", rusqlite::version()),
    })
}

/// While it lives, SQLite sorts in a temp file: the connection keeps its temp store in memory
/// for the record path's statement journals, where the sort of every event (an export) would
/// take memory in proportion (215 MB for a million).
pub(crate) struct TempStoreOnFile<'c>(&'c rusqlite::Connection);

impl<'c> TempStoreOnFile<'c> {
    pub(crate) fn new(conn: &'c rusqlite::Connection) -> Result<TempStoreOnFile<'c>> {
        conn.execute_batch("PRAGMA temp_store = FILE")
            .map_err(from_sqlite)?;
        Ok(TempStoreOnFile(conn))
    }
}

impl Drop for TempStoreOnFile<'_> {
    fn drop(&mut self) {
        // The record path's setting back (`Store::open`); nothing to do if the connection broke.
        let _ = self.0.execute_batch("PRAGMA temp_store = MEMORY");
    }
}
