//! A delivery run: take the alerts lock, attempt every due delivery once, record each result
//! as it happens (a killed run loses at most its attempts in flight, which the next run sends
//! again with the same ids), release the lock.
//!
//! Destinations are served at once, up to [`MAX_PARALLEL_TARGETS`], so one that hangs until
//! its timeout holds up only its own deliveries. Each destination's deliveries stay one at a
//! time, oldest first.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use chrono::Utc;
use serde::Serialize;

use super::{Secret, command, display_target, payload, webhook::Webhook};
use crate::config::{AlertRule, AlertTarget, Config};
use crate::store::{AlertCounts, AlertRun, DueDelivery, LockHolder};
use crate::{Result, Store};

/// The most deliveries one run attempts; the rest wait for the next run.
const RUN_LIMIT: usize = 10_000;

/// The most destinations (webhook URLs, commands) delivered to at once, each on its own
/// thread; more due destinations wait for a free thread.
const MAX_PARALLEL_TARGETS: usize = 8;

/// How often a long run tells the lock it is alive.
const HEARTBEAT: Duration = Duration::from_secs(5);

/// METERLINE_ALERT_BACKOFF_MS: the first pause before a retry (tests, impatient operators).
const BACKOFF_ENV: &str = "METERLINE_ALERT_BACKOFF_MS";

/// How runs deliver. Timeouts and attempts are per `[[alerts]]` entry, in the `Config`.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The pause after a first failed attempt (doubled per further attempt).
    pub backoff_base: Duration,
    /// Signs webhooks (METERLINE_WEBHOOK_SECRET); a run with webhooks refuses `None`.
    pub secret: Option<Secret>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            backoff_base: super::BACKOFF_BASE,
            secret: None,
        }
    }
}

impl RunOptions {
    /// The settings from the environment. `meterline alerts` and `serve` both start here, so
    /// a variable cannot work in one and be ignored by the other.
    pub fn from_env() -> Result<RunOptions> {
        Ok(RunOptions {
            backoff_base: crate::config::millis_from_env(BACKOFF_ENV)?
                .unwrap_or(super::BACKOFF_BASE),
            secret: Secret::from_env()?,
        })
    }
}

/// What a run did, and how the outbox stands after it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunReport {
    /// Deliveries attempted by this run.
    pub attempted: u64,
    /// Of those, delivered.
    pub delivered: u64,
    /// Failed this time; tried again by a later run.
    pub retrying: u64,
    /// Failed for the last allowed time: given up, visible as failed.
    pub failed: u64,
    /// Due, but for a destination no longer in plans.toml: left pending.
    pub unconfigured: u64,
    /// Every delivery's state after the run.
    pub totals: AlertCounts,
    /// One line per failed attempt: alert id, destination, reason.
    pub errors: Vec<String>,
}

impl RunReport {
    /// Exit 0: everything this run could deliver was delivered.
    pub fn all_delivered(&self) -> bool {
        self.retrying == 0 && self.failed == 0
    }
}

/// How to reach one destination of plans.toml.
enum Sender<'c> {
    Webhook(Webhook),
    Command(&'c [String]),
}

/// Refuse before anything is sent: webhooks need the signing secret.
pub fn check_secret(config: &Config, secret: Option<&Secret>) -> Result<()> {
    let webhooks = config
        .alerts
        .iter()
        .any(|r| matches!(r.target, AlertTarget::Webhook(_)));
    if webhooks && secret.is_none() {
        return Err(super::sign::missing_secret());
    }
    Ok(())
}

/// Deliver what is due. Nothing due: no lock, no run record (serve polls this).
/// `stop` ends the run: each destination's thread stops before its next attempt.
pub fn run(
    store: &mut Store,
    config: &Config,
    options: &RunOptions,
    stop: &AtomicBool,
) -> Result<RunReport> {
    check_secret(config, options.secret.as_ref())?;
    let targets = target_keys(config);
    let mut report = RunReport {
        // Left pending, never attempted: they do not make a run.
        unconfigured: store.count_due_alert_deliveries(now(), &targets, false)?,
        ..RunReport::default()
    };
    if store.count_due_alert_deliveries(now(), &targets, true)? == 0 {
        report.totals = store.alert_counts()?;
        return Ok(report);
    }
    let run_id = store.begin_alert_run(&LockHolder::this_process(), Utc::now())?;
    let result = attempt_all(store, config, options, stop, run_id, &mut report);
    let run = AlertRun {
        id: run_id,
        outcome: match &result {
            Err(_) => "aborted",
            Ok(()) if report.all_delivered() => "completed",
            Ok(()) => "incomplete",
        }
        .into(),
        attempted: report.attempted,
        delivered: report.delivered,
        retrying: report.retrying,
        failed: report.failed,
    };
    let finished = store.finish_alert_run(&run, Utc::now());
    result?;
    finished?;
    report.totals = store.alert_counts()?;
    Ok(report)
}

