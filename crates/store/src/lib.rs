//! meterline's store: every table of the database (the SQLite file, or PostgreSQL with the
//! `postgres` feature), and the only crate that speaks SQL.
//! Exact counters per customer × period, hard caps decided inside the record transaction, the
//! Stripe outbox, alerts, tokens; built on the core's billing rules and plans.
//!
//! [`Store`] is one connection (`db::Connection`: either engine, the same SQL). Its methods come in one `impl` block per concern, each in its
//! own file and saying whom it serves:
//!
//! | concern | file | serves |
//! | --- | --- | --- |
//! | opening the database | `lib.rs` (each engine's opening, schema and errors: `db/sqlite/`, `db/postgres/`) | every caller |
//! | the record path | `record.rs` | `record`, serve's writer, the demo, embedders |
//! | credits: grants, voids, balances, the ledger | `credits.rs` | `credits`, serve's credits routes, `export credits`, doctor, backup |
//! | customers | `customers.rs` | `customer`, serve's drop-in routes, reconcile, doctor |
//! | every meter's standing | `meters/standing.rs` | `check`, `history`, a duplicate's answer, serve's check, `doctor`'s meter drift |
//! | status and members (the counters' reads) | `counter_reads.rs` | `status`, `members`, the dashboard's detail |
//! | the status snapshot | `status.rs` | `status --json`, `GET /v1/status` |
//! | the dashboard | `dashboard.rs`, its meters' reads in `meters/dashboard.rs`, its credits' in `credits_dashboard.rs` | the tui |
//! | the sync outbox | `outbox.rs` | the Stripe sync, doctor |
//! | aggregated reports | `reports.rs` | the Stripe sync and reconcile, `status` |
//! | meters in Stripe | `meters/stripe.rs` (no methods: the routes the two above read) | the Stripe sync, reconcile, doctor |
//! | reconcile | `reconcile.rs` | reconcile, the tui, doctor |
//! | sync runs | `sync_runs.rs` | the Stripe sync, the tui, `status` |
//! | alerts: crossings | `alerts/crossings.rs` | `status` (the record path writes them) |
//! | alerts: delivery outbox | `alerts/outbox.rs` | alert delivery, the tui |
//! | alerts: delivery runs | `alerts/runs.rs` | alert delivery |
//! | API tokens | `tokens.rs` | `token`, serve's auth |
//! | backup | `backup.rs` | `backup` |
//! | copying into PostgreSQL | `copy.rs` | `copy-to` |
//! | doctor's checks of the database | `doctor.rs` | `doctor` |
//! | export | `export.rs` | `export` |
//! | demo writes | `demo_settle.rs` | `demo::fill` |
//!
//! Beside them, without `Store` methods of their own: `db/migrations.rs` (both engines'
//! migration files and the schema version), `lock.rs` (the
//! one run lock, used by the sync and the alert delivery), `counters.rs` (a period's counter row
//! and a batch's running counters), `meters/counting.rs` (what a batch adds to each meter's
//! counters), `new_events.rs` (a batch's event inserts).
#![warn(unreachable_pub)]
#![deny(clippy::unwrap_used, clippy::expect_used)]

// The core's modules under their old names, so paths read as they did in one crate.
use meterline_core::{Config, Error, Result, billing, config, sanitize};
pub use meterline_core::{FedMeter, IdempotencyKey, KeySource, RecordOutcome, RecordRequest};

mod alerts;
mod backup;
mod copy;
mod counter_reads;
mod counters;
mod credits;
mod credits_dashboard;
mod customers;
mod dashboard;
mod db;
pub mod demo;
mod demo_settle;
mod doctor;
mod export;
mod lock;
mod meters;
mod new_events;
mod outbox;
mod reconcile;
pub mod record;
mod reports;
mod reservations;
mod status;
mod sync_runs;
mod tokens;
mod windows;

use std::path::Path;
use std::time::Duration;

