//! The sync engine: every unreported usage event to Stripe exactly once.
//!
//! A run takes the database's sync lock, marks events past Stripe's window expired, then lets
//! the pipeline (see `pipeline.rs`) send the outbox oldest first. An event is marked reported
//! only after Stripe accepted it or recognised its identifier, so a crash at any instant leaves
//! at worst events that Stripe has but the database does not know about yet; the next run
//! resends them, Stripe answers "already exists", and they are marked then. Nothing is billed
//! twice.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

pub use super::pipeline::CANCELLED;
#[doc(hidden)]
pub use super::pipeline::PanicHook;
pub use super::pipeline::SyncProgress;
use super::pipeline::{self, Outcome, RunSpec, Transport};
use super::{ApiKey, Client, RateLimiter, RetryPolicy};
use crate::billing::stripe_window;
use crate::clock::Clock;
use crate::config::{Config, ReportMode};
use crate::store::{
    Formula, LockHolder, OutboxGroup, OutboxUnit, OutboxWindow, StripeMeters, SyncRun,
};
use crate::{Result, Store};

/// Events that Stripe refused are tried again by later runs once they have rested this long
/// (`retry_failed` tries them at once): a cron job does not resend a bad event every minute.
const FAILED_REST_HOURS: i64 = 1;

/// How a sync runs; the default is what `meterline sync` does.
#[derive(Debug, Clone, Default)]
pub struct SyncOptions {
    /// Show what would be sent; send nothing, write nothing.
    pub dry_run: bool,
    /// Send at most this many events (oldest first).
    pub limit: Option<u64>,
    /// Also resend events that Stripe refused less than an hour ago.
    pub retry_failed: bool,
    /// The time the run starts at. `None`, the default and what the CLI always uses: the real
    /// clock. Expiry marks are permanent, so only tests pretend a time here.
    pub now: Option<DateTime<Utc>>,
    /// The first pause between retries (500 ms when `None`); doubles on each retry.
    pub backoff: Option<Duration>,
    /// Test-only fault injection.
    #[doc(hidden)]
    pub panic_hook: Option<PanicHook>,
}

impl SyncOptions {
    /// The run's start: the pretend time if a test set one, else the real clock.
    fn start_time(&self) -> DateTime<Utc> {
        self.now.unwrap_or_else(Utc::now)
    }
}

/// What a sync did (`sync --json`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SyncReport {
    /// "aggregate": the counts below are reports (one meter event each, standing for many
    /// usage events); "per_event": they are usage events.
    pub mode: &'static str,
    /// Usage events newly marked reported by this run (either mode).
    pub events_reported: u64,
    /// Usage events held in doubt: sent more than 23 hours ago and never answered; a resend
    /// could bill twice, so `meterline reconcile` decides.
    pub in_doubt: u64,
    /// Unreported events within `expiry_warning_days` of Stripe's 35-day window.
    pub expiring: u64,
    /// Events sent at least once in this run.
    pub attempted: u64,
    /// Of those, events whose request reached the server (the others never connected: DNS
    /// failure, connection refused, network unreachable).
    pub reached: u64,
    /// Newly accepted by Stripe.
    pub accepted: u64,
    /// Stripe already had them (sent by an earlier, interrupted run): now marked reported.
    pub duplicates: u64,
    /// Refused by Stripe (4xx); kept pending with Stripe's message, retried by later runs.
    pub failed: u64,
    /// Newly found past Stripe's 35-day window: marked expired, kept, never sent.
    pub expired: u64,
    /// Pending events of customers without a Stripe customer id (not sent).
    pub unmapped: u64,
    /// Pending events of mapped customers left after this run.
    pub remaining: u64,
    /// How long the run took.
    pub duration_ms: u64,
    /// Transient failures up to the attempt bound: still pending, the next run retries.
    pub undelivered: u64,
    /// Pending events dated more than 5 minutes ahead of now: sent when their time comes.
    pub future: u64,
    /// Earlier refusals resting before their next try (`--retry-failed` sends them now).
    pub failed_waiting: u64,
    /// Why the run stopped early: cancelled, or the reason it gave up.
    pub stopped: Option<String>,
    /// Why events could not be sent, when some never reached the server ("could not
    /// connect: ..."), else the reason the run stopped.
    pub error: Option<String>,
    /// Nothing was sent or written (`--dry-run`).
    pub dry_run: bool,
}

impl SyncReport {
    /// Everything this run set out to deliver was delivered (exit code 0).
    pub fn all_delivered(&self) -> bool {
        self.failed == 0 && self.undelivered == 0 && self.stopped.is_none()
    }
}

