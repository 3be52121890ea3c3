//! The command line: clap definitions and one thin file per subcommand.

mod check;
mod customer;
mod dashboard;
mod demo;
mod history;
mod members;
pub(crate) mod output;
mod plans;
mod record;
mod record_batch;
mod serve;
mod status;
mod sync;
mod token;

use std::path::PathBuf;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};

use crate::{Config, Result, Store};

#[derive(Debug, Parser)]
#[command(
    name = "meterline",
    version,
    about = "Usage billing for self-hosters: exact counters, hard caps, live gauges, Stripe Billing Meters"
)]
pub struct Cli {
    /// The SQLite database (created if missing).
    #[arg(
        long,
        global = true,
        env = "METERLINE_DB",
        default_value = "meterline.db"
    )]
    pub db: PathBuf,
    /// The plans file.
    #[arg(
        long,
        global = true,
        env = "METERLINE_PLANS",
        default_value = "plans.toml"
    )]
    pub plans: PathBuf,
    /// Pretend the current time is this RFC3339 instant (tests and what-ifs).
    #[arg(long, global = true, env = "METERLINE_NOW", value_parser = parse_instant)]
    pub now: Option<DateTime<Utc>>,
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
    /// Add, change or list customers.
    #[command(subcommand)]
    Customer(customer::Command),
    /// Validate and print plans.toml.
    Plans(plans::Args),
    /// Fill the database with realistic demo data.
    Demo(demo::Args),
    /// Report unreported usage to Stripe Billing Meters (exit 1 if some was not delivered).
    Sync(sync::Args),
    /// Serve the HTTP API (record, check, status) with group commit.
    Serve(serve::Args),
    /// Create, list or revoke the API's bearer tokens.
    #[command(subcommand)]
    Token(token::Command),
}

/// What every subcommand gets: resolved paths and the current instant.
pub struct Context {
    pub db: PathBuf,
    pub plans: PathBuf,
    pub now: DateTime<Utc>,
}

impl Context {
    pub fn config(&self) -> Result<Config> {
        Ok(Config::load(&self.plans)?)
    }

    pub fn store(&self) -> Result<Store> {
        Store::open(&self.db)
    }
}

pub fn parse_instant(text: &str) -> std::result::Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("{e}; expected RFC3339, e.g. 2026-11-27T18:00:00Z"))
}

/// Run the parsed command line; errors carry their own exit codes.
pub fn run(cli: Cli) -> Result<ExitCode> {
    let ctx = Context {
        db: cli.db,
        plans: cli.plans,
        now: cli.now.unwrap_or_else(Utc::now),
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
        Some(Command::Sync(args)) => sync::exec(&ctx, args),
        None if cli.sync => sync::exec(&ctx, sync::Args::default()),
        Some(Command::Record(args)) => record::exec(&ctx, args),
        Some(Command::Check(args)) => check::exec(&ctx, args),
        Some(Command::Status(args)) => status::exec(&ctx, args),
        Some(Command::History(args)) => history::exec(&ctx, args),
        Some(Command::Members(args)) => members::exec(&ctx, args),
        Some(Command::Customer(command)) => customer::exec(&ctx, command),
        Some(Command::Plans(args)) => plans::exec(&ctx, args),
        Some(Command::Demo(args)) => demo::exec(&ctx, args),
        Some(Command::Serve(args)) => serve::exec(&ctx, args, cli.now),
        Some(Command::Token(command)) => token::exec(&ctx, command),
        None => dashboard::exec(&ctx, cli.demo, cli.now, cli.no_color),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
