//! meterline's store: every table of the one SQLite file, and the only crate that speaks SQL.
//! Exact counters per customer × period, hard caps decided inside the record transaction, the
//! Stripe outbox, alerts, tokens; built on the core's billing rules and plans.
//!
//! [`Store`] is one connection. Its methods come in one `impl` block per concern, each in its
//! own file and saying whom it serves:
//!
//! | concern | file | serves |
//! | --- | --- | --- |
//! | opening the file | `lib.rs` | every caller |
//! | the record path | `record.rs` | `record`, serve's writer, the demo, embedders |
//! | customers | `customers.rs` | `customer`, serve's drop-in routes, reconcile, doctor |
//! | reads of the counters | `queries.rs` | `check`, `status`, `history`, `members`, serve's reads |
//! | the status snapshot | `status.rs` | `status --json`, `GET /v1/status` |
//! | the dashboard | `dashboard.rs` | the tui |
//! | the sync outbox | `outbox.rs` | the Stripe sync, doctor |
//! | aggregated reports | `reports.rs` | the Stripe sync and reconcile, `status` |
//! | meters in Stripe | `stripe_meters.rs` (no methods: the routes the two above read) | the Stripe sync, reconcile, doctor |
//! | reconcile | `reconcile.rs` | reconcile, the tui, doctor |
//! | sync runs | `sync_runs.rs` | the Stripe sync, the tui, `status` |
//! | alerts: crossings | `alerts/crossings.rs` | `status` (the record path writes them) |
//! | alerts: delivery outbox | `alerts/outbox.rs` | alert delivery, the tui |
//! | alerts: delivery runs | `alerts/runs.rs` | alert delivery |
//! | API tokens | `tokens.rs` | `token`, serve's auth |
//! | backup | `backup.rs` | `backup` |
//! | health | `health.rs` | `doctor` |
//! | export | `export.rs` | `export` |
//! | demo writes | `demo_settle.rs` | `demo::fill` |
//!
//! Beside them, without `Store` methods of their own: `schema.rs` (migrations), `lock.rs` (the
//! one run lock, used by the sync and the alert delivery), `counters.rs` (a period's counter row
//! and a batch's running counters), `new_events.rs` (a batch's event inserts).
#![warn(unreachable_pub)]
#![deny(clippy::unwrap_used, clippy::expect_used)]

// The core's modules under their old names, so paths read as they did in one crate.
use meterline_core::{Config, Error, Result, billing, config, sanitize};
pub use meterline_core::{IdempotencyKey, KeySource, RecordOutcome, RecordRequest};

mod alerts;
mod backup;
mod counters;
mod customers;
mod dashboard;
pub mod demo;
mod demo_settle;
mod export;
mod health;
mod lock;
mod meter_reads;
mod meters;
mod new_events;
mod outbox;
mod queries;
mod reconcile;
pub mod record;
mod reports;
mod schema;
mod status;
mod stripe_meters;
mod sync_runs;
mod tokens;

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};

pub use crate::billing::{
    Projection, STRIPE_MAX_AGE_DAYS, STRIPE_MAX_FUTURE_SECS, project, stripe_window,
};
pub use alerts::{Alert, AlertCounts, AlertRun, DueDelivery, RecentAlert};
pub use backup::{BackupReport, verify as verify_backup};
pub use customers::{Customer, MAX_KEY_LEN, NewCustomer};
pub use dashboard::{
    Backlog, BacklogChange, ChangeMarks, CustomerDetail, Dashboard, DashboardRow, EventRow,
    GroupRow, MeterDetail, MeterFigure, Refresh, UsageChange, has_meters,
};
pub use export::{Cell, ExportFilter, ExportKind};
pub use health::Health;
pub use lock::{LOCK_STALE_AFTER_SECS, LockHolder, LockState};
pub use outbox::{
    EventOutcome, OutboxCursor, OutboxEvent, OutboxGroup, OutboxWindow, StripeCounts, StripeState,
};
pub use queries::{HistoryRow, Member, MembersSummary, StatusRow};
pub use reconcile::{ReconcileRow, ReconcileRun, Reported, StripeChecks};
pub use reports::{HeldReport, InDoubt, ReportPlan};
pub use schema::{APPLICATION_ID, SCHEMA_VERSION, create_at_version};
pub use status::{StatusEntry, StripeStanding};
pub use stripe_meters::{Formula, RESERVED_PAYLOAD_KEYS, Route, StripeMeters};
pub use sync_runs::SyncRun;
pub use tokens::{ActiveToken, TokenInfo, token_hash};

