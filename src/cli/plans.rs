use std::process::ExitCode;

use super::{Context, output};
use crate::Result;
use crate::config::AtLimit;
use crate::sanitize::sanitize;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long)]
    pub json: bool,
}

pub fn exec(ctx: &Context, args: Args) -> Result<ExitCode> {
    let config = ctx.config()?;
    // With a database present, the file must still define every plan a customer is on.
    let missing = if ctx.db.is_file() || ctx.on_postgres() {
        match ctx.store() {
            Ok(store) => store.customers_on_missing_plans(&config)?,
            // An empty PostgreSQL database, like a file not there yet: nobody to name.
            Err(crate::Error::NoDatabase) => Vec::new(),
            Err(e) => return Err(e),
        }
    } else {
        Vec::new()
    };
    // Counting that changed under the database: said, not refused (plans.toml is valid).
    if (ctx.db.is_file() || ctx.on_postgres())
        && let Ok(store) = ctx.store()
    {
        for sentence in store.meter_drift(&config)?.sentences(&config) {
            eprintln!("warning: {}", sanitize(&sentence));
        }
    }
    let code = if missing.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "{}: {} customer(s) in {} are on plans this file no longer defines:",
            sanitize(&ctx.plans.display().to_string()),
            missing.len(),
            ctx.db_shown()
        );
        for (customer, plan) in &missing {
            eprintln!("  {} (plan \"{}\")", sanitize(customer), sanitize(plan));
        }
        eprintln!(
            "put the plans back, or move each customer with `meterline customer set-plan CUSTOMER PLAN`"
        );
        ExitCode::from(2)
    };
    if args.json {
        output::print_json(&config)?;
        return Ok(code);
    }
    let shown = sanitize(&ctx.plans.display().to_string()).into_owned();
    if missing.is_empty() {
        outln!("{shown}: valid")?;
    } else {
        outln!(
            "{shown}: valid, but {} customer(s) are on plans it no longer defines",
            missing.len()
        )?;
    }
    outln!(
        "{:<10} {:<16} {:>10} {:>14} {:<8} {:>10}  METER EVENT",
        "ID",
        "NAME",
        "PRICE",
        "INCLUDED",
        "AT LIMIT",
        "RATE"
    )?;
    for p in &config.plans {
        outln!(
            "{:<10} {:<16} {:>10} {:>14} {:<8} {:>10}  {}",
            sanitize(&p.id),
            sanitize(&p.name),
            config.money(p.price),
            p.included.map_or("unlimited".into(), output::thousands),
            match (p.included, p.at_limit) {
                (None, _) => "-",
                (Some(_), AtLimit::Block) => "block",
                (Some(_), AtLimit::Overage) => "overage",
            },
            p.overage_rate.map_or("-".into(), |r| config.money(r)),
            sanitize(&p.meter_event),
        )?;
    }
    outln!(
        "thresholds: warning {:.0} %, critical {:.0} %, hard cap 100 %",
        config.thresholds.warning * 100.0,
        config.thresholds.critical * 100.0
    )?;
    outln!(
        "billing periods: {}, currency {}; stripe: {} (meter event {})",
        config.billing.period.as_str(),
        config.billing.currency,
        sanitize(&config.stripe.api_base),
        sanitize(&config.stripe.meter_event)
    )?;
    Ok(code)
}
