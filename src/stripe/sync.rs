//! The sync engine: every unreported usage event to Stripe exactly once.
//!
//! One thread reads the outbox oldest first, hands events to a pool of workers (each request
//! through the shared rate limiter, at most one in flight per customer and meter), and writes
//! the answers back in small committed batches. An event is marked reported only after Stripe
//! accepted it or recognised its identifier, so a crash at any instant leaves at worst events
//! that Stripe has but the database does not know about yet; the next run resends them, Stripe
//! answers "already exists", and they are marked then. Nothing is billed twice.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, mpsc};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Answer, ApiKey, Client, Delivery, MeterEvent, RateLimiter, RetryPolicy};
use crate::config::Config;
use crate::store::{
    EventOutcome, LockHolder, OutboxCursor, OutboxEvent, OutboxGroup, OutboxWindow, SyncRun,
    stripe_window,
};
use crate::{Error, Result, Store};

/// Events that Stripe refused are tried again by later runs once they have rested this long
/// (`retry_failed` tries them at once): a cron job does not resend a bad event every minute.
pub const FAILED_REST_HOURS: i64 = 1;
/// Answers are written back at least this often, or every `WRITE_BATCH` events.
const WRITE_EVERY: Duration = Duration::from_millis(200);
const WRITE_BATCH: usize = 256;
const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);
const PROGRESS_EVERY: Duration = Duration::from_millis(50);
/// Outbox rows read per query, and the queue depth below which the next page is read.
const PAGE: u64 = 1024;
const QUEUE_LOW: usize = 4096;
/// This many events in a row that exhausted their retries means Stripe is unreachable.
const GIVE_UP_AFTER: u32 = 3;

