//! `meterline doctor`: which files are in use and why, and whether each part is healthy —
//! every problem with the command that fixes it. Reads only; never creates or changes a file.

use std::process::ExitCode;

use serde::Serialize;

use super::{Context, output};
use crate::sanitize::sanitize;
use crate::store::LOCK_STALE_AFTER_SECS;
use crate::stripe::ApiKey;
use crate::{Config, Error, Result, Store};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long, help = super::JSON_HELP)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Verdict {
    Ok,
    Info,
    Problem,
}

#[derive(Debug, Serialize)]
struct Finding {
    check: &'static str,
    verdict: Verdict,
    detail: String,
    /// What to run or change; only for problems.
    #[serde(skip_serializing_if = "Option::is_none")]
    fix: Option<String>,
}

#[derive(Default)]
struct Report(Vec<Finding>);

impl Report {
    fn ok(&mut self, check: &'static str, detail: String) {
        self.push(check, Verdict::Ok, detail, None);
    }
    fn info(&mut self, check: &'static str, detail: String) {
        self.push(check, Verdict::Info, detail, None);
    }
    fn problem(&mut self, check: &'static str, detail: String, fix: impl Into<String>) {
        self.push(check, Verdict::Problem, detail, Some(fix.into()));
    }
    fn push(&mut self, check: &'static str, verdict: Verdict, detail: String, fix: Option<String>) {
        self.0.push(Finding {
            check,
            verdict,
            detail,
            fix,
        });
    }
}

