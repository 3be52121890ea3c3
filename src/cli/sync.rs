//! `meterline sync` (and `meterline --sync`): report unreported usage to Stripe, headless.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use super::output::{print_json, thousands};
use super::{Context, output};
use crate::Result;
use crate::stripe::{self, ApiKey, SyncOptions, SyncPreview, SyncProgress, SyncReport};

#[derive(Debug, Default, clap::Args)]
pub struct Args {
    /// List what would be sent; send nothing, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the summary as one line of JSON.
    #[arg(long)]
    pub json: bool,
    /// Send at most N events, oldest first.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
    /// Also resend events that Stripe refused within the last hour.
    #[arg(long)]
    pub retry_failed: bool,
}

pub fn exec(ctx: &Context, args: Args) -> Result<ExitCode> {
    let config = ctx.config()?;
    // Before any network: the key and the API base must be usable.
    let key = ApiKey::from_env()?;
    stripe::api_base(&config)?;
    let options = SyncOptions {
        dry_run: args.dry_run,
        limit: args.limit,
        retry_failed: args.retry_failed,
    };
    if args.dry_run {
        let store = ctx.store()?;
        let preview = stripe::sync::preview_with(&store, &config, &key, &options, ctx.now)?;
        if args.json {
            return print_json(&preview);
        }
        out!("{}", describe_preview(&preview))?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut progress = ProgressOutput::new(args.json);
    let cancel = AtomicBool::new(false);
    let report = stripe::run(
        &ctx.db,
        &config,
        &key,
        &options,
        ctx.now,
        &cancel,
        &mut |p| progress.update(p),
    );
    // Clear the bar before any message, error or not.
    progress.finish();
    let report = report?;
    if args.json {
        print_json(&report)?;
    } else {
        out!("{}", describe_report(&report, &stripe::api_base(&config)?))?;
    }
    Ok(if report.all_delivered() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// A progress bar on a terminal; otherwise a plain line every few seconds (cron logs).
enum ProgressOutput {
    Bar(indicatif::ProgressBar),
    Lines { last: Instant },
}

impl ProgressOutput {
    fn new(json: bool) -> Self {
        if std::io::stderr().is_terminal() && !json {
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:30} {pos}/{len} events  {per_sec}  eta {eta}  {msg}",
                )
                .expect("the template is valid"),
            );
            ProgressOutput::Bar(bar)
        } else {
            ProgressOutput::Lines {
                last: Instant::now(),
            }
        }
    }

    fn update(&mut self, p: &SyncProgress) {
        match self {
            ProgressOutput::Bar(bar) => {
                bar.set_length(p.total);
                bar.set_position(p.attempted);
                bar.set_message(format!(
                    "accepted {}  duplicates {}  failed {}",
                    p.accepted, p.duplicates, p.failed
                ));
            }
            ProgressOutput::Lines { last } => {
                if last.elapsed() >= Duration::from_secs(5) {
                    eprintln!("{}", progress_line(p));
                    *last = Instant::now();
                }
            }
        }
    }

    fn finish(self) {
        match self {
            ProgressOutput::Bar(bar) => bar.finish_and_clear(),
            ProgressOutput::Lines { .. } => {}
        }
    }
}

fn progress_line(p: &SyncProgress) -> String {
    format!(
        "sync: {}/{} events sent (accepted {}, duplicates {}, failed {})",
        p.attempted, p.total, p.accepted, p.duplicates, p.failed
    )
}

fn mode(live: bool) -> &'static str {
    if live { "LIVE mode" } else { "test mode" }
}

fn describe_preview(p: &SyncPreview) -> String {
    let mut out = format!(
        "dry run: would send {} events of {} customers to {} ({}); nothing sent, nothing changed\n",
        thousands(p.events as i64),
        p.customers,
        p.api_host,
        mode(p.live)
    );
    if !p.groups.is_empty() {
        out.push_str(&format!(
            "{:<24} {:<22} {:<26} {:>8} {:>12}  {:<10} {:<10}\n",
            "CUSTOMER", "STRIPE CUSTOMER", "METER EVENT", "EVENTS", "UNITS", "FROM", "TO"
        ));
    }
    for g in &p.groups {
        out.push_str(&format!(
            "{:<24} {:<22} {:<26} {:>8} {:>12}  {:<10} {:<10}\n",
            g.customer_id,
            g.stripe_customer_id,
            g.event_name,
            thousands(g.events as i64),
            thousands(g.units),
            output::day(g.first),
            output::day(g.last)
        ));
    }
    out.push_str(&notes(
        p.unmapped,
        p.expired,
        p.future,
        p.failed_waiting,
        true,
    ));
    out
}

fn describe_report(r: &SyncReport, api_base: &str) -> String {
    let host = stripe::api_host(api_base).unwrap_or_default();
    let mut out = format!(
        "sync to {host}: {} sent, {} accepted, {} already there, {} refused in {:.1} s\n",
        thousands(r.attempted as i64),
        thousands(r.accepted as i64),
        thousands(r.duplicates as i64),
        thousands(r.failed as i64),
        r.duration_ms as f64 / 1000.0
    );
    if r.failed > 0 {
        out.push_str(&format!(
            "refused: {} events; Stripe's message is in usage_events.stripe_error. They are retried \
             after an hour, or now with --retry-failed\n",
            thousands(r.failed as i64)
        ));
    }
    if r.undelivered > 0 {
        out.push_str(&format!(
            "undelivered: {} events hit transient errors on every attempt; run sync again\n",
            thousands(r.undelivered as i64)
        ));
    }
    if let Some(reason) = &r.stopped {
        out.push_str(&format!("stopped early: {reason}\n"));
    }
    out.push_str(&notes(
        r.unmapped,
        r.expired,
        r.future,
        r.failed_waiting,
        false,
    ));
    out.push_str(&format!(
        "remaining: {} events of mapped customers still to report\n",
        thousands(r.remaining as i64)
    ));
    out
}

/// The lines about events that were not sent, and why.
fn notes(unmapped: u64, expired: u64, future: u64, failed_waiting: u64, dry: bool) -> String {
    let mut out = String::new();
    if unmapped > 0 {
        out.push_str(&format!(
            "unmapped: {} events of customers without a Stripe customer id are kept pending; \
             map them with `meterline customer set-stripe ID cus_...`\n",
            thousands(unmapped as i64)
        ));
    }
    if expired > 0 {
        let verb = if dry { "would be marked" } else { "marked" };
        out.push_str(&format!(
            "expired: {} events are older than Stripe's 35-day window and cannot be sent; {verb} \
             expired (kept in the database)\n",
            thousands(expired as i64)
        ));
    }
    if future > 0 {
        out.push_str(&format!(
            "future: {} events are dated more than 5 minutes ahead; they go out when their time comes\n",
            thousands(future as i64)
        ));
    }
    if failed_waiting > 0 {
        out.push_str(&format!(
            "waiting: {} events refused by Stripe in the last hour are not resent yet (--retry-failed resends them)\n",
            thousands(failed_waiting as i64)
        ));
    }
    out
}