#[derive(Debug, Clone, Default)]
pub struct SyncOptions {
    /// Show what would be sent; send nothing, write nothing.
    pub dry_run: bool,
    /// Send at most this many events (oldest first).
    pub limit: Option<u64>,
    /// Also resend events that Stripe refused less than an hour ago.
    pub retry_failed: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncProgress {
    pub total: u64,
    pub attempted: u64,
    pub accepted: u64,
    pub duplicates: u64,
    pub failed: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SyncReport {
    /// Events sent at least once in this run.
    pub attempted: u64,
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
    pub duration_ms: u64,
    /// Transient failures up to the attempt bound: still pending, the next run retries.
    pub undelivered: u64,
    /// Pending events dated more than 5 minutes ahead of now: sent when their time comes.
    pub future: u64,
    /// Earlier refusals resting before their next try (`--retry-failed` sends them now).
    pub failed_waiting: u64,
    /// Why the run stopped early: cancelled, or the reason it gave up.
    pub stopped: Option<String>,
    pub dry_run: bool,
}

impl SyncReport {
    /// Everything this run set out to deliver was delivered (exit code 0).
    pub fn all_delivered(&self) -> bool {
        self.failed == 0 && self.undelivered == 0 && self.stopped.is_none()
    }
}

/// What a sync would do now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SyncPreview {
    pub events: u64,
    pub customers: u64,
    pub unmapped: u64,
    pub expired: u64,
    pub api_host: String,
    pub live: bool,
    pub future: u64,
    pub failed_waiting: u64,
    /// Per customer and meter, for listing.
    pub groups: Vec<OutboxGroup>,
}

/// What a sync with default options would send now; reads only.
pub fn preview(
    store: &Store,
    config: &Config,
    key: &ApiKey,
    now: DateTime<Utc>,
) -> Result<SyncPreview> {
    preview_with(store, config, key, &SyncOptions::default(), now)
}

/// `preview` honouring `--limit` and `--retry-failed`.
pub fn preview_with(
    store: &Store,
    config: &Config,
    key: &ApiKey,
    options: &SyncOptions,
    now: DateTime<Utc>,
) -> Result<SyncPreview> {
    let base = super::api_base(config)?;
    let window = outbox_window(now, options);
    let groups = store.outbox_groups(&window, options.limit)?;
    Ok(SyncPreview {
        events: groups.iter().map(|g| g.events).sum(),
        customers: groups
            .iter()
            .map(|g| g.customer_id.as_str())
            .collect::<HashSet<_>>()
            .len() as u64,
        unmapped: store.count_unmapped()?,
        expired: store.count_expirable(window.not_before)?,
        api_host: super::api_host(&base).unwrap_or_default(),
        live: key.is_live(),
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

/// Report every sendable event. Opens its own connection to `db`; holds the database's sync
/// lock for the whole run (a second sync gets `Error::SyncRunning`). `cancel` stops taking new
/// events; requests in flight finish and are recorded. A refused API key ends the run with
/// `Error::StripeConfig` (after recording what was done).
pub fn run(
    db: &Path,
    config: &Config,
    key: &ApiKey,
    options: &SyncOptions,
    now: DateTime<Utc>,
    cancel: &AtomicBool,
    on_progress: &mut dyn FnMut(&SyncProgress),
) -> Result<SyncReport> {
    let started = Instant::now();
    let base = super::api_base(config)?;
    let mut store = Store::open(db)?;
    if options.dry_run {
        let preview = preview_with(&store, config, key, options, now)?;
        return Ok(dry_run_report(&preview, started));
    }
    let client = Client::new(&base, key, &config.stripe)?;
    let run_id = store.begin_sync_run(&LockHolder::this_process(), now)?;
    let clock = Clock { now, started };
    let sender = Sender {
        client: &client,
        policy: RetryPolicy::from_settings(&config.stripe),
        limiter: RateLimiter::per_second(super::rate_limit(config, key)),
    };
    let mut engine = Engine {
        store: &mut store,
        workers: config.stripe.workers.max(1),
        window: outbox_window(now, options),
        limit: options.limit,
        run_id,
        clock,
    };
    let result = engine.run(&sender, cancel, on_progress);
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
        Ok((report, fatal)) => {
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
        Err(error) => {
            record.error = Some(key.redact(&error.to_string()));
            // The run failed on its own; recording that is best effort.
            let _ = store.finish_sync_run(&record);
            Err(error)
        }
    }
}

/// `SyncReport::stopped` of a run stopped by its `cancel` flag.
pub const CANCELLED: &str = "cancelled";

fn dry_run_report(preview: &SyncPreview, started: Instant) -> SyncReport {
    SyncReport {
        attempted: 0,
        accepted: 0,
        duplicates: 0,
        failed: 0,
        expired: preview.expired,
        unmapped: preview.unmapped,
        remaining: preview.events,
        duration_ms: started.elapsed().as_millis() as u64,
        undelivered: 0,
        future: preview.future,
        failed_waiting: preview.failed_waiting,
        stopped: None,
        dry_run: true,
    }
}

/// The run's notion of now: the caller's `now` plus the time the run has taken.
#[derive(Clone, Copy)]
struct Clock {
    now: DateTime<Utc>,
    started: Instant,
}

impl Clock {
    fn now(&self) -> DateTime<Utc> {
        self.now + chrono::Duration::from_std(self.started.elapsed()).unwrap_or_default()
    }
}

/// (Stripe customer, meter event name): Stripe allows one request in flight per pair.
type MeterKey = (String, String);

struct Job {
    event: OutboxEvent,
    identifier: String,
}

impl Job {
    fn key(&self) -> MeterKey {
        (
            self.event.stripe_customer_id.clone(),
            self.event.event_name.clone(),
        )
    }

    fn meter_event(&self) -> MeterEvent<'_> {
        MeterEvent {
            event_name: &self.event.event_name,
            stripe_customer_id: &self.event.stripe_customer_id,
            value: self.event.quantity,
            identifier: &self.identifier,
            timestamp: self.event.occurred_at.timestamp(),
        }
    }
}

struct Done {
    job: Job,
    delivery: Delivery,
}

/// Jobs in outbox order, released so that at most one per key is out at a time; later jobs of
/// a busy key wait, in order, without holding up other keys.
struct KeyedQueue<T> {
    ready: VecDeque<(MeterKey, T)>,
    waiting: HashMap<MeterKey, VecDeque<T>>,
    /// Keys with a job ready or out.
    claimed: HashSet<MeterKey>,
    queued: usize,
}

impl<T> KeyedQueue<T> {
    fn new() -> Self {
        KeyedQueue {
            ready: VecDeque::new(),
            waiting: HashMap::new(),
            claimed: HashSet::new(),
            queued: 0,
        }
    }

    fn push(&mut self, key: MeterKey, item: T) {
        self.queued += 1;
        if self.claimed.contains(&key) {
            self.waiting.entry(key).or_default().push_back(item);
        } else {
            self.claimed.insert(key.clone());
            self.ready.push_back((key, item));
        }
    }

    fn pop_ready(&mut self) -> Option<T> {
        let (_, item) = self.ready.pop_front()?;
        self.queued -= 1;
        Some(item)
    }

    /// The job of `key` that was out has finished: its next one becomes ready.
    fn release(&mut self, key: &MeterKey) {
        let next = self.waiting.get_mut(key).and_then(|q| q.pop_front());
        match next {
            Some(item) => {
                if self.waiting.get(key).is_some_and(|q| q.is_empty()) {
                    self.waiting.remove(key);
                }
                self.ready.push_back((key.clone(), item));
            }
            None => {
                self.claimed.remove(key);
            }
        }
    }

    fn len(&self) -> usize {
        self.queued
    }
}

/// What the workers share: the HTTP client, the retry policy and the rate limiter.
struct Sender<'a> {
    client: &'a Client,
    policy: RetryPolicy,
    limiter: RateLimiter,
}

struct Engine<'a> {
    store: &'a mut Store,
    workers: usize,
    window: OutboxWindow,
    limit: Option<u64>,
    run_id: i64,
    clock: Clock,
}

/// Running totals of one run.
#[derive(Default)]
struct Tally {
    progress: SyncProgress,
    undelivered: u64,
    /// Events in a row that exhausted their retries.
    unreachable_streak: u32,
}

impl Engine<'_> {
    /// The report, plus a fatal error (a refused key) to return after recording the run.
    fn run(
        &mut self,
        sender: &Sender,
        cancel: &AtomicBool,
        on_progress: &mut dyn FnMut(&SyncProgress),
    ) -> Result<(SyncReport, Option<Error>)> {
        let expired = self
            .store
            .expire_events(self.window.not_before, self.clock.now())?;
        let failed_waiting = self.store.count_failed_resting(&self.window)?;
        let mut tally = Tally::default();
        tally.progress.total = self
            .store
            .outbox_groups(&self.window, self.limit)?
            .iter()
            .map(|g| g.events)
            .sum();
        on_progress(&tally.progress);
        let database_id = self.store.database_id()?;

        let stop = AtomicBool::new(false);
        let (job_tx, job_rx) = mpsc::channel::<Job>();
        let job_rx = Mutex::new(job_rx);
        let (done_tx, done_rx) = mpsc::channel::<Done>();
        let outcome = std::thread::scope(|scope| {
            for _ in 0..self.workers {
                let done_tx = done_tx.clone();
                let (stop, job_rx) = (&stop, &job_rx);
                scope.spawn(move || work(sender, stop, job_rx, done_tx));
            }
            drop(done_tx);
            let outcome = self.dispatch(
                &database_id,
                job_tx,
                &done_rx,
                &stop,
                cancel,
                &mut tally,
                on_progress,
            );
            // Whatever happened, the workers must wind down before the scope ends.
            stop.store(true, Ordering::Relaxed);
            outcome
        });
        let (stopped, fatal) = outcome?;
        on_progress(&tally.progress);

        let counts = self.store.stripe_counts(self.clock.now())?;
        let p = &tally.progress;
        let report = SyncReport {
            attempted: p.attempted,
            accepted: p.accepted,
            duplicates: p.duplicates,
            failed: p.failed,
            expired,
            unmapped: counts.unmapped,
            remaining: counts.unreported - counts.unmapped,
            duration_ms: self.clock.started.elapsed().as_millis() as u64,
            undelivered: tally.undelivered,
            future: self.store.count_future(self.window.not_after)?,
            failed_waiting,
            stopped,
            dry_run: false,
        };
        Ok((report, fatal))
    }