/// What a sync would do now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SyncPreview {
    /// Usage events the sync would report.
    pub events: u64,
    /// Of how many customers.
    pub customers: u64,
    /// Pending events of customers without a Stripe customer id (not sent).
    pub unmapped: u64,
    /// Events past Stripe's 35-day window, which the sync would mark expired.
    pub expired: u64,
    /// The host it would send to.
    pub api_host: String,
    /// The key is a live one (real money).
    pub live: bool,
    /// Pending events dated more than 5 minutes ahead: sent when their time comes.
    pub future: u64,
    /// Earlier refusals resting before their next try.
    pub failed_waiting: u64,
    /// Per customer and meter, for listing.
    pub groups: Vec<OutboxGroup>,
    /// "aggregate" or "per_event".
    pub mode: &'static str,
    /// Meter events the sync would send (aggregate mode: reports; per_event: `events`).
    pub requests: u64,
    /// Their units, added up over every meter: a count only with one meter.
    pub units: i64,
    /// The units of `groups` by meter: requests, tokens and users are not added together.
    pub units_by_meter: BTreeMap<String, i64>,
    /// Usage events held in doubt until `meterline reconcile` decides.
    pub in_doubt: u64,
    /// Unreported events close to Stripe's window.
    pub expiring: u64,
}

/// What a sync with these options (`--limit`, `--retry-failed`, the clock) would send now;
/// reads only. Works without a key (only the mode is unknown then, and shown as test); a real
/// sync needs one.
pub fn preview_with(
    store: &Store,
    config: &Config,
    key: Option<&ApiKey>,
    options: &SyncOptions,
) -> Result<SyncPreview> {
    let base = super::api_base(config)?;
    let now = options.start_time();
    let window = outbox_window(now, options);
    let meters = StripeMeters::new(config);
    let groups = store.outbox_groups(&meters, &window, options.limit)?;
    let mode = config.stripe.report;
    let (requests, units, events, customers) = match mode {
        ReportMode::PerEvent => {
            // Reports an aggregate run made before the switch go out first, and the `last`
            // formula meters always go as reports (docs/sync.md).
            let plan = store.report_plan(&meters, &window)?;
            let single: Vec<&OutboxGroup> = groups
                .iter()
                .filter(|g| meters.route(&g.meter).map(|r| r.formula) == Some(Formula::Sum))
                .collect();
            let events: u64 = single.iter().map(|g| g.events).sum();
            let customers = single
                .iter()
                .map(|g| g.customer_id.as_str())
                .collect::<HashSet<_>>()
                .len() as u64;
            (
                plan.reports + events,
                plan.units + single.iter().map(|g| g.units).sum::<i64>(),
                plan.events + events,
                plan.customers.max(customers),
            )
        }
        ReportMode::Aggregate => {
            // Reports made by an interrupted run count too.
            let plan = store.report_plan(&meters, &window)?;
            (plan.reports, plan.units, plan.events, plan.customers)
        }
    };
    let mut units_by_meter = BTreeMap::new();
    for g in &groups {
        *units_by_meter.entry(g.meter.clone()).or_insert(0) += g.units;
    }
    Ok(SyncPreview {
        mode: mode.as_str(),
        units_by_meter,
        requests,
        units,
        in_doubt: store.in_doubt()?.events,
        expiring: store.count_expiring(now, config.stripe.expiry_warning_days)?,
        events,
        customers,
        unmapped: store.count_unmapped()?,
        expired: store.count_expirable(window.not_before)?,
        api_host: base.host().to_string(),
        live: key.is_some_and(ApiKey::is_live),
        future: store.count_future(window.not_after)?,
        failed_waiting: store.count_failed_resting(&window)?,
        groups,
    })
}

fn outbox_window(now: DateTime<Utc>, options: &SyncOptions) -> OutboxWindow {
    let (not_before, not_after) = stripe_window(now);
    OutboxWindow {
        not_before,
        not_after,
        failed_before: (!options.retry_failed)
            .then(|| now - chrono::Duration::hours(FAILED_REST_HOURS)),
    }
}

