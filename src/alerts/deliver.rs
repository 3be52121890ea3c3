//! A delivery run: take the alerts lock, attempt every due delivery once, record each result
//! as it happens (a killed run loses at most its attempt in flight, which the next run sends
//! again with the same id), release the lock.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use serde::Serialize;

use super::{Secret, command, display_target, payload, webhook::Webhook};
use crate::config::{AlertRule, AlertTarget, Config};
use crate::store::{AlertCounts, AlertRun, DueDelivery, LockHolder};
use crate::{Result, Store};

/// The most deliveries one run attempts; the rest wait for the next run.
const RUN_LIMIT: usize = 10_000;

/// METERLINE_ALERT_BACKOFF_MS: the first pause before a retry (tests, impatient operators).
pub const BACKOFF_ENV: &str = "METERLINE_ALERT_BACKOFF_MS";

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
    pub attempted: u64,
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
/// `stop` ends the run between two attempts.
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
    let senders: HashMap<String, (&AlertRule, Sender)> = config
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
        .collect();
    let mut beat = Instant::now();
    // Read under the lock: what another run delivered meanwhile is not sent again.
    let targets = target_keys(config);
    for due in store.due_alert_deliveries(now(), &targets, true, RUN_LIMIT)? {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let Some((rule, sender)) = senders.get(&due.target) else {
            continue; // Not reached: only configured targets are read.
        };
        report.attempted += 1;
        let result = attempt(rule, sender, &due, options.secret.as_ref());
        settle(store, rule, &due, result, options, report)?;
        if beat.elapsed() > Duration::from_secs(5) {
            store.alert_heartbeat(run_id)?;
            beat = Instant::now();
        }
    }
    Ok(())
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
    pub due: Vec<PreviewRow>,
    pub totals: AlertCounts,
}

#[derive(Debug, Clone, Serialize)]
pub struct PreviewRow {
    pub id: String,
    pub customer: String,
    pub level: String,
    pub target: String,
    pub attempts: u32,
    /// False when plans.toml no longer has this destination.
    pub configured: bool,
}

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