pub fn exec(ctx: &Context, args: Args) -> Result<ExitCode> {
    let mut report = Report::default();
    let config = check_plans(ctx, &mut report);
    if let Some(store) = check_database(ctx, &mut report) {
        if let Some(config) = &config {
            check_customers(&store, config, &mut report)?;
            check_meter_drift(&store, config, &mut report)?;
        }
        check_credits(&store, &mut report)?;
        check_reservations(ctx, &store, &mut report)?;
        check_stripe(ctx, config.as_ref(), &store, &mut report)?;
    }
    let healthy = report.0.iter().all(|f| f.verdict != Verdict::Problem);
    if args.json {
        output::print_json(&report.0)?;
    } else {
        for f in &report.0 {
            let mark = match f.verdict {
                Verdict::Ok => "✓",
                Verdict::Info => "·",
                Verdict::Problem => "✗",
            };
            outln!("{mark} {:<9} {}", f.check, f.detail)?;
            if let Some(fix) = &f.fix {
                outln!("  {:<9} fix: {fix}", "")?;
            }
        }
        let problems = report
            .0
            .iter()
            .filter(|f| f.verdict == Verdict::Problem)
            .count();
        outln!(
            "{}",
            if healthy {
                "healthy".to_string()
            } else {
                format!(
                    "{} found",
                    crate::billing::count(problems as i64, "problem")
                )
            }
        )?;
    }
    Ok(if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn shown(path: &std::path::Path) -> String {
    crate::store::shown_db(path)
}

fn check_plans(ctx: &Context, report: &mut Report) -> Option<Config> {
    let place = format!("{} ({})", shown(&ctx.plans), ctx.plans_reason);
    if !ctx.plans.exists() {
        report.problem(
            "plans",
            format!("{place}: no such file"),
            "write the example with `meterline init` (or pass --plans / METERLINE_PLANS)",
        );
        return None;
    }
    match ctx.config() {
        Ok(config) => {
            report.ok(
                "plans",
                format!("{place}: valid, {} plans", config.plans.len()),
            );
            Some(config)
        }
        Err(e) => {
            report.problem(
                "plans",
                format!("{place}: {}", sanitize(&e.to_string())),
                "correct the file; `meterline plans` shows the same message",
            );
            None
        }
    }
}

fn check_database(ctx: &Context, report: &mut Report) -> Option<Store> {
    let place = shown(&ctx.db);
    let store = match ctx.store() {
        Ok(store) => store,
        Err(e) => {
            let fix = match e {
                Error::NoDatabase => {
                    "create it with `meterline customer add ID` or `meterline demo`"
                }
                Error::OlderSchema { .. } => "run `meterline upgrade`",
                Error::Locked => "another process holds a write lock; try again",
                // A URL that does not parse, or a server that does not answer: no backup helps.
                Error::InvalidInput(_) => "correct the database URL (--db / METERLINE_DB)",
                Error::Unavailable(_) => {
                    "start the database server or check the URL's host and port; run again"
                }
                _ => "restore the last backup (docs/backup.md)",
            };
            report.problem(
                "database",
                format!("{place}: {}", sanitize(&e.to_string())),
                fix,
            );
            return None;
        }
    };
    match store.health() {
        Ok(health) => {
            let detail = match &health.journal_mode {
                Some(mode) => format!(
                    "{place}: schema version {}, journal mode {mode}, quick_check {}",
                    health.schema_version, health.quick_check
                ),
                // A server: its name and version say more than a journal it keeps itself.
                None => format!(
                    "{place}: {}, schema version {}",
                    health.engine, health.schema_version
                ),
            };
            if health.quick_check != "ok" {
                report.problem(
                    "database",
                    detail,
                    "stop the writers and restore the last backup (docs/backup.md)",
                );
            } else if health
                .journal_mode
                .as_deref()
                .is_some_and(|mode| mode != "wal")
            {
                report.problem(
                    "database",
                    detail,
                    "run any write command (e.g. `meterline upgrade`): meterline switches the file to WAL",
                );
            } else {
                report.ok("database", detail);
            }
            match health.sync_lock {
                Some(lock) if lock.heartbeat_age_secs > LOCK_STALE_AFTER_SECS => report.info(
                    "sync lock",
                    format!(
                        "left by a sync that stopped (pid {} on {}, {} s ago); the next sync takes it over",
                        lock.pid,
                        sanitize(&lock.host),
                        lock.heartbeat_age_secs
                    ),
                ),
                Some(lock) => report.info(
                    "sync lock",
                    format!(
                        "a sync is running (pid {} on {}, since {})",
                        lock.pid,
                        sanitize(&lock.host),
                        lock.acquired_at
                    ),
                ),
                None => report.ok("sync lock", "free".into()),
            }
        }
        Err(e) => report.problem(
            "database",
            format!("{place}: {}", sanitize(&e.to_string())),
            "stop the writers and restore the last backup (docs/backup.md)",
        ),
    }
    Some(store)
}

fn check_customers(store: &Store, config: &Config, report: &mut Report) -> Result<()> {
    let customers = store.customers()?;
    let missing = store.customers_on_missing_plans(config)?;
    if missing.is_empty() {
        report.ok(
            "customers",
            format!(
                "{}, every plan defined",
                crate::billing::count(customers.len() as i64, "customer")
            ),
        );
    } else {
        let names: Vec<String> = missing
            .iter()
            .map(|(c, p)| format!("{} (plan \"{}\")", sanitize(c), sanitize(p)))
            .collect();
        report.problem(
            "customers",
            format!(
                "on plans plans.toml no longer defines: {}",
                names.join(", ")
            ),
            "put the plans back, or `meterline customer set-plan CUSTOMER PLAN`",
        );
    }
    Ok(())
}

/// Every customer's credit balance equal to the sum of its ledger.
fn check_credits(store: &Store, report: &mut Report) -> Result<()> {
    let ledger = store.check_ledger()?;
    if ledger.mismatches.is_empty() {
        report.ok(
            "credits",
            format!(
                "{} and {} ledger entries, every balance the sum of its ledger",
                crate::billing::count(ledger.grants as i64, "grant"),
                crate::billing::thousands(ledger.entries as i64)
            ),
        );
    }
    for mismatch in ledger.mismatches {
        report.problem(
            "credits",
            mismatch,
            "the ledger was changed outside meterline: restore the last backup (docs/backup.md)",
        );
    }
    Ok(())
}

/// Reservations not ended, if any: a lapsed one holds nothing, but its key (or id) stays
/// taken until it is settled or released.
fn check_reservations(ctx: &Context, store: &Store, report: &mut Report) -> Result<()> {
    let (held, lapsed) = store.open_reservations(ctx.now)?;
    if held + lapsed == 0 {
        return Ok(());
    }
    let mut detail = format!("{} held", crate::billing::count(held, "reservation"));
    if lapsed > 0 {
        detail.push_str(&format!(
            ", {} lapsed without a settle or a release (they hold nothing; each keeps its key \
             until `meterline settle` or `release`)",
            crate::billing::thousands(lapsed)
        ));
    }
    report.info("reservations", detail);
    Ok(())
}

/// Meters whose counting changed under the database: an aggregation changed mid-period, or a
/// meter removed with events still unsent.
fn check_meter_drift(store: &Store, config: &Config, report: &mut Report) -> Result<()> {
    let drift = store.meter_drift(config)?;
    if drift.is_empty() {
        report.ok(
            "counting",
            "every counter counts as plans.toml says".to_string(),
        );
        return Ok(());
    }
    for sentence in drift.sentences(config) {
        report.problem(
            "counting",
            sanitize(&sentence).into_owned(),
            "see README.md, \"Changing meters\"",
        );
    }
    Ok(())
}

fn check_stripe(
    ctx: &Context,
    config: Option<&Config>,
    store: &Store,
    report: &mut Report,
) -> Result<()> {
    let counts = store.stripe_counts(ctx.now)?;
    match ApiKey::from_env() {
        Ok(key) => {
            let kind = if key.is_live() { "live" } else { "test" };
            report.ok("stripe", format!("STRIPE_API_KEY is a {kind} key"));
            if let Some(config) = config {
                check_meters(config, store, &key, report);
            }
        }
        Err(Error::MissingApiKey) if counts.deliverable > 0 => report.problem(
            "stripe",
            format!(
                "STRIPE_API_KEY is not set, with {} to report",
                crate::billing::count(counts.deliverable as i64, "event")
            ),
            "set STRIPE_API_KEY for `meterline sync` (docs/sync.md)",
        ),
        Err(Error::MissingApiKey) => report.info(
            "stripe",
            "STRIPE_API_KEY is not set (needed only to sync)".into(),
        ),
        Err(e) => report.problem(
            "stripe",
            sanitize(&e.to_string()).into_owned(),
            "copy the key again from Dashboard -> Developers -> API keys",
        ),
    }
    report.info(
        "backlog",
        format!(
            "{} unreported events, {} sendable now, {} expired (past Stripe's 35-day window)",
            output::thousands(counts.unreported as i64),
            output::thousands(counts.deliverable as i64),
            output::thousands(counts.expired as i64)
        ),
    );
    if let Some(config) = config {
        let checks = store.stripe_checks(ctx.now, config.stripe.expiry_warning_days)?;
        if checks.expiring > 0 {
            report.problem(
                "expiring",
                format!(
                    "{} within {} of Stripe's 35-day window",
                    crate::billing::count(checks.expiring as i64, "unreported event"),
                    crate::billing::count(config.stripe.expiry_warning_days.into(), "day")
                ),
                "run `meterline sync` now; past the window they can never be billed",
            );
        }
        if checks.in_doubt > 0 {
            report.problem(
                "in doubt",
                format!(
                    "{} sent over 23 hours ago without an answer",
                    crate::billing::count(checks.in_doubt as i64, "event")
                ),
                "`meterline reconcile` settles them against Stripe's totals (docs/sync.md)",
            );
        }
    }
    if counts.failed > 0 {
        report.problem(
            "failed",
            format!(
                "{} refused by Stripe",
                crate::billing::count(counts.failed as i64, "event")
            ),
            "read the reasons in the dashboard's events view (2), correct them, then `meterline sync --retry-failed`",
        );
    }
    if counts.unmapped > 0 {
        report.problem(
            "unmapped",
            format!(
                "{} of customers without a Stripe customer id",
                crate::billing::count(counts.unmapped as i64, "event")
            ),
            "`meterline customer set-stripe CUSTOMER cus_...` for each (see `meterline customer list`)",
        );
    }
    Ok(())
}

/// With a key: does Stripe have an active meter for every meter (or, without `[[meters]]`,
/// every plan's event name), aggregating by the formula it needs (docs/sync.md)? For a
/// `stripe_event` pattern: every name the groups counted so far make.
fn check_meters(config: &Config, store: &Store, key: &ApiKey, report: &mut Report) {
    use crate::stripe::reconcile::SetupProblem;
    let setups = match crate::stripe::reconcile::meter_setup(config, store, key, None) {
        Ok(setups) => setups,
        Err(e) => {
            return report.problem(
                "meters",
                format!(
                    "could not read Stripe's meters: {}",
                    sanitize(&e.to_string())
                ),
                "check the key and the network; `meterline sync --dry-run` shows the API host",
            );
        }
    };
    let per_plan = setups.iter().all(|s| s.who.starts_with("plan "));
    let missing: Vec<String> = setups
        .iter()
        .filter(|s| s.problem == Some(SetupProblem::Missing))
        .filter_map(|s| s.describe())
        .collect();
    if !missing.is_empty() {
        report.problem(
            "meters",
            format!(
                "Stripe has no active meter for: {}",
                sanitize(&missing.join("; "))
            ),
            "create the meter in Stripe (Billing -> Meters) with that event name (docs/sync.md \
             lists the settings each meter needs), or fix meter_event / stripe_event in plans.toml",
        );
    }
    for setup in setups
        .iter()
        .filter(|s| s.problem.is_some() && s.problem != Some(SetupProblem::Missing))
    {
        let fix = match &setup.problem {
            Some(SetupProblem::NotAName) => format!(
                "a group's values fill stripe_event \"{}\" with letters, digits, '_', '-', \
                 '.', ':' only (at most 100 characters), or give every event the value: usage \
                 reported to \"{}\" stays unsent (docs/sync.md, \"Prices per model\")",
                setup.pattern.as_deref().unwrap_or_default(),
                setup.event_name
            ),
            Some(SetupProblem::Formula(_)) => format!(
                "a Stripe meter's formula cannot be changed: create a meter for \"{}\" with \
                 default_aggregation.formula = {} and deactivate the old one (docs/sync.md)",
                setup.event_name,
                setup.formula.as_str()
            ),
            _ => format!(
                "create a meter for \"{}\" with value_settings.event_payload_key = value and \
                 customer_mapping.event_payload_key = stripe_customer_id, and deactivate the old one",
                setup.event_name
            ),
        };
        report.problem(
            "meters",
            sanitize(&setup.describe().unwrap_or_default()).into_owned(),
            sanitize(&fix).into_owned(),
        );
    }
    if setups.iter().all(|s| s.problem.is_none()) {
        report.ok(
            "meters",
            if per_plan {
                "Stripe has an active meter for every plan's event name".into()
            } else {
                let listed: Vec<String> = setups.iter().map(listed_meter).collect();
                format!(
                    "Stripe has an active meter for every meter, each aggregating as it needs: {}",
                    sanitize(&listed.join(", "))
                )
            },
        );
    }
}

/// One Stripe meter in doctor's list: its event name and formula, and the pattern it was made
/// from (or, while no group has filled the pattern, that no group has been counted yet).
fn listed_meter(setup: &crate::stripe::reconcile::MeterSetup) -> String {
    let formula = setup.formula.as_str();
    match &setup.pattern {
        Some(pattern) if *pattern == setup.event_name => {
            format!("{pattern} ({formula}; no group counted yet)")
        }
        Some(pattern) => format!("{} ({formula}, from {pattern})", setup.event_name),
        None => format!("{} ({formula})", setup.event_name),
    }
}
