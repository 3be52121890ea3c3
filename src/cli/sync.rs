//! `meterline sync` (and `meterline --sync`): report unreported usage to Stripe, headless.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use super::output::{print_json, thousands};
use super::{Context, output};
use crate::billing::count;
use crate::stripe::{self, ApiKey, SyncOptions, SyncPreview, SyncProgress, SyncReport};
use crate::{Error, Result};

#[derive(Debug, Default, clap::Args)]
pub struct Args {
    /// List what would be sent; send nothing, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the summary as one line of JSON.
    #[arg(long, help = super::JSON_HELP)]
    pub json: bool,
    /// Send at most N meter events (reports in aggregate mode, else usage events), oldest first.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
    /// Also resend events that Stripe refused within the last hour.
    #[arg(long)]
    pub retry_failed: bool,
}

pub fn exec(ctx: &Context, args: Args) -> Result<ExitCode> {
    let config = ctx.config()?;
    // Before any network: the API base must be usable. The run always uses the real clock:
    // `--now` and METERLINE_NOW never reach it (expiry marks are permanent).
    let base = stripe::api_base(&config)?;
    let mut options = SyncOptions {
        dry_run: args.dry_run,
        limit: args.limit,
        retry_failed: args.retry_failed,
        ..SyncOptions::default()
    };
    if args.dry_run {
        // A preview sends nothing, so it needs no key; a malformed one is still refused.
        let key = match ApiKey::from_env() {
            Ok(key) => Some(key),
            Err(Error::MissingApiKey) => None,
            Err(e) => return Err(e),
        };
        let store = ctx.store()?;
        let preview = stripe::sync::preview_with(&store, &config, key.as_ref(), &options)?;
        if args.json {
            return print_json(&preview);
        }
        out!("{}", describe_preview(&preview, key.is_some()))?;
        return Ok(ExitCode::SUCCESS);
    }
    let key = ApiKey::from_env()?;
    // The first pause between retries, for tests and impatient operators.
    options.backoff = crate::config::millis_from_env("METERLINE_STRIPE_BACKOFF_MS")?;
    let cancel = super::signals::cancel_on_signals()?;
    let mut progress = ProgressOutput::new(args.json, sent_unit(&config));
    let report = stripe::run(&ctx.db, &config, &key, &options, &cancel, &mut |p| {
        progress.update(p)
    });
    // Clear the bar before any message, error or not.
    progress.finish();
    let report = match report {
        Ok(report) => report,
        Err(error) => {
            if args.json {
                // The reason goes in the JSON too; the message still goes to stderr.
                print_json(&serde_json::json!({
                    "error": error.to_string(),
                    "exit_code": error.exit_code(),
                }))?;
            }
            return Err(error);
        }
    };
    if args.json {
        print_json(&report)?;
    } else {
        out!("{}", describe_report(&report, base.host()))?;
    }
    if report.stopped.as_deref() == Some(stripe::sync::CANCELLED) {
        eprintln!(
            "sync cancelled: requests in flight finished and were recorded; run sync again to \
             send the rest"
        );
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
    Lines { last: Instant, unit: &'static str },
}

/// What a run sends to Stripe, as its progress counts them: in aggregate mode reports (each
/// one meter event for many of ours), else meter events.
fn sent_unit(config: &crate::config::Config) -> &'static str {
    match config.stripe.report {
        crate::config::ReportMode::Aggregate => "reports",
        crate::config::ReportMode::PerEvent => "meter events",
    }
}

impl ProgressOutput {
    fn new(json: bool, unit: &'static str) -> Self {
        if std::io::stderr().is_terminal() && !json {
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template(&format!(
                    "{{bar:30}} {{pos}}/{{len}} {unit}  {{per_sec}}  eta {{eta}}  {{msg}}"
                ))
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            ProgressOutput::Bar(bar)
        } else {
            ProgressOutput::Lines {
                last: Instant::now(),
                unit,
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
            ProgressOutput::Lines { last, unit } => {
                if last.elapsed() >= Duration::from_secs(5) {
                    eprintln!("{}", progress_line(p, unit));
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

fn progress_line(p: &SyncProgress, unit: &str) -> String {
    format!(
        "sync: {}/{} {unit} sent (accepted {}, duplicates {}, failed {})",
        p.attempted, p.total, p.accepted, p.duplicates, p.failed
    )
}

fn mode(live: bool) -> &'static str {
    if live { "LIVE mode" } else { "test mode" }
}

fn describe_preview(p: &SyncPreview, has_key: bool) -> String {
    let mode = if has_key {
        mode(p.live)
    } else {
        "no STRIPE_API_KEY set: a real sync needs it"
    };
    // Units add up only within one meter: requests, tokens and users do not.
    let one_meter = p.units_by_meter.len() <= 1;
    let mut out = if p.mode == "aggregate" {
        let units = if one_meter {
            format!("{} units, ", thousands(p.units))
        } else {
            String::new()
        };
        format!(
            "dry run: would send {} ({units}{}) to {} ({mode}); nothing sent, nothing changed\n",
            count(p.requests as i64, "report"),
            count(p.events as i64, "event"),
            p.api_host,
        )
    } else {
        format!(
            "dry run: would send {} of {} to {} ({mode}); nothing sent, nothing changed\n",
            count(p.events as i64, "event"),
            count(p.customers as i64, "customer"),
            p.api_host,
        )
    };
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
    if !one_meter {
        let totals: Vec<String> = p
            .units_by_meter
            .iter()
            .map(|(meter, units)| format!("{meter} {}", thousands(*units)))
            .collect();
        out.push_str(&format!("units by meter: {}\n", totals.join(" · ")));
    }
    out.push_str(&notes(
        p.unmapped,
        p.expired,
        p.future,
        p.failed_waiting,
        true,
    ));
    out.push_str(&doubt_notes(p.in_doubt, p.expiring));
    out
}

/// The lines about events held in doubt and events close to Stripe's window.
fn doubt_notes(in_doubt: u64, expiring: u64) -> String {
    let mut out = String::new();
    if in_doubt > 0 {
        out.push_str(&format!(
            "in doubt: {} sent over 23 hours ago without an answer; held (a resend could \
             bill twice) until `meterline reconcile` checks Stripe's total\n",
            count(in_doubt as i64, "event")
        ));
    }
    if expiring > 0 {
        out.push_str(&format!(
            "expiring: {}, close to Stripe's 35-day window; sync soon or the usage is lost\n",
            count(expiring as i64, "unreported event")
        ));
    }
    out
}

fn describe_report(r: &SyncReport, host: &str) -> String {
    let unit_noun = if r.mode == "aggregate" {
        "report"
    } else {
        "event"
    };
    let unit = format!("{unit_noun}s");
    let mut out = format!(
        "sync to {host} ({unit}): {} attempted, {} reached Stripe, {} accepted, {} already there, {} \
         refused in {:.1} s\n",
        thousands(r.attempted as i64),
        thousands(r.reached as i64),
        thousands(r.accepted as i64),
        thousands(r.duplicates as i64),
        thousands(r.failed as i64),
        r.duration_ms as f64 / 1000.0
    );
    if r.failed > 0 {
        out.push_str(&format!(
            "refused: {}; Stripe's message is in usage_events.stripe_error. They are retried \
             after an hour, or now with --retry-failed\n",
            count(r.failed as i64, unit_noun)
        ));
    }
    if r.undelivered > 0 {
        out.push_str(&format!(
            "undelivered: {} hit transient errors on every attempt; run sync again\n",
            count(r.undelivered as i64, unit_noun)
        ));
    }
    if r.reached < r.attempted {
        out.push_str(&format!(
            "not connected: {} never reached Stripe ({})\n",
            count((r.attempted - r.reached) as i64, unit_noun),
            r.error.as_deref().unwrap_or("could not connect")
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
    if r.mode == "aggregate" {
        out.push_str(&format!(
            "reported: {}\n",
            count(r.events_reported as i64, "usage event")
        ));
    }
    out.push_str(&doubt_notes(r.in_doubt, r.expiring));
    out.push_str(&format!(
        "remaining: {} of mapped customers still to report\n",
        count(r.remaining as i64, "event")
    ));
    out
}

/// The lines about events that were not sent, and why.
fn notes(unmapped: u64, expired: u64, future: u64, failed_waiting: u64, dry: bool) -> String {
    let mut out = String::new();
    if unmapped > 0 {
        out.push_str(&format!(
            "unmapped: {} of customers without a Stripe customer id, kept pending; map them \
             with `meterline customer set-stripe ID cus_...`\n",
            count(unmapped as i64, "event")
        ));
    }
    if expired > 0 {
        let verb = if dry { "would be marked" } else { "marked" };
        out.push_str(&format!(
            "expired: {} older than Stripe's 35-day window, which cannot be sent; {verb} \
             expired (kept in the database)\n",
            count(expired as i64, "event")
        ));
    }
    if future > 0 {
        out.push_str(&format!(
            "future: {} dated more than 5 minutes ahead, sent when their time comes\n",
            count(future as i64, "event")
        ));
    }
    if failed_waiting > 0 {
        out.push_str(&format!(
            "waiting: {} refused by Stripe in the last hour, not resent yet (--retry-failed resends them)\n",
            count(failed_waiting as i64, "event")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// In aggregate mode the run's total is of reports, not of our events.
    #[test]
    fn progress_counts_what_is_sent_in_its_own_unit() {
        let p = SyncProgress {
            total: 8,
            ..SyncProgress::default()
        };
        assert_eq!(
            progress_line(&p, "reports"),
            "sync: 0/8 reports sent (accepted 0, duplicates 0, failed 0)"
        );
        let config = crate::config::Config::parse(crate::config::INIT_PLANS, "init").unwrap();
        assert_eq!(sent_unit(&config), "reports");
    }
}
