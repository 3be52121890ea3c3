use std::process::ExitCode;

use super::{Context, output};
use crate::Result;

#[derive(Debug, clap::Args)]
pub struct Args {
    pub customer: String,
    /// Only this meter, its object at the top level.
    #[arg(long, value_name = "ID")]
    pub meter: Option<String>,
    #[arg(long, help = super::JSON_HELP)]
    pub json: bool,
    /// Exit 3 when the customer may not use more (`allowed` is false), for shell callers.
    #[arg(long)]
    pub exit_code: bool,
}

pub fn exec(ctx: &Context, args: Args) -> Result<ExitCode> {
    let config = ctx.config()?;
    let all = ctx
        .store()?
        .metered_check(&config, &args.customer, ctx.now)?;
    let allowed = match &args.meter {
        Some(id) => {
            // Every meter of plans.toml is in `all`: only an unknown id is refused here.
            let meter = config.known_meter(id)?;
            let Some(one) = all.meter(&meter.id) else {
                return Err(crate::Error::InvalidInput(format!(
                    "meter \"{}\" has no check",
                    meter.id
                )));
            };
            if args.json {
                output::print_json(one)?;
            } else {
                out!("{}", output::describe(&one.check, &config.billing.currency))?;
                out!(
                    "{}",
                    output::describe_windows(&one.meter, &one.windows, ctx.now)
                )?;
            }
            one.check.allowed
        }
        None => {
            if args.json {
                output::print_json(&all)?;
            } else if config.implicit_meter().is_none() {
                out!(
                    "{}",
                    output::describe_meters(&all, &config.billing.currency, ctx.now)
                )?;
            } else {
                out!("{}", output::describe(&all.check, &config.billing.currency))?;
                let meter = &config.default_meter().id;
                out!("{}", output::describe_windows(meter, &all.windows, ctx.now))?;
            }
            if !args.json {
                out!("{}", output::describe_credits(&all, &config))?;
            }
            all.check.allowed
        }
    };
    if args.exit_code && !allowed {
        return Ok(ExitCode::from(output::REFUSED));
    }
    Ok(ExitCode::SUCCESS)
}
