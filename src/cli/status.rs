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
            output::level(&row.check),
            row.days_left,
            output::thousands(row.unreported),
        );
    }
    println!("{} customers", rows.len());
    println!("{}", stripe_line(&ctx.store()?, ctx.now)?);
    Ok(ExitCode::SUCCESS)
}

/// One line on the Stripe side: what is still to report and how the last sync went.
fn stripe_line(store: &crate::Store, now: chrono::DateTime<chrono::Utc>) -> Result<String> {
    let counts = store.stripe_counts(now)?;
    let mut line = format!(
        "stripe: {} unreported ({} failed, {} unmapped), {} expired",
        output::thousands(counts.unreported as i64),
        output::thousands(counts.failed as i64),
        output::thousands(counts.unmapped as i64),
        output::thousands(counts.expired as i64)
    );
    match store.last_sync_run()? {
        None => line.push_str("; never synced (meterline sync)"),
        Some(run) => line.push_str(&format!(
            "; last sync {} {}: {} accepted, {} already there, {} refused",
            run.started_at, run.outcome, run.accepted, run.duplicates, run.failed
        )),
    }
    Ok(line)
}
