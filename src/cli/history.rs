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
    /// One meter's history (default: in text every meter's, in JSON the first in
    /// plans.toml's [[meters]]).
    #[arg(long, value_name = "ID")]
    pub meter: Option<String>,
    #[arg(long, help = super::JSON_HELP)]
    pub json: bool,
}

pub fn exec(ctx: &Context, args: Args) -> Result<ExitCode> {
    let config = ctx.config()?;
    let store = ctx.store()?;
    let history = |meter: &str| {
        store.meter_history(&config, &args.customer, meter, args.periods.into(), ctx.now)
    };
    match &args.meter {
        // In text, with [[meters]] and no --meter: every meter's, each under its name.
        None if config.implicit_meter().is_none() && !args.json => {
            for (i, meter) in config.meters.iter().enumerate() {
                let rows = history(&meter.id)?;
                if i > 0 {
                    outln!("")?;
                }
                if meter.name == meter.id {
                    outln!("{}", sanitize(&meter.id))?;
                } else {
                    outln!("{} ({})", sanitize(&meter.id), sanitize(&meter.name))?;
                }
                print_table(&config, &rows)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        meter => {
            let rows = history(meter.as_deref().unwrap_or(&config.default_meter().id))?;
            if args.json {
                return output::print_json(&rows);
            }
            print_table(&config, &rows)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_table(config: &crate::Config, rows: &[crate::store::HistoryRow]) -> Result<()> {
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
    for row in rows {
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
        // Priced per group (rates): each group's share of the overage under the period.
        if c.priced_per_group() {
            for g in row.groups.iter().filter(|g| g.overage_units > 0) {
                outln!(
                    "  {:<34} {:>24} {:>8}  {:<9} {:>12}",
                    group_label(&g.values()),
                    format!("{} over", output::thousands(g.overage_units)),
                    "",
                    "",
                    config.money(g.overage_amount),
                )?;
            }
        }
    }
    Ok(())
}

/// A group's `group_by` values as one label: `model=large region=eu`.
fn group_label(key: &serde_json::Value) -> String {
    let Some(values) = key.as_object() else {
        return sanitize(&key.to_string()).into_owned();
    };
    let values: Vec<String> = values
        .iter()
        .map(|(dim, value)| {
            let value = value
                .as_str()
                .map_or_else(|| value.to_string(), str::to_string);
            format!("{}={}", sanitize(dim), sanitize(&value))
        })
        .collect();
    values.join(" ")
}
