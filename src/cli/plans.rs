use std::process::ExitCode;

use super::{Context, output};
use crate::Result;
use crate::config::AtLimit;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long)]
    pub json: bool,
}

pub fn exec(ctx: &Context, args: Args) -> Result<ExitCode> {
    let config = ctx.config()?;
    // With a database present, the file must still define every plan a customer is on.
    let missing = if ctx.db.is_file() {
        ctx.store()?.customers_on_missing_plans(&config)?
    } else {
        Vec::new()
    };
    let code = if missing.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "{}: {} customer(s) in {} are on plans this file no longer defines:",
            ctx.plans.display(),
            missing.len(),
            ctx.db.display()
        );
        for (customer, plan) in &missing {
            eprintln!("  {customer} (plan \"{plan}\")");
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
    if missing.is_empty() {
        println!("{}: valid", ctx.plans.display());
    } else {
        println!(
            "{}: valid, but {} customer(s) are on plans it no longer defines",
            ctx.plans.display(),
            missing.len()
        );
    }
    println!(
        "{:<10} {:<16} {:>10} {:>14} {:<8} {:>10}  METER EVENT",
        "ID", "NAME", "PRICE", "INCLUDED", "AT LIMIT", "RATE"
    );
    for p in &config.plans {
        println!(
            "{:<10} {:<16} {:>10} {:>14} {:<8} {:>10}  {}",
            p.id,
            p.name,
            p.price,
            p.included.map_or("unlimited".into(), output::thousands),
            match (p.included, p.at_limit) {
                (None, _) => "-",
                (Some(_), AtLimit::Block) => "block",
                (Some(_), AtLimit::Overage) => "overage",
            },
            p.overage_rate.map_or("-".into(), |r| r.to_string()),
            p.meter_event,
        );
    }
    println!(
        "thresholds: warning {:.0} %, critical {:.0} %, hard cap 100 %",
        config.thresholds.warning * 100.0,
        config.thresholds.critical * 100.0
    );
    println!(
        "billing periods: {}; stripe: {} (meter event {})",
        config.billing.period.as_str(),
        config.stripe.api_base,
        config.stripe.meter_event
    );
    Ok(code)
}
