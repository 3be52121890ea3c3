//! The library's one error type, and the exit code each kind of failure maps to.

use crate::config::ConfigError;
use crate::sanitize::sanitize;

/// Every failure meterline reports; `exit_code` maps each to the process exit code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("unknown customer \"{id}\"; add it with `meterline customer add {id} --plan free`", id = sanitize(.0))]
    UnknownCustomer(String),
    #[error("unknown plan \"{}\"; plans.toml defines: {}", sanitize(.plan), sanitize(.known))]
    UnknownPlan { plan: String, known: String },
    #[error("{0}")]
    InvalidInput(String),
    /// The customer's plan is no longer in plans.toml.
    #[error(
        "customer \"{customer}\" is on plan \"{plan}\", which plans.toml no longer defines; \
         put the plan back in plans.toml or move the customer with \
         `meterline customer set-plan {customer} PLAN`"
    )]
    PlanMissing { customer: String, plan: String },
    /// An archived customer: its data stays, new usage is refused.
    #[error(
        "customer \"{0}\" is archived: its usage is kept but nothing new is recorded; \
         `meterline customer unarchive {0}` takes it back"
    )]
    CustomerArchived(String),
    /// No reservation has this id (the HTTP server answers 404).
    #[error("unknown reservation \"{}\"; `meterline reserve` prints a reservation's id", sanitize(.0))]
    UnknownReservation(String),
    /// A settle of a released reservation, or a release of a settled one (409).
    #[error("{0}")]
    ReservationEnded(String),
    /// An idempotency key reused with other parameters (the HTTP server answers 409).
    #[error("{0}")]
    IdempotencyConflict(String),
    #[error(
        "the database is locked by another writer and stayed locked past the busy timeout; try again"
    )]
    Locked,
    #[error("the file is not a meterline database (not SQLite, or encrypted)")]
    NotADatabase,
    #[error("the database is corrupt: {0}")]
    Corrupt(String),
    #[error("the database is read-only; meterline needs write access to record and sync")]
    ReadOnly,
    #[error("cannot open the database: {0}")]
    CannotOpen(String),
    #[error(
        "the database has schema version {found}, newer than this meterline knows ({known}); upgrade meterline"
    )]
    NewerSchema { found: i64, known: i64 },
    #[error(
        "the database has schema version {found}, older than this meterline ({known}); \
         read commands never change the schema: run `meterline upgrade` (back the database up first)"
    )]
    OlderSchema { found: i64, known: i64 },
    #[error(
        "there is no meterline database here; create one with `meterline customer add ID` \
         (or fill a demo one with `meterline demo`), or point --db / METERLINE_DB at yours"
    )]
    NoDatabase,
    #[error(
        "the file is an SQLite database of another program, not meterline's; it was left untouched"
    )]
    ForeignDatabase,
    /// A PostgreSQL database that holds another application's tables.
    #[error(
        "the PostgreSQL database already holds tables of another application and no meterline \
         schema; it was left untouched: give meterline a database of its own \
         (`createdb meterline`)"
    )]
    ForeignServerDatabase,
    /// A PostgreSQL server older than the oldest one meterline supports.
    #[error("{0}")]
    UnsupportedServer(String),
    #[error("the disk holding the database is full; free some space and run the command again")]
    DiskFull,
    #[error("database error: {0}")]
    Database(String),
    /// A query that must find one row found none (callers turn it into `None` or their own
    /// error; it is never shown as such).
    #[error("no row matched")]
    NoRows,
    /// The database server cannot be reached or went away (PostgreSQL restarting, a network
    /// cut). Nothing was written; the same request can be retried (the HTTP server answers
    /// 503 with Retry-After).
    #[error("the database server is unavailable: {0}")]
    Unavailable(String),
    /// The connection to the database server was lost after a COMMIT went out and before its
    /// answer came back: the transaction may or may not be written. Resent with the same
    /// idempotency key, an event is recorded once either way (the HTTP server answers 503
    /// `outcome_unknown` with Retry-After).
    #[error(
        "the connection to the database server was lost while it committed ({0}), so whether \
         this was written is unknown; send it again with the same idempotency key: it is \
         recorded once either way"
    )]
    OutcomeUnknown(String),
    #[error("{0}")]
    Stripe(String),
    #[error(
        "STRIPE_API_KEY is not set. Set it to your Stripe secret key (Dashboard -> Developers -> API keys), \
         e.g. `export STRIPE_API_KEY=sk_test_...` for a shell, `Environment=STRIPE_API_KEY=...` or \
         `EnvironmentFile=` for a systemd unit, or a line `STRIPE_API_KEY=...` at the top of a crontab"
    )]
    MissingApiKey,
    /// Stripe settings that cannot work (bad key format, refused key, insecure API base).
    #[error("{0}")]
    StripeConfig(String),
    /// Standard output could not be written (not a closed pipe: see `OutputClosed`).
    #[error("cannot write the output: {0}")]
    Output(String),
    /// Whoever read the output went away (`meterline status | head -1`): nothing to report.
    #[error("the output was closed")]
    OutputClosed,
    /// Another sync holds the database's sync lock.
    #[error("{0}")]
    SyncRunning(String),
    /// Another alert delivery run holds the database's alerts lock.
    #[error("{0}")]
    AlertsRunning(String),
    /// `[[alerts]]` that cannot be delivered as configured (no webhook secret).
    #[error("{0}")]
    AlertConfig(String),
}

impl Error {
    /// 2 for usage and configuration mistakes, 1 for everything that failed at run time.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config(_)
            | Error::UnknownCustomer(_)
            | Error::UnknownPlan { .. }
            | Error::InvalidInput(_)
            | Error::IdempotencyConflict(_)
            | Error::UnknownReservation(_)
            | Error::ReservationEnded(_)
            | Error::PlanMissing { .. }
            | Error::CustomerArchived(_)
            | Error::MissingApiKey
            | Error::StripeConfig(_)
            | Error::AlertConfig(_)
            | Error::NoDatabase
            | Error::ForeignDatabase
            | Error::ForeignServerDatabase
            | Error::UnsupportedServer(_) => 2,
            Error::OutputClosed => 0,
            _ => 1,
        }
    }

    /// True for errors that concern the database file (the CLI then names the file).
    pub fn is_database(&self) -> bool {
        matches!(
            self,
            Error::Locked
                | Error::NotADatabase
                | Error::Corrupt(_)
                | Error::ReadOnly
                | Error::CannotOpen(_)
                | Error::NewerSchema { .. }
                | Error::OlderSchema { .. }
                | Error::NoDatabase
                | Error::ForeignDatabase
                | Error::ForeignServerDatabase
                | Error::UnsupportedServer(_)
                | Error::DiskFull
                | Error::Database(_)
                | Error::Unavailable(_)
                | Error::OutcomeUnknown(_)
        )
    }
}

/// meterline's `Result`, with [`Error`] by default.
pub type Result<T, E = Error> = std::result::Result<T, E>;
