use std::process::ExitCode;

use super::{Context, output};
use crate::Result;
use crate::sanitize::sanitize;

#[derive(Debug, clap::Args)]
pub struct Args {
    pub customer: String,
    /// How many periods, ending with the current one.
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u16).range(1..=240))]
    pub periods: u16,
    /// One meter's history (default: the first in plans.toml's [[meters]]).
    #[arg(long, value_name = "ID")]
    pub meter: Option<String>,
    #[arg(long)]
    pub json: bool,
}

pub fn exec(ctx: &Context, args: Args) -> Result<ExitCode> {
    let config = ctx.config()?;
    let meter = args
        .meter
        .clone()
        .unwrap_or_else(|| config.default_meter().id.clone());
    let rows = ctx.store()?.meter_history(
        &config,
        &args.customer,
        &meter,
        args.periods.into(),
        ctx.now,
    )?;
    if args.json {
        return output::print_json(&rows);
    }
    outln!(
        "{:<12} {:<12} {:<10} {:>24} {:>8}  {:<9} {:>12}",
        "FROM",
        "TO",
        "PLAN",
        "USED / LIMIT",
        "%",
        "LEVEL",
        "OVERAGE"
    )?;
    for row in &rows {
        let c = &row.check;
        outln!(
            "{:<12} {:<12} {:<10} {:>24} {:>8}  {:<9} {:>12}",
            output::day(c.period_start),
            output::day(c.period_end),
            sanitize(&c.plan),
            output::used_of_limit(c),
            output::percent(c),
            output::level(c),
            config.money(c.overage_amount),
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
