use std::process::ExitCode;

use super::{Context, output};
use crate::Result;

#[derive(Debug, clap::Args)]
pub struct Args {
    pub customer: String,
    #[arg(long)]
    pub json: bool,
}

pub fn exec(ctx: &Context, args: Args) -> Result<ExitCode> {
    let config = ctx.config()?;
    let check = ctx.store()?.check(&config, &args.customer, ctx.now)?;
    if args.json {
        return output::print_json(&check);
    }
    out!("{}", output::describe(&check, &config.billing.currency))?;
    Ok(ExitCode::SUCCESS)
}