fn attempt_all(
    store: &mut Store,
    config: &Config,
    options: &RunOptions,
    stop: &AtomicBool,
    run_id: i64,
    report: &mut RunReport,
) -> Result<()> {
    let senders = senders(config);
    // Read under the lock: what another run delivered meanwhile is not sent again.
    let due = store.due_alert_deliveries(now(), &target_keys(config), true, RUN_LIMIT)?;
    let lanes = lanes(due);
    let threads = lanes.len().min(MAX_PARALLEL_TARGETS);
    let queue = Mutex::new(lanes.into_iter());
    let ledger = Mutex::new(Ledger {
        store,
        report,
        options,
        run_id,
        beat: Instant::now(),
        error: None,
    });
    let work = || deliver_lanes(&queue, &senders, options.secret.as_ref(), stop, &ledger);
    std::thread::scope(|scope| {
        let mut started = 0;
        for _ in 0..threads {
            let spawned = std::thread::Builder::new()
                .name("meterline-alert-delivery".into())
                .spawn_scoped(scope, work);
            if spawned.is_err() {
                break; // the threads started take every lane between them
            }
            started += 1;
        }
        // No thread to be had: deliver on this one rather than not at all.
        if started == 0 {
            work();
        }
    });
    match ledger
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner)
        .error
    {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

/// How to reach each destination of plans.toml, by its stored name.
fn senders(config: &Config) -> HashMap<String, (&AlertRule, Sender<'_>)> {
    config
        .alerts
        .iter()
        .map(|rule| {
            let sender = match &rule.target {
                AlertTarget::Webhook(url) => Sender::Webhook(Webhook::new(
                    url,
                    Duration::from_secs_f64(rule.timeout_secs),
                )),
                AlertTarget::Command(argv) => Sender::Command(argv),
            };
            (rule.target.key(), (rule, sender))
        })
        .collect()
}

/// The due deliveries by destination, each lane oldest first (the order they were read in),
/// the lanes in the order of their oldest delivery. Destinations are plans.toml's few
/// `[[alerts]]` entries, so a linear search is enough.
fn lanes(due: Vec<DueDelivery>) -> Vec<Vec<DueDelivery>> {
    let mut lanes: Vec<(String, Vec<DueDelivery>)> = Vec::new();
    for delivery in due {
        match lanes
            .iter_mut()
            .find(|(target, _)| *target == delivery.target)
        {
            Some((_, lane)) => lane.push(delivery),
            None => lanes.push((delivery.target.clone(), vec![delivery])),
        }
    }
    lanes.into_iter().map(|(_, lane)| lane).collect()
}

/// One delivery thread: take the next destination's lane and deliver it in order, until no
/// lane is left, a stop is asked for or recording failed.
fn deliver_lanes(
    queue: &Mutex<std::vec::IntoIter<Vec<DueDelivery>>>,
    senders: &HashMap<String, (&AlertRule, Sender)>,
    secret: Option<&Secret>,
    stop: &AtomicBool,
    ledger: &Mutex<Ledger>,
) {
    while let Some(lane) = next_lane(queue) {
        for due in lane {
            if stop.load(Ordering::Relaxed) || lock(ledger).error.is_some() {
                return;
            }
            let Some((rule, sender)) = senders.get(&due.target) else {
                continue; // Not reached: only configured targets are read.
            };
            let result = attempt(rule, sender, &due, secret);
            lock(ledger).record(rule, &due, result);
        }
    }
}

/// The next lane, the queue unlocked again at once (a `while let` on the guard itself would
/// hold it through the whole lane and deliver one destination at a time).
fn next_lane(queue: &Mutex<std::vec::IntoIter<Vec<DueDelivery>>>) -> Option<Vec<DueDelivery>> {
    lock(queue).next()
}

/// A poisoned lock means a delivery thread panicked; the scope re-raises that panic, so the
/// data is still good to finish with.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The run's one connection and report, shared by the delivery threads: each result is
/// recorded the moment its attempt ends.
struct Ledger<'a> {
    store: &'a mut Store,
    report: &'a mut RunReport,
    options: &'a RunOptions,
    run_id: i64,
    beat: Instant,
    /// The first database error: the threads stop and the run is aborted with it.
    error: Option<crate::Error>,
}

