use std::process::ExitCode;

use super::{Context, output};
use crate::Result;

#[derive(Debug, clap::Args)]
pub struct Args {
    pub customer: String,
    #[arg(long)]
    pub json: bool,
    /// Exit 3 when the customer may not use more (`allowed` is false), for shell callers.
    #[arg(long)]
    pub exit_code: bool,
}

pub fn exec(ctx: &Context, args: Args) -> Result<ExitCode> {
    let config = ctx.config()?;
    let check = ctx.store()?.check(&config, &args.customer, ctx.now)?;
    if args.json {
        output::print_json(&check)?;
    } else {
        out!("{}", output::describe(&check, &config.billing.currency))?;
    }
    if args.exit_code && !check.allowed {
        return Ok(ExitCode::from(output::REFUSED));
    }
    Ok(ExitCode::SUCCESS)
}
