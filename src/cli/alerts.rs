//! `meterline alerts`: deliver pending usage alerts once (for cron). Exit 0 when everything
//! due was delivered, 1 when some attempt failed (it is retried by a later run).

use std::process::ExitCode;

use super::Context;
use super::output::print_json;
use crate::Result;
use crate::alerts::{self, RunOptions, RunReport};
use crate::sanitize::sanitize;

#[derive(Debug, Default, clap::Args)]
pub struct Args {
    /// List what is due; send nothing, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the summary as one line of JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn exec(ctx: &Context, args: Args) -> Result<ExitCode> {
    let config = ctx.config()?;
    if args.dry_run {
        let preview = alerts::preview(&ctx.store()?, &config)?;
        if args.json {
            return print_json(&preview);
        }
        for row in &preview.due {
            outln!(
                "{}  {}  {}  -> {}{}",
                row.id,
                sanitize(&row.customer),
                row.level,
                row.target,
                if row.configured {
                    String::new()
                } else {
                    " (no longer in plans.toml: not sent)".into()
                }
            )?;
        }
        outln!(
            "{} due now; {} pending in all, {} delivered, {} failed. Nothing was sent.",
            preview.due.len(),
            preview.totals.pending,
            preview.totals.delivered,
            preview.totals.failed
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    let options = RunOptions::from_env()?;
    let stop = super::signals::cancel_on_signals()?;
    let mut store = ctx.existing_store()?;
    let report = alerts::run(&mut store, &config, &options, &stop)?;
    for line in &report.errors {
        eprintln!("alert not delivered: {line}");
    }
    if args.json {
        print_json(&report)?;
    } else {
        outln!("{}", describe(&report))?;
    }
    Ok(if report.all_delivered() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn describe(report: &RunReport) -> String {
    let mut text = format!(
        "alerts: {} attempted, {} delivered, {} to retry, {} failed for good",
        report.attempted, report.delivered, report.retrying, report.failed
    );
    if report.unconfigured > 0 {
        text.push_str(&format!(
            "; {} for destinations no longer in plans.toml (left pending)",
            report.unconfigured
        ));
    }
    text.push_str(&format!(
        ". Now {} pending, {} failed.",
        report.totals.pending, report.totals.failed
    ));
    text
}
