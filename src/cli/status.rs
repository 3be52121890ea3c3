use std::process::ExitCode;

use super::{Context, output};
use crate::Result;
use crate::sanitize::sanitize;
use crate::store::Backlog;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long, help = super::JSON_HELP)]
    pub json: bool,
}

pub fn exec(ctx: &Context, args: Args) -> Result<ExitCode> {
    let config = ctx.config()?;
    let store = ctx.store()?;
    if args.json {
        return output::print_json(&store.status_entries(&config, ctx.now)?);
    }
    let rows = store.status(&config, ctx.now)?;
    // With [[meters]], each row is the customer's meter nearest its limit: named.
    let meter_width = if config.implicit_meter().is_none() {
        config
            .meters
            .iter()
            .map(|m| m.id.chars().count())
            .max()
            .unwrap_or(0)
            .max("METER".len())
            + 1
    } else {
        0
    };
    outln!(
        "{:<24} {:<10} {:<meter_width$}{:>24} {:>8}  {:<18} {:>4} {:>10} {:>12}",
        "CUSTOMER",
        "PLAN",
        if config.implicit_meter().is_none() {
            "METER"
        } else {
            ""
        },
        "USED / LIMIT",
        "%",
        "LEVEL",
        "DAYS",
        "UNREPORTED",
        "OVERAGE"
    )?;
    // The dashboard's counts: events past Stripe's window are expired, marked or not.
    let backlog = store.stripe_backlog(ctx.now)?;
    let mut totals = Backlog::default();
    let mut unmapped = 0;
    for row in &rows {
        let b = backlog
            .get(&row.check.customer)
            .copied()
            .unwrap_or_default();
        totals += b;
        if row.stripe_customer_id.is_none() {
            unmapped += b.unreported;
        }
        // Every meter's overage this period, each group's units at its rate: `check`'s
        // `overage_total`.
        let overage = meterline_core::MeteredCheck::new(row.meters.clone())
            .map_or_else(|| row.check.overage_amount, |all| all.overage_total);
        outln!(
            "{:<24} {:<10} {:<meter_width$}{:>24} {:>8}  {:<18} {:>4} {:>10} {:>12}",
            sanitize(&row.check.customer),
            sanitize(&row.check.plan),
            row.meter.as_deref().map(sanitize).unwrap_or_default(),
            output::used_of_limit(&row.check),
            output::percent(&row.check),
            output::level(&row.check),
            row.days_left,
            output::thousands(b.unreported),
            config.money(overage),
        )?;
    }
    outln!("{}", crate::billing::count(rows.len() as i64, "customer"))?;
    outln!("{}", stripe_line(&store, totals, unmapped)?)?;
    if let Some(line) = doubt_line(&store, &config, ctx.now)? {
        outln!("{line}")?;
    }
    Ok(ExitCode::SUCCESS)
}

/// One line on the Stripe side: what is still to report and how the last sync went.
fn stripe_line(store: &crate::Store, totals: Backlog, unmapped: i64) -> Result<String> {
    let mut line = format!(
        "stripe: {} unreported ({} failed, {} unmapped), {} expired",
        output::thousands(totals.unreported),
        output::thousands(totals.failed),
        output::thousands(unmapped),
        output::thousands(totals.expired)
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

/// Events held in doubt and events close to Stripe's 35-day window, when there are any.
fn doubt_line(
    store: &crate::Store,
    config: &crate::Config,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Option<String>> {
    let in_doubt = store.in_doubt()?.events;
    let expiring = store.count_expiring(now, config.stripe.expiry_warning_days)?;
    if in_doubt == 0 && expiring == 0 {
        return Ok(None);
    }
    Ok(Some(format!(
        "stripe: {} in doubt (sent over 23 h ago, unanswered: run meterline reconcile), {} \
         expiring (within {} days of Stripe's 35-day window: sync soon)",
        output::thousands(in_doubt as i64),
        output::thousands(expiring as i64),
        config.stripe.expiry_warning_days
    )))
}