    /// The dispatcher loop: read the outbox, feed the workers, write back answers.
    /// Returns why it stopped early (if it did) and a fatal error, if any.
    #[allow(clippy::too_many_arguments)]
    fn dispatch(
        &mut self,
        database_id: &str,
        job_tx: mpsc::Sender<Job>,
        done_rx: &mpsc::Receiver<Done>,
        stop: &AtomicBool,
        cancel: &AtomicBool,
        tally: &mut Tally,
        on_progress: &mut dyn FnMut(&SyncProgress),
    ) -> Result<(Option<String>, Option<Error>)> {
        let mut queue = KeyedQueue::new();
        let mut cursor: Option<OutboxCursor> = None;
        let mut outbox_drained = false;
        let mut loaded = 0u64;
        let mut out = 0usize;
        let mut writes: Vec<EventOutcome> = Vec::new();
        let mut stopped: Option<String> = None;
        let mut fatal: Option<Error> = None;
        let (mut last_write, mut last_beat, mut last_progress) =
            (Instant::now(), Instant::now(), Instant::now());
        loop {
            if stopped.is_none() && cancel.load(Ordering::Relaxed) {
                stopped = Some(CANCELLED.into());
                stop.store(true, Ordering::Relaxed);
            }
            if stopped.is_none() && !outbox_drained && queue.len() < QUEUE_LOW {
                let want = self.limit.map_or(PAGE, |l| PAGE.min(l - loaded));
                if want == 0 {
                    outbox_drained = true;
                } else {
                    let (events, next) =
                        self.store
                            .outbox_page(&self.window, cursor.as_ref(), want as usize)?;
                    outbox_drained = (events.len() as u64) < want;
                    cursor = next.or(cursor);
                    loaded += events.len() as u64;
                    for event in events {
                        let identifier = super::identifier(database_id, event.id);
                        let job = Job { event, identifier };
                        queue.push(job.key(), job);
                    }
                }
            }
            // Up to two jobs per worker are out, so no worker waits for the dispatcher.
            while stopped.is_none() && out < self.workers * 2 {
                let Some(job) = queue.pop_ready() else { break };
                if job_tx.send(job).is_err() {
                    return Err(Error::Stripe(
                        "the sync workers stopped unexpectedly".into(),
                    ));
                }
                out += 1;
            }
            if out == 0 && (stopped.is_some() || (outbox_drained && queue.len() == 0)) {
                break;
            }
            match done_rx.recv_timeout(Duration::from_millis(50)) {
                Ok(first) => {
                    for done in std::iter::once(first).chain(done_rx.try_iter()) {
                        out -= 1;
                        queue.release(&done.job.key());
                        if let Some(reason) = settle(done, tally, &mut writes)
                            && stopped.is_none()
                        {
                            stop.store(true, Ordering::Relaxed);
                            if let Reason::BadKey(message) = &reason {
                                fatal = Some(Error::StripeConfig(format!(
                                    "Stripe refused the API key ({message}); check \
                                     STRIPE_API_KEY (a secret key sk_... or a restricted key \
                                     with write access to meter events). Nothing more was sent"
                                )));
                            }
                            stopped = Some(reason.text());
                        }
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(Error::Stripe(
                        "the sync workers stopped unexpectedly".into(),
                    ));
                }
            }
            if writes.len() >= WRITE_BATCH
                || (!writes.is_empty() && last_write.elapsed() >= WRITE_EVERY)
            {
                self.store.record_outcomes(&writes, self.clock.now())?;
                writes.clear();
                last_write = Instant::now();
            }
            if last_beat.elapsed() >= HEARTBEAT_EVERY {
                self.store.sync_heartbeat(self.run_id)?;
                last_beat = Instant::now();
            }
            if last_progress.elapsed() >= PROGRESS_EVERY {
                on_progress(&tally.progress);
                last_progress = Instant::now();
            }
        }
        drop(job_tx);
        if !writes.is_empty() {
            self.store.record_outcomes(&writes, self.clock.now())?;
        }
        Ok((stopped, fatal))
    }
}

/// Why a run stops early.
enum Reason {
    BadKey(String),
    Unreachable(String),
}

impl Reason {
    fn text(&self) -> String {
        match self {
            Reason::BadKey(message) => format!("Stripe refused the API key ({message})"),
            Reason::Unreachable(message) => format!(
                "gave up: {GIVE_UP_AFTER} events in a row could not be delivered after all \
                 retries (last error: {message})"
            ),
        }
    }
}

/// Count one finished event and queue its write-back; a reason when the run must stop.
fn settle(done: Done, tally: &mut Tally, writes: &mut Vec<EventOutcome>) -> Option<Reason> {
    let id = done.job.event.id;
    let attempts = done.delivery.attempts;
    let p = &mut tally.progress;
    if attempts > 0 {
        p.attempted += 1;
    }
    match done.delivery.answer {
        Answer::Accepted { replayed } => {
            if replayed {
                p.duplicates += 1;
            } else {
                p.accepted += 1;
            }
            tally.unreachable_streak = 0;
            writes.push(EventOutcome::Delivered { id, attempts });
        }
        Answer::Duplicate => {
            p.duplicates += 1;
            tally.unreachable_streak = 0;
            writes.push(EventOutcome::Delivered { id, attempts });
        }
        Answer::Refused { message } => {
            p.failed += 1;
            tally.unreachable_streak = 0;
            writes.push(EventOutcome::Refused {
                id,
                attempts,
                error: message,
            });
        }
        Answer::Transient { message, .. } => {
            tally.undelivered += 1;
            tally.unreachable_streak += 1;
            writes.push(EventOutcome::Undelivered {
                id,
                attempts,
                error: message.clone(),
            });
            if tally.unreachable_streak >= GIVE_UP_AFTER {
                return Some(Reason::Unreachable(message));
            }
        }
        Answer::Unauthorized { message } => {
            tally.undelivered += 1;
            return Some(Reason::BadKey(message));
        }
        Answer::NotSent => {}
    }
    None
}

/// A worker: take a job, deliver it (retries included), hand back the answer.
fn work(
    sender: &Sender,
    stop: &AtomicBool,
    jobs: &Mutex<mpsc::Receiver<Job>>,
    done: mpsc::Sender<Done>,
) {
    loop {
        let next = jobs.lock().unwrap_or_else(|p| p.into_inner()).recv();
        let Ok(job) = next else { return };
        let delivery = if stop.load(Ordering::Relaxed) {
            Delivery {
                answer: Answer::NotSent,
                attempts: 0,
            }
        } else {
            sender
                .client
                .deliver(&job.meter_event(), &sender.policy, &sender.limiter, stop)
        };
        if done.send(Done { job, delivery }).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(c: &str) -> MeterKey {
        (c.to_string(), "m".to_string())
    }

    #[test]
    fn one_job_per_key_is_out_and_order_is_kept() {
        let mut q = KeyedQueue::new();
        q.push(key("a"), 1);
        q.push(key("a"), 2);
        q.push(key("b"), 3);
        q.push(key("a"), 4);
        assert_eq!(q.len(), 4);
        assert_eq!(q.pop_ready(), Some(1));
        assert_eq!(q.pop_ready(), Some(3));
        // a's next job waits until 1 is done.
        assert_eq!(q.pop_ready(), None);
        q.release(&key("a"));
        assert_eq!(q.pop_ready(), Some(2));
        q.release(&key("b"));
        q.release(&key("a"));
        assert_eq!(q.pop_ready(), Some(4));
        q.release(&key("a"));
        assert_eq!(q.len(), 0);
        assert!(q.claimed.is_empty() && q.waiting.is_empty());
    }

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
        };
        let mut report = dry_run_report(&preview, Instant::now());
        assert!(report.all_delivered());
        report.undelivered = 1;
        assert!(!report.all_delivered());
        report.undelivered = 0;
        report.stopped = Some(CANCELLED.into());
        assert!(!report.all_delivered());
    }
}