/// Report every sendable event. Opens its own connections to `db`; holds the database's sync
/// lock for the whole run (a second sync gets `Error::SyncRunning`). `cancel` stops taking new
/// events; requests in flight finish and are recorded. A refused API key or a TLS failure ends
/// the run with `Error::StripeConfig` (after recording what was done); so does any failure of
/// the run itself, a panic of one of its threads included, and the lock is released.
pub fn run(
    db: &Path,
    config: &Config,
    key: &ApiKey,
    options: &SyncOptions,
    cancel: &AtomicBool,
    on_progress: &mut dyn FnMut(&SyncProgress),
) -> Result<SyncReport> {
    // The run's start, moving on with real time: events are dated as sent at the start.
    let clock = Clock::starting_at(options.start_time());
    let now = clock.start();
    let base = super::api_base(config)?;
    let mut store = Store::open(db)?;
    if options.dry_run {
        let preview = preview_with(&store, config, Some(key), options)?;
        return Ok(dry_run_report(&preview, &clock));
    }
    let client = Client::new(&base, key, &config.stripe)?;
    let run_id = store.begin_sync_run(&LockHolder::this_process(), now)?;
    let transport = Transport {
        client: &client,
        policy: RetryPolicy::from_settings(&config.stripe, options.backoff),
        limiter: RateLimiter::per_second(super::rate_limit(config, key)),
    };
    let window = outbox_window(now, options);
    let result = send(
        db,
        &mut store,
        config,
        &transport,
        window,
        options,
        run_id,
        clock,
        cancel,
        on_progress,
    );
    let mut record = SyncRun {
        id: run_id,
        started_at: crate::billing::format_ts(now),
        finished_at: Some(crate::billing::format_ts(clock.now())),
        outcome: "aborted".into(),
        attempted: 0,
        accepted: 0,
        duplicates: 0,
        failed: 0,
        expired: 0,
        unmapped: 0,
        remaining: 0,
        error: None,
    };
    match result {
        Ok((report, fatal, None)) => {
            record.outcome = match (&report.stopped, &fatal) {
                (_, Some(_)) => "aborted",
                (Some(reason), None) if reason == CANCELLED => "cancelled",
                (Some(_), None) => "aborted",
                (None, None) if report.all_delivered() => "completed",
                (None, None) => "incomplete",
            }
            .into();
            record.attempted = report.attempted;
            record.accepted = report.accepted;
            record.duplicates = report.duplicates;
            record.failed = report.failed;
            record.expired = report.expired;
            record.unmapped = report.unmapped;
            record.remaining = report.remaining;
            record.error = fatal
                .as_ref()
                .map(|e| e.to_string())
                .or_else(|| report.stopped.clone().filter(|r| r != CANCELLED));
            store.finish_sync_run(&record)?;
            match fatal {
                Some(error) => Err(error),
                None => Ok(report),
            }
        }
        Ok((report, _, Some(error))) => {
            // A thread failed mid-run (a full disk, a panic): record what was committed.
            record.attempted = report.attempted;
            record.accepted = report.accepted;
            record.duplicates = report.duplicates;
            record.failed = report.failed;
            record.expired = report.expired;
            record.error = Some(key.redact(&error.to_string()));
            // Recording is best effort: the disk may still be full.
            let _ = store.finish_sync_run(&record);
            Err(error)
        }
        Err(error) => {
            record.error = Some(key.redact(&error.to_string()));
            // The run failed on its own; recording that is best effort.
            let _ = store.finish_sync_run(&record);
            Err(error)
        }
    }
}