pub use crate::billing::{
    Projection, STRIPE_MAX_AGE_DAYS, STRIPE_MAX_FUTURE_SECS, project, stripe_window,
};
pub use alerts::{Alert, AlertCounts, AlertRun, DueDelivery, RecentAlert};
pub use backup::{BackupReport, verify as verify_backup};
pub use copy::{CopyProgress, CopyReport, TableRows};
pub use counter_reads::{HistoryRow, Member, MembersSummary, StatusRow};
pub use credits::{
    Amounts, CreditBalance, DEFAULT_PRIORITY, Grant, Granted, LedgerCheck, LedgerEntry, LiveGrant,
    NewGrant, Voided, burn_order,
};
pub use credits_dashboard::{CreditColumn, CreditDetail, RECENT_LEDGER};
pub use customers::{Customer, MAX_KEY_LEN, NewCustomer};
pub use dashboard::{
    Backlog, BacklogChange, ChangeMarks, CustomerDetail, Dashboard, DashboardRow, EventRow,
    GroupRow, MeterDetail, MeterFigure, MeterWindows, Refresh, TightestWindow, UsageChange,
    has_meters,
};
pub use db::Engine;
pub use db::migrations::SCHEMA_VERSION;
pub use db::sqlite::schema::{APPLICATION_ID, create_at_version};
pub use doctor::Health;
pub use export::{Cell, ExportFilter, ExportKind};
pub use lock::{LOCK_STALE_AFTER_SECS, LockHolder, LockState};
pub use meters::standing::MeterDrift;
pub use meters::stripe::{EventNamed, Formula, Route, StripeMeters};
pub use outbox::{
    EventOutcome, OutboxCursor, OutboxEvent, OutboxGroup, OutboxUnit, OutboxWindow, StripeCounts,
    StripeState,
};
pub use reconcile::{ReconcileRow, ReconcileRun, Reported, StripeChecks};
pub use reports::{HeldReport, InDoubt, ReportPlan};
pub use reservations::{
    DEFAULT_TTL_SECS, HeldMeter, MAX_TTL_SECS, NewReservation, Released, Reservation,
    ReservationAnswer, ReservationCall, Reserved, Settled,
};
/// Credits' amounts are exact decimals; the crate's users need not depend on rust_decimal.
pub use rust_decimal::Decimal;
pub use status::{StatusEntry, StripeStanding};
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
    conn: db::Connection,
}

/// Opening the database; serves every caller.
impl Store {
    /// Open (or create) the database `db` names and bring its schema up to date: a file path,
    /// or a `postgres://` URL (see [`is_postgres_url`]).
    /// SQLite URI filenames work too, e.g. `file:meterline.db?mode=ro` for read-only reports.
    pub fn open(db: &Path) -> Result<Store> {
        Self::open_with(db, OpenOptions::default())
    }

    /// Open the database `db` names as `options` say. A file or database another program made
    /// is refused untouched ([`Error::ForeignDatabase`], [`Error::ForeignServerDatabase`]).
    pub fn open_with(db: &Path, options: OpenOptions) -> Result<Store> {
        Ok(Store {
            conn: db::Connection::open(db, options)?,
        })
    }

    /// A private in-memory database, for tests and what-ifs.
    pub fn open_in_memory() -> Result<Store> {
        Ok(Store {
            conn: db::Connection::open_in_memory()?,
        })
    }

    /// Which engine this store runs on.
    pub fn engine(&self) -> Engine {
        self.conn.engine()
    }

    /// The schema version the database is at: the number of the last migration it ran, the
    /// same on both engines for one release (SQLite's `PRAGMA user_version`; on PostgreSQL,
    /// the `meterline_migrations` ledger).
    pub fn schema_version(&self) -> Result<i64> {
        self.conn.schema_version()
    }

    /// Changes whenever another connection commits; cheap enough to poll for live views
    /// (SQLite's `PRAGMA data_version`; on PostgreSQL a counter every write transaction bumps).
    pub fn data_version(&self) -> Result<i64> {
        self.conn.data_version()
    }
}