/// How a [`Store`] is opened. `Store::open` uses the default: create and upgrade as needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenOptions {
    /// How long to wait for another writer's lock before giving up with [`Error::Locked`].
    pub busy_timeout: Duration,
    /// Create the database (with its whole schema) if the file is missing or empty.
    pub create: bool,
    /// Bring an older schema up to date. Without it an older file is refused
    /// ([`Error::OlderSchema`]) and nothing is written: what read commands use.
    pub migrate: bool,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            busy_timeout: Duration::from_secs(5),
            create: true,
            migrate: true,
        }
    }
}

impl OpenOptions {
    /// The database must exist and be up to date; nothing is created, migrated or switched.
    /// For commands that only read, and for every connection `serve` opens after its first: a
    /// database moved away while it runs must give an error, not a new empty file in its place
    /// (which would also pick up the moved database's leftover `-wal` file).
    pub fn existing() -> OpenOptions {
        OpenOptions {
            create: false,
            migrate: false,
            ..OpenOptions::default()
        }
    }
}

/// One connection to a meterline database; every read and write goes through it.
pub struct Store {
    conn: Connection,
}

/// Opening the file; serves every caller.
impl Store {
    /// Open (or create) the database at `path` and bring its schema up to date.
    /// SQLite URI filenames work too, e.g. `file:meterline.db?mode=ro` for read-only reports.
    pub fn open(path: &Path) -> Result<Store> {
        Self::open_with(path, OpenOptions::default())
    }

    /// Open the database at `path` as `options` say. A file another program made is refused
    /// untouched ([`Error::ForeignDatabase`]).
    pub fn open_with(path: &Path, options: OpenOptions) -> Result<Store> {
        let is_uri = path.to_str().is_some_and(|p| p.starts_with("file:"));
        if !options.create && !is_uri && !path.exists() {
            return Err(Error::NoDatabase);
        }
        let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        if options.create {
            flags |= OpenFlags::SQLITE_OPEN_CREATE;
        }
        Self::setup(Connection::open_with_flags(path, flags)?, options)
    }

    /// A private in-memory database, for tests and what-ifs.
    pub fn open_in_memory() -> Result<Store> {
        Self::setup(Connection::open_in_memory()?, OpenOptions::default())
    }

    fn setup(conn: Connection, options: OpenOptions) -> Result<Store> {
        conn.busy_timeout(options.busy_timeout)?;
        // Settings of this connection only; the file is not touched. WAL + NORMAL survives a
        // killed process without losing a committed transaction; only a power loss can lose
        // the last few.
        // temp_store = MEMORY keeps statement journals (an INSERT into a table with unique
        // indexes opens one) off the disk: otherwise a temporary file, one syscall per page.
        conn.execute_batch(
            "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY;",
        )?;
        let mut store = Store { conn };
        // A brand-new file is set up by whichever process gets there first; the others can
        // see SQLITE_BUSY without their busy handler being asked (the switch to WAL, WAL
        // recovery). Every step is idempotent, so they retry until the busy timeout.
        let deadline = Instant::now() + options.busy_timeout;
        let mut pause = Duration::from_millis(1);
        loop {
            match store.prepare(options) {
                Err(Error::Locked) if Instant::now() < deadline => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                done => return done.map(|()| store),
            }
        }
    }

    /// Check whose file it is, then (if allowed) switch to WAL and migrate.
    fn prepare(&mut self, options: OpenOptions) -> Result<()> {
        // The first real read: a non-SQLite file fails here, before anything is written.
        match schema::owner(&self.conn)? {
            schema::Owner::Foreign => return Err(Error::ForeignDatabase),
            schema::Owner::Empty if !options.create => return Err(Error::NoDatabase),
            // A file being created gets its whole schema, whatever `migrate` says.
            schema::Owner::Empty => {}
            schema::Owner::Meterline if !options.migrate => {
                return schema::check_current(&self.conn);
            }
            schema::Owner::Meterline => {}
        }
        let mode: String = self
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
        if mode != "wal" && mode != "memory" && !self.conn.is_readonly(rusqlite::MAIN_DB)? {
            self.conn
                .query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
        }
        schema::migrate(&mut self.conn)
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
