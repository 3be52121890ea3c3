use std::process::ExitCode;

use std::io::Write;
use std::path::Path;

use super::Context;
use super::output::thousands;
use crate::billing::count;
use crate::config::EXAMPLE_PLANS;
use crate::demo::DemoSpec;
use crate::sanitize::sanitize;
use crate::{Error, Result};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// How many customers.
    #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub customers: u32,
    /// Roughly how many usage events in all.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub events: u64,
    /// Random seed: the same seed gives the same data.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

pub fn exec(ctx: &Context, args: Args) -> Result<ExitCode> {
    let (config, plans_label) = super::dashboard::demo_plans(&ctx.plans)?;
    let mut store = ctx.write_store()?;
    let spec = DemoSpec {
        customers: args.customers as usize,
        events: args.events,
        seed: args.seed,
    };
    // Without a plans file the demo uses the built-in plans: written where the next command
    // looks, so it reads the database with the plans its customers are on (before the fill,
    // so a file that cannot be written leaves no half-usable database; only for a database
    // the fill takes, one without customers).
    let plans_label = if ctx.plans.exists() || !store.customers()?.is_empty() {
        plans_label
    } else {
        write_plans(&ctx.plans)?;
        format!("{plans_label}, written to {}", ctx.plans.display())
    };
    let summary = crate::demo::fill(&mut store, &config, &spec, ctx.now)?;
    outln!(
        "demo database {}: {}, {} ({} unreported to Stripe)",
        ctx.db_shown(),
        count(summary.customers as i64, "customer"),
        count(summary.events as i64, "event"),
        thousands(summary.unreported as i64)
    )?;
    outln!("plans: {}", sanitize(&plans_label))?;
    outln!("try: {}", next_command(ctx))?;
    Ok(ExitCode::SUCCESS)
}

/// The built-in plans, at `path` (never over a file).
fn write_plans(path: &Path) -> Result<()> {
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .and_then(|mut file| file.write_all(EXAMPLE_PLANS.as_bytes()));
    written.map_err(|e| Error::InvalidInput(format!("cannot write {}: {e}", path.display())))
}

/// A command to paste next that reads the demo database with its plans. A database URL whose
/// password is hidden cannot be pasted: then the same --db or METERLINE_DB is asked for.
fn next_command(ctx: &Context) -> String {
    let plans = if ctx.plans == Path::new("plans.toml") {
        String::new()
    } else {
        format!(" --plans {}", quoted(&ctx.plans.display().to_string()))
    };
    let shown = ctx.db_shown();
    if shown != ctx.db.to_string_lossy() {
        return format!(
            "meterline{plans} status (with the same --db or METERLINE_DB: its password is not \
             printed)"
        );
    }
    format!("meterline --db {}{plans} status", quoted(&shown))
}

/// `text` as one shell word: single-quoted when it holds anything but plain characters.
fn quoted(text: &str) -> String {
    let plain = text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+=:,@".contains(c));
    if plain && !text.is_empty() {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}
