//! The SQLite store: the only module that talks to rusqlite.

mod customers;
mod dashboard;
mod outbox;
mod queries;
pub mod record;
mod schema;
pub mod tokens;

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::Result;

pub use customers::{Customer, NewCustomer};
pub use dashboard::{
    Backlog, BacklogChange, ChangeMarks, CustomerDetail, Dashboard, DashboardRow, EventRow,
    Projection, Refresh, UsageChange, project,
};
pub use outbox::{
    EventOutcome, LOCK_STALE_AFTER_SECS, LockHolder, OutboxCursor, OutboxEvent, OutboxGroup,
    OutboxWindow, STRIPE_MAX_AGE_DAYS, STRIPE_MAX_FUTURE_SECS, StripeCounts, StripeState, SyncRun,
    stripe_window,
};
pub use queries::{HistoryRow, Member, MembersSummary, StatusRow};
pub use record::{RecordOutcome, RecordRequest};
pub use schema::SCHEMA_VERSION;
pub use tokens::{ActiveToken, TokenInfo, token_hash};

/// How long a writer waits for another writer's lock before giving up.
/// `METERLINE_BUSY_TIMEOUT_MS` overrides it (tests use a short one).
fn busy_timeout() -> Duration {
    std::env::var("METERLINE_BUSY_TIMEOUT_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_millis)
        .unwrap_or(Duration::from_secs(5))
}

pub struct Store {
    conn: Connection,
}

impl Store {
    /// Open (or create) the database at `path` and bring its schema up to date.
    /// SQLite URI filenames work too, e.g. `file:meterline.db?mode=ro` for read-only reports.
    pub fn open(path: &Path) -> Result<Store> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        Self::setup(Connection::open_with_flags(path, flags)?)
    }

    /// A private in-memory database, for tests and what-ifs.
    pub fn open_in_memory() -> Result<Store> {
        Self::setup(Connection::open_in_memory()?)
    }

    fn setup(conn: Connection) -> Result<Store> {
        conn.busy_timeout(busy_timeout())?;
        // Reading the journal mode is the first real read: a non-SQLite file fails here.
        let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
        if mode != "wal" && mode != "memory" && !conn.is_readonly(rusqlite::MAIN_DB)? {
            conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
        }
        // WAL + NORMAL survives a killed process without losing a committed transaction;
        // only a power loss can lose the last few.
        conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")?;
        let mut store = Store { conn };
        schema::migrate(&mut store.conn)?;
        Ok(store)
    }

    /// The schema version the file is at (`PRAGMA user_version`).
    pub fn schema_version(&self) -> Result<i64> {
        Ok(self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }

    /// Changes whenever another connection commits; cheap enough to poll for live views.
    pub fn data_version(&self) -> Result<i64> {
        Ok(self
            .conn
            .query_row("PRAGMA data_version", [], |r| r.get(0))?)
    }
}
