//! The command line: clap definitions and one thin file per subcommand.

// Output goes through `out!`/`outln!` (a closed pipe must not panic); clippy holds us to it.
#![deny(clippy::print_stdout)]

/// `print!` that returns an error instead of panicking: all command output goes through
/// [`output::write`], so a closed pipe (`meterline status | head -1`) ends the command quietly.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::output::write(format_args!($($arg)*))
    };
}

/// `println!` through [`output::write`].
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cli::output::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}

mod alerts;
mod backup;
mod check;
mod completions;
mod copy_to;
mod credits;
mod customer;
mod dashboard;
mod demo;
mod doctor;
mod export;
mod history;
mod init;
mod man;
mod members;
pub(crate) mod output;
mod plans;
mod reconcile;
mod record;
mod record_batch;
mod reserve;
mod serve;
mod signals;
mod status;
mod sync;
mod token;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};

use crate::store::OpenOptions;
use crate::{Config, Result, Store};

/// Every `--json` flag's help: one wording, and where its fields are told.
const JSON_HELP: &str = "Print JSON instead of text (fields: README and docs/api.md)";

#[derive(Debug, Parser)]
#[command(
    name = "meterline",
    version,
    about = "Usage billing for self-hosters: exact counters, hard caps, live gauges, Stripe Billing Meters"
)]
pub struct Cli {
    /// The database: an SQLite file (write commands create it if missing; read commands never
    /// do), or a postgres:// URL.
    // Its value never shows in --help: a URL holds a password.
    #[arg(
        long,
        global = true,
        env = "METERLINE_DB",
        hide_env_values = true,
        default_value = "meterline.db"
    )]
    pub db: PathBuf,
    /// The plans file [default: ./plans.toml, else $XDG_CONFIG_HOME/meterline/plans.toml,
    /// else /etc/meterline/plans.toml]
    #[arg(long, global = true, env = "METERLINE_PLANS")]
    pub plans: Option<PathBuf>,
    /// Pretend the current time is this RFC3339 instant (tests and what-ifs).
    #[arg(long, global = true, env = "METERLINE_NOW", value_parser = crate::billing::parse_ts)]
    pub now: Option<DateTime<Utc>>,
    /// How long to wait for another process's write lock, in milliseconds.
    #[arg(long, global = true, env = "METERLINE_BUSY_TIMEOUT_MS", default_value_t = 5000,
          value_name = "MS", value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub busy_timeout_ms: u64,
    /// Monochrome output (NO_COLOR is honoured too).
    #[arg(long, global = true)]
    pub no_color: bool,
    /// Headless sync to Stripe, the same as `meterline sync` (for cron).
    #[arg(long, conflicts_with = "demo")]
    pub sync: bool,
    /// Open the dashboard on a fresh demo database in a temporary directory.
    #[arg(long)]
    pub demo: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Record usage for a customer (exit 3 when refused by a hard cap).
    Record(record::Args),
    /// A customer's standing in the current period.
    Check(check::Args),
    /// Every customer's standing, most at risk first.
    Status(status::Args),
    /// Usage over the last periods.
    History(history::Args),
    /// Per-member usage of an organisation account.
    Members(members::Args),
    /// Prepaid credits: a customer's balance, or grant, ledger, void.
    Credits(credits::Args),
    /// Hold what an event would use before the work (exit 3 when a record of it would be
    /// refused); prints the reservation id.
    Reserve(reserve::ReserveArgs),
    /// Record what a reserved event really used and free its hold.
    Settle(reserve::SettleArgs),
    /// Free a reservation's hold.
    Release(reserve::ReleaseArgs),
    /// Add, change or list customers.
    #[command(subcommand)]
    Customer(customer::Command),
    /// Validate and print plans.toml.
    Plans(plans::Args),
    /// Fill the database with realistic demo data.
    Demo(demo::Args),
    /// Report unreported usage to Stripe Billing Meters (exit 1 if some was not delivered).
    Sync(sync::Args),
    /// Compare reported usage with Stripe's totals (exit 1 on drift, 2 on configuration errors).
    Reconcile(reconcile::Args),
    /// Bring an older database up to date (read commands never change the file).
    Upgrade,
    /// Serve the HTTP API (record, check, status) with group commit.
    Serve(serve::Args),
    /// Create, list or revoke the API's bearer tokens.
    #[command(subcommand)]
    Token(token::Command),
    /// Which files are in use and why, and whether each part is healthy (exit 1: problems).
    Doctor(doctor::Args),
    /// Write the commented example plans.toml (never overwrites).
    Init(init::Args),
    /// Copy the live database to a new file, verified before it is reported done.
    Backup(backup::Args),
    /// Copy the SQLite database into an empty PostgreSQL one, checked before it commits.
    CopyTo(copy_to::Args),
    /// Stream events, per-period usage or the credit ledger as CSV or JSON Lines.
    Export(export::Args),
    /// Shell completions on stdout.
    Completions(completions::Args),
    /// The man page (roff) on stdout.
    Man,
    /// Deliver pending usage alerts to the [[alerts]] destinations (exit 1 if some failed).
    Alerts(alerts::Args),
}

