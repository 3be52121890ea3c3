use std::process::ExitCode;

use super::{Context, output};
use crate::Result;

#[derive(Debug, clap::Args)]
pub struct Args {
    pub customer: String,
    /// Only this meter, its object at the top level.
    #[arg(long, value_name = "ID")]
    pub meter: Option<String>,
    #[arg(long)]
    pub json: bool,
    /// Exit 3 when the customer may not use more (`allowed` is false), for shell callers.
    #[arg(long)]
    pub exit_code: bool,
}

/// `check --json` without `--meter`: the default meter's fields, then every meter.
#[derive(serde::Serialize)]
struct AllMeters<'a> {
    #[serde(flatten)]
    check: &'a crate::billing::UsageCheck,
    meters: &'a [meterline_core::MeterCheck],
}

pub fn exec(ctx: &Context, args: Args) -> Result<ExitCode> {
    let config = ctx.config()?;
    let meters = ctx
        .store()?
        .meter_checks(&config, &args.customer, ctx.now)?;
    let allowed = match &args.meter {
        Some(id) => {
            let Some(one) = meters.iter().find(|m| &m.meter == id) else {
                let known: Vec<&str> = meters.iter().map(|m| m.meter.as_str()).collect();
                return Err(crate::Error::InvalidInput(format!(
                    "meter \"{}\" is not in plans.toml; the meters are: {}",
                    crate::sanitize::sanitize(id),
                    known.join(", ")
                )));
            };
            if args.json {
                output::print_json(one)?;
            } else {
                out!("{}", output::describe(&one.check, &config.billing.currency))?;
            }
            one.check.allowed
        }
        None => {
            // The default meter at the top level, as before meters; `allowed` says whether
            // every capped meter still allows more.
            let Some(first) = meters.first() else {
                return Err(crate::Error::InvalidInput("plans.toml has no meter".into()));
            };
            let mut top = first.check.clone();
            top.allowed = meters.iter().all(|m| m.check.allowed);
            if args.json {
                output::print_json(&AllMeters {
                    check: &top,
                    meters: &meters,
                })?;
            } else {
                out!("{}", output::describe(&top, &config.billing.currency))?;
            }
            top.allowed
        }
    };
    if args.exit_code && !allowed {
        return Ok(ExitCode::from(output::REFUSED));
    }
    Ok(ExitCode::SUCCESS)
}
