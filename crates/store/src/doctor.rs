//! What `meterline doctor` asks the database: is the file sound, at which schema version, in
//! which journal mode, and does a sync hold the lock.

use serde::Serialize;

use super::Store;
use crate::Result;
use crate::lock::LockState;

/// What `doctor` reports about the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Health {
    /// `PRAGMA quick_check`: "ok", or SQLite's first complaint (PostgreSQL: "ok" once the
    /// server answered; it checks its own pages).
    pub quick_check: String,
    /// A file's journal mode (SQLite's `wal`); `None` on a server, which keeps its own.
    pub journal_mode: Option<String>,
    /// The engine and, on PostgreSQL, the server's version: `PostgreSQL 15.4`.
    pub engine: String,
    pub schema_version: i64,
    /// The sync lock, if a sync holds it.
    pub sync_lock: Option<LockState>,
}

/// The file's health; serves `meterline doctor`.
impl Store {
    /// Check the file: `quick_check`, journal mode, schema version, the sync lock.
    pub fn health(&self) -> Result<Health> {
        let check = self.conn.engine_check()?;
        let sync_lock = self.sync_lock_state()?;
        Ok(Health {
            quick_check: check.quick_check,
            journal_mode: check.journal_mode,
            engine: check.engine,
            schema_version: self.schema_version()?,
            sync_lock,
        })
    }
}