/// What every subcommand gets: resolved paths, the current instant, how to open the store.
pub struct Context {
    pub db: PathBuf,
    pub plans: PathBuf,
    /// Why `plans` is the file in use (flag, current directory, XDG, /etc).
    pub plans_reason: &'static str,
    pub now: DateTime<Utc>,
    pub busy_timeout: Duration,
}

impl Context {
    pub fn config(&self) -> Result<Config> {
        Ok(Config::load(&self.plans)?)
    }

    /// The database as messages show it (a URL without its password).
    pub fn db_shown(&self) -> String {
        crate::store::shown_db(&self.db)
    }

    /// Whether `--db` names a PostgreSQL database rather than a file.
    pub fn on_postgres(&self) -> bool {
        self.db.to_str().is_some_and(crate::store::is_postgres_url)
    }

    /// The store for reading: it must exist and be up to date; nothing is created or changed.
    pub fn store(&self) -> Result<Store> {
        self.open(OpenOptions::existing())
    }

    /// The store for writing: created if missing, upgraded if older. A new file is said on
    /// stderr with its full path: a mistyped --db would otherwise start a second database
    /// silently, and the data would be split across the two.
    pub fn write_store(&self) -> Result<Store> {
        let creates = !self.on_postgres() && !self.db.exists();
        let store = self.open(OpenOptions::default())?;
        if creates {
            let path = std::path::absolute(&self.db).unwrap_or_else(|_| self.db.clone());
            eprintln!(
                "created a new meterline database: {}",
                crate::sanitize::sanitize(&path.display().to_string())
            );
        }
        Ok(store)
    }

    /// An existing store, upgraded if older (sync: it writes, but only to a database that has
    /// customers to report).
    pub fn existing_store(&self) -> Result<Store> {
        self.open(OpenOptions {
            create: false,
            ..OpenOptions::default()
        })
    }

    fn open(&self, options: OpenOptions) -> Result<Store> {
        Store::open_with(
            &self.db,
            OpenOptions {
                busy_timeout: self.busy_timeout,
                ..options
            },
        )
    }
}

/// Run the parsed command line; errors carry their own exit codes.
pub fn run(cli: Cli) -> Result<ExitCode> {
    let plans = crate::config::locate::locate(cli.plans.as_deref());
    let ctx = Context {
        db: cli.db,
        plans: plans.path,
        plans_reason: plans.reason,
        now: cli.now.unwrap_or_else(Utc::now),
        busy_timeout: Duration::from_millis(cli.busy_timeout_ms),
    };
    if cli.sync && cli.command.is_some() {
        return Err(crate::Error::InvalidInput(
            "--sync runs the sync on its own; for options use `meterline sync --help`".into(),
        ));
    }
    if cli.demo && cli.command.is_some() {
        return Err(crate::Error::InvalidInput(
            "--demo opens the dashboard on a demo database; run it without a subcommand".into(),
        ));
    }
    match cli.command {
        Some(Command::Sync(args)) => {
            if !args.dry_run {
                ctx.existing_store()?;
            }
            sync::exec(&ctx, args)
        }
        None if cli.sync => {
            ctx.existing_store()?;
            sync::exec(&ctx, sync::Args::default())
        }
        Some(Command::Record(args)) => record::exec(&ctx, args),
        Some(Command::Check(args)) => check::exec(&ctx, args),
        Some(Command::Status(args)) => status::exec(&ctx, args),
        Some(Command::History(args)) => history::exec(&ctx, args),
        Some(Command::Members(args)) => members::exec(&ctx, args),
        Some(Command::Customer(command)) => customer::exec(&ctx, command),
        Some(Command::Credits(args)) => credits::exec(&ctx, args),
        Some(Command::Reserve(args)) => reserve::reserve(&ctx, args),
        Some(Command::Settle(args)) => reserve::settle(&ctx, args),
        Some(Command::Release(args)) => reserve::release(&ctx, args),
        Some(Command::Plans(args)) => plans::exec(&ctx, args),
        Some(Command::Demo(args)) => demo::exec(&ctx, args),
        Some(Command::Reconcile(args)) => reconcile::exec(&ctx, args),
        Some(Command::Upgrade) => upgrade(&ctx),
        Some(Command::Serve(args)) => serve::exec(&ctx, args, cli.now),
        Some(Command::Token(command)) => token::exec(&ctx, command),
        Some(Command::Doctor(args)) => doctor::exec(&ctx, args),
        Some(Command::Init(args)) => init::exec(args),
        Some(Command::Backup(args)) => backup::exec(&ctx, args),
        Some(Command::CopyTo(args)) => copy_to::exec(&ctx, args),
        Some(Command::Export(args)) => export::exec(&ctx, args),
        Some(Command::Completions(args)) => completions::exec(args),
        Some(Command::Man) => man::exec(),
        Some(Command::Alerts(args)) => alerts::exec(&ctx, args),
        None => dashboard::exec(&ctx, cli.demo, cli.now, cli.no_color),
    }
}

/// `meterline upgrade`: migrate the database (the write commands do it too).
fn upgrade(ctx: &Context) -> Result<ExitCode> {
    let version = ctx.existing_store()?.schema_version()?;
    outln!("{}: schema version {version}, up to date", ctx.db_shown())?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