/// A PostgreSQL database exactly as an older meterline left it: migrations 1..=`version`
/// only, for tests of upgrades. Not for use on real data.
#[doc(hidden)]
#[cfg(feature = "postgres")]
pub fn create_postgres_at_version(url: &str, version: i64) -> Result<()> {
    let conn = db::postgres::PgConnection::connect(db::postgres::PgUrl::parse(url)?, 1_000)?;
    db::postgres::schema::create_at_version(&conn, version)
}

/// True when `db` (what `--db` or `METERLINE_DB` says) names a PostgreSQL database: it starts
/// with `postgres://` or `postgresql://`, the scheme in any case (URL schemes are
/// case-insensitive, and `POSTGRES://` read as a file path would echo its password).
pub fn is_postgres_url(db: &str) -> bool {
    postgres_scheme(db).is_some()
}

/// The length of `db`'s PostgreSQL scheme with its `://`, if it has one.
pub(crate) fn postgres_scheme(db: &str) -> Option<usize> {
    ["postgres://", "postgresql://"]
        .iter()
        .find(|scheme| {
            db.get(..scheme.len())
                .is_some_and(|start| start.eq_ignore_ascii_case(scheme))
        })
        .map(|scheme| scheme.len())
}

/// `db` as every message shows it: a URL (anything with `://`) without its password, a path
/// as it is.
pub fn redact_db(db: &str) -> String {
    if db.contains("://") {
        redact_url(db)
    } else {
        db.to_owned()
    }
}

/// `db` (a path or a URL) as every message, log line and header shows it: without a password,
/// and with control characters made visible.
pub fn shown_db(db: &Path) -> String {
    sanitize::sanitize(&redact_db(&db.to_string_lossy())).into_owned()
}

/// A URL with the password (if any) replaced by `***`, and the value of every query option
/// not known to be harmless too.
fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    // The user info ends at the last '@' of all: a password typed without percent-encoding
    // may hold '@', '/' or '?' (the driver reads it up to the first '@'), and hiding a host
    // that follows an '@' in the query is safe where showing part of a password is not.
    let shown = match rest.rsplit_once('@') {
        Some((user_info, after)) => match user_info.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{after}"),
            None => rest.to_owned(),
        },
        None => rest.to_owned(),
    };
    let shown = redact_options(&shown);
    sanitize::sanitize(&format!("{scheme}://{shown}")).into_owned()
}

/// Query options whose values are shown: the connection's and SQLite's URI settings, none of
/// them secret. Every other option's value (`password`, but also `pass%77ord`, which the
/// driver decodes to it, or `PASSWORD`) is shown as `***`: a list of what is safe to show
/// cannot miss a spelling of what is not.
const SHOWN_OPTIONS: &[&str] = &[
    "user",
    "dbname",
    "host",
    "hostaddr",
    "port",
    "sslmode",
    "sslnegotiation",
    "connect_timeout",
    "application_name",
    "options",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_retries",
    "tcp_user_timeout",
    "target_session_attrs",
    "channel_binding",
    "load_balance_hosts",
    // SQLite's URI filenames.
    "mode",
    "cache",
    "vfs",
    "immutable",
    "nolock",
    "psow",
    "modeof",
];

/// Every option (after a `?` or a `&`) not in [`SHOWN_OPTIONS`] with `***` for its value.
fn redact_options(url: &str) -> String {
    let mut shown = String::with_capacity(url.len());
    let mut rest = url;
    while let Some(at) = rest.find(['?', '&']) {
        shown.push_str(&rest[..=at]);
        rest = &rest[at + 1..];
        let end = rest.find('&').unwrap_or(rest.len());
        if let Some((name, _value)) = rest[..end].split_once('=')
            && !SHOWN_OPTIONS.contains(&name)
        {
            shown.push_str(name);
            shown.push_str("=***");
            rest = &rest[end..];
        }
    }
    shown.push_str(rest);
    shown
}