/// Under the lock: expire what is too old, run the pipeline, count what is left.
#[allow(clippy::too_many_arguments)]
fn send(
    db: &Path,
    store: &mut Store,
    config: &Config,
    transport: &Transport,
    window: OutboxWindow,
    options: &SyncOptions,
    run_id: i64,
    clock: Clock,
    cancel: &AtomicBool,
    on_progress: &mut dyn FnMut(&SyncProgress),
) -> Result<(SyncReport, Option<crate::Error>, Option<crate::Error>)> {
    let mut expired = 0;
    for unit in OutboxUnit::ALL {
        expired += store.expire(unit, window.not_before, clock.now())?;
    }
    let failed_waiting = store.count_failed_resting(&window)?;
    store.hold_in_doubt(clock.now())?;
    // Every meter in aggregate mode; the `last` formula meters in per_event mode too.
    let meters = StripeMeters::new(config);
    store.pack_reports(&meters, &window, clock.now())?;
    // Reports are sent in either mode: those an aggregate run made before a switch to
    // per_event still go out, under the identifiers they were made with.
    let reports = store.made_reports(&window)?.reports;
    let mut passes = Vec::new();
    let mut limit = options.limit;
    if reports > 0 {
        let n = limit.map_or(reports, |l| l.min(reports));
        passes.push((OutboxUnit::Reports, n, limit));
        limit = limit.map(|l| l - n);
    }
    if config.stripe.report == ReportMode::PerEvent && limit != Some(0) {
        // Everything left unpacked is of `sum` formula meters: the others were packed above.
        let events = store
            .outbox_groups(&meters, &window, limit)?
            .iter()
            .map(|g| g.events)
            .sum();
        passes.push((OutboxUnit::Events, events, limit));
    }
    let total = passes.iter().map(|(_, n, _)| n).sum();
    on_progress(&SyncProgress {
        total,
        ..SyncProgress::default()
    });
    let mut outcome = Outcome::default();
    for (unit, _, limit) in passes {
        let spec = RunSpec {
            transport,
            meters: &meters,
            workers: config.stripe.workers.max(1),
            window,
            limit,
            run_id,
            clock,
            unit,
            panic_hook: options.panic_hook,
        };
        let reader_store = Store::open(db)?;
        let before = outcome.progress.clone();
        let pass = pipeline::run(
            store,
            reader_store,
            &spec,
            cancel,
            &mut |p| on_progress(&before.plus(p, total)),
            total,
        );
        // Best effort after a failure too: a job left dated is only held sooner than needed.
        let undated = store.undate_unsent(unit, &pass.unsent, clock.start());
        outcome.absorb(pass);
        if let Some(error) = outcome.error.take() {
            // Counts from what was written, not from the answers: the writes may have failed.
            let report = failed_report(&outcome, expired, clock, config.stripe.report.as_str());
            return Ok((report, outcome.fatal, Some(error)));
        }
        undated?;
        if outcome.fatal.is_some() || outcome.stopped.is_some() {
            break;
        }
    }
    outcome.progress.total = total;
    on_progress(&outcome.progress);

    let counts = store.stripe_counts(clock.now())?;
    let p = &outcome.progress;
    let report = SyncReport {
        mode: config.stripe.report.as_str(),
        events_reported: outcome.events_reported,
        in_doubt: store.in_doubt()?.events,
        expiring: store.count_expiring(clock.now(), config.stripe.expiry_warning_days)?,
        attempted: p.attempted,
        reached: outcome.reached,
        accepted: p.accepted,
        duplicates: p.duplicates,
        failed: p.failed,
        expired,
        unmapped: counts.unmapped,
        remaining: counts.unreported - counts.unmapped,
        duration_ms: clock.elapsed().as_millis() as u64,
        undelivered: outcome.undelivered,
        future: store.count_future(window.not_after)?,
        failed_waiting,
        error: outcome
            .not_connected
            .clone()
            .or_else(|| outcome.stopped.clone()),
        stopped: outcome.stopped,
        dry_run: false,
    };
    Ok((report, outcome.fatal, None))
}

/// What a run that failed mid-way did: the events whose outcome was written.
fn failed_report(outcome: &Outcome, expired: u64, clock: Clock, mode: &'static str) -> SyncReport {
    let m = &outcome.marked;
    SyncReport {
        mode,
        events_reported: outcome.events_reported,
        in_doubt: 0,
        expiring: 0,
        attempted: m.attempted,
        reached: outcome.reached,
        accepted: m.accepted,
        duplicates: m.duplicates,
        failed: m.failed,
        expired,
        unmapped: 0,
        remaining: 0,
        duration_ms: clock.elapsed().as_millis() as u64,
        undelivered: outcome.undelivered,
        future: 0,
        failed_waiting: 0,
        stopped: outcome.stopped.clone(),
        error: outcome.error.as_ref().map(|e| e.to_string()),
        dry_run: false,
    }
}

fn dry_run_report(preview: &SyncPreview, clock: &Clock) -> SyncReport {
    SyncReport {
        mode: preview.mode,
        events_reported: 0,
        in_doubt: preview.in_doubt,
        expiring: preview.expiring,
        attempted: 0,
        reached: 0,
        accepted: 0,
        duplicates: 0,
        failed: 0,
        expired: preview.expired,
        unmapped: preview.unmapped,
        remaining: preview.events,
        duration_ms: clock.elapsed().as_millis() as u64,
        undelivered: 0,
        future: preview.future,
        failed_waiting: preview.failed_waiting,
        stopped: None,
        error: None,
        dry_run: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_clean_runs_count_as_all_delivered() {
        let preview = SyncPreview {
            events: 3,
            customers: 1,
            unmapped: 0,
            expired: 0,
            api_host: "x".into(),
            live: false,
            future: 0,
            failed_waiting: 0,
            groups: vec![],
            units_by_meter: BTreeMap::new(),
            mode: "aggregate",
            requests: 3,
            units: 3,
            in_doubt: 0,
            expiring: 0,
        };
        let mut report = dry_run_report(&preview, &Clock::starting_at(Utc::now()));
        assert!(report.all_delivered());
        report.undelivered = 1;
        assert!(!report.all_delivered());
        report.undelivered = 0;
        report.stopped = Some(CANCELLED.into());
        assert!(!report.all_delivered());
    }
}