impl Ledger<'_> {
    fn record(&mut self, rule: &AlertRule, due: &DueDelivery, result: Result<(), String>) {
        if self.error.is_some() {
            return;
        }
        self.report.attempted += 1;
        let recorded = settle(self.store, rule, due, result, self.options, self.report)
            .and_then(|()| self.heartbeat());
        if let Err(error) = recorded {
            self.error = Some(error);
        }
    }

    fn heartbeat(&mut self) -> Result<()> {
        if self.beat.elapsed() > HEARTBEAT {
            self.store.alert_heartbeat(self.run_id)?;
            self.beat = Instant::now();
        }
        Ok(())
    }
}

fn attempt(
    rule: &AlertRule,
    sender: &Sender,
    due: &DueDelivery,
    secret: Option<&Secret>,
) -> Result<(), String> {
    let body = payload::body(&due.alert);
    match (sender, secret) {
        (Sender::Webhook(hook), Some(secret)) => hook.send(&due.alert.id, &body, secret),
        // Refused before the run starts (`check_secret`); kept total for the compiler.
        (Sender::Webhook(_), None) => Err("no signing secret".into()),
        (Sender::Command(argv), _) => {
            command::run(argv, &body, Duration::from_secs_f64(rule.timeout_secs))
        }
    }
}

/// Record one attempt's result at once.
fn settle(
    store: &Store,
    rule: &AlertRule,
    due: &DueDelivery,
    result: Result<(), String>,
    options: &RunOptions,
    report: &mut RunReport,
) -> Result<()> {
    let error = match result {
        Ok(()) => {
            report.delivered += 1;
            return store.alert_delivered(&due.alert.id, &due.target, Utc::now());
        }
        Err(error) => error,
    };
    let attempts = due.attempts + 1;
    let next = if attempts >= rule.max_attempts {
        report.failed += 1;
        None
    } else {
        report.retrying += 1;
        let pause = super::backoff(options.backoff_base, attempts);
        Some(now() + pause.as_secs() as i64)
    };
    report.errors.push(format!(
        "{} to {} (attempt {attempts} of {}): {error}",
        due.alert.id,
        display_target(&due.target),
        rule.max_attempts
    ));
    store.alert_attempt_failed(&due.alert.id, &due.target, &error, next)
}

/// What a run would attempt now; sends and changes nothing.
#[derive(Debug, Clone, Serialize)]
pub struct Preview {
    /// The deliveries due now.
    pub due: Vec<PreviewRow>,
    /// Every delivery's state.
    pub totals: AlertCounts,
}

/// One due delivery of a preview.
#[derive(Debug, Clone, Serialize)]
pub struct PreviewRow {
    /// The alert's stable id (the same on every attempt).
    pub id: String,
    /// The customer whose usage crossed a level.
    pub customer: String,
    /// The level crossed.
    pub level: String,
    /// The destination, as shown to people (`display_target`).
    pub target: String,
    /// Attempts made so far.
    pub attempts: u32,
    /// False when plans.toml no longer has this destination.
    pub configured: bool,
}

/// What a run would attempt now (`alerts --dry-run`); sends and changes nothing.
pub fn preview(store: &Store, config: &Config) -> Result<Preview> {
    let keys = target_keys(config);
    let configured = store.due_alert_deliveries(now(), &keys, true, RUN_LIMIT)?;
    let others = store.due_alert_deliveries(now(), &keys, false, RUN_LIMIT)?;
    let due = configured
        .into_iter()
        .chain(others)
        .map(|d| PreviewRow {
            configured: keys.contains(&d.target),
            target: display_target(&d.target),
            id: d.alert.id,
            customer: d.alert.customer,
            level: d.alert.level,
            attempts: d.attempts,
        })
        .collect();
    Ok(Preview {
        due,
        totals: store.alert_counts()?,
    })
}

/// The stored names of plans.toml's destinations.
fn target_keys(config: &Config) -> Vec<String> {
    config.alerts.iter().map(|r| r.target.key()).collect()
}

/// Real Unix seconds: `--now` never reaches delivery scheduling.
fn now() -> i64 {
    Utc::now().timestamp()
}
