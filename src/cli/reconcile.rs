//! `meterline reconcile`: prove meterline's reported numbers against Stripe's.

use std::process::ExitCode;
use std::time::Duration;

use super::Context;
use super::output::{print_json, thousands};
use crate::Result;
use crate::sanitize::sanitize;
use crate::stripe::reconcile::{self, ReconcileOptions, Which};
use crate::stripe::{self, ApiKey};

/// `current` or `previous`, listed in completions and help.
fn which_period() -> impl clap::builder::TypedValueParser<Value = Which> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(["current", "previous"]).map(|text| {
        match text.as_str() {
            "previous" => Which::Previous,
            _ => Which::Current,
        }
    })
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this customer.
    #[arg(long, value_name = "ID")]
    pub customer: Option<String>,
    /// The billing period to compare.
    #[arg(long, default_value = "current", value_parser = which_period())]
    pub period: Which,
    /// Rows reported within this many seconds are "pending", not drift (Stripe aggregates
    /// asynchronously); 0 for none.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub grace: u64,
    /// Print a JSON array of rows.
    #[arg(long, help = super::JSON_HELP)]
    pub json: bool,
}

/// Exit 0 when every row agrees (or is pending), 1 when any drifts or stays in doubt or the run
/// was cancelled (Ctrl-C, SIGTERM: the customer in progress finishes), 2 on configuration
/// errors.
pub fn exec(ctx: &Context, args: Args) -> Result<ExitCode> {
    let config = ctx.config()?;
    stripe::api_base(&config)?;
    let key = ApiKey::from_env()?;
    ctx.existing_store()?;
    let options = ReconcileOptions {
        customer: args.customer,
        period: args.period,
        grace: Duration::from_secs(args.grace),
        now: None,
        backoff: None,
        cancel: super::signals::cancel_on_signals()?,
    };
    let reconcile::Reconciled { rows, unchecked } =
        reconcile::run(&ctx.db, &config, &key, &options)?;
    let bad = rows
        .iter()
        .filter(|r| r.status == "drift" || r.status == "in_doubt")
        .count();
    if args.json {
        print_json(&rows)?;
    } else {
        outln!(
            "{:<24} {:<22} {:<16} {:<26} {:>12} {:>12} {:>10}  STATUS",
            "CUSTOMER",
            "STRIPE CUSTOMER",
            "METER",
            "METER EVENT",
            "REPORTED",
            "STRIPE",
            "DRIFT"
        )?;
        for r in &rows {
            outln!(
                "{:<24} {:<22} {:<16} {:<26} {:>12} {:>12} {:>+10}  {}",
                sanitize(&r.customer),
                sanitize(&r.stripe_customer),
                sanitize(&r.meter),
                sanitize(&r.meter_event),
                thousands(r.local),
                thousands(r.stripe),
                r.drift,
                r.status
            )?;
        }
        let count = |s: &str| rows.iter().filter(|r| r.status == s).count();
        outln!(
            "{} rows: {} match, {} drift, {} pending, {} in doubt, {} to resend",
            rows.len(),
            count("ok"),
            count("drift"),
            count("pending"),
            count("in_doubt"),
            count("resend")
        )?;
        if bad > 0 {
            outln!(
                "drift: Stripe's total differs from what meterline reported. Look at the \
                 customer's meter events in Stripe (Billing -> Meters) and docs/sync.md"
            )?;
        }
    }
    if unchecked > 0 {
        eprintln!(
            "meterline reconcile: cancelled; {unchecked} customers not compared (the rows above \
             are recorded; run it again for the rest)"
        );
    }
    Ok(if bad > 0 || unchecked > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
