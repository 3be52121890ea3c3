use std::process::ExitCode;

use super::{Context, output};
use crate::Result;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long)]
    pub json: bool,
}

pub fn exec(ctx: &Context, args: Args) -> Result<ExitCode> {
    let config = ctx.config()?;
    let rows = ctx.store()?.status(&config, ctx.now)?;
    if args.json {
        let checks: Vec<_> = rows.iter().map(|r| &r.check).collect();
        return output::print_json(&checks);
    }
    println!(
        "{:<24} {:<10} {:>24} {:>8}  {:<9} {:>4} {:>10}",
        "CUSTOMER", "PLAN", "USED / LIMIT", "%", "LEVEL", "DAYS", "UNREPORTED"
    );
    for row in &rows {
        println!(
            "{:<24} {:<10} {:>24} {:>8}  {:<9} {:>4} {:>10}",
            row.check.customer,
            row.check.plan,
            output::used_of_limit(&row.check),
            output::percent(&row.check),
            row.check.level.as_str(),
            row.days_left,
            output::thousands(row.unreported),
        );
    }
    println!("{} customers", rows.len());
    Ok(ExitCode::SUCCESS)
}
