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

#[derive(Clone, Debug, Default)]
pub struct SyncProgress {
    pub total: u64,
    pub attempted: u64,
    pub accepted: u64,
    pub duplicates: u64,
    pub failed: u64,
}

#[derive(Clone, Debug, Serialize)]
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
#[derive(Debug, Clone, Serialize)]
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
    let transport = Transport {
        client: &client,
        policy: RetryPolicy::from_settings(&config.stripe),
        limiter: RateLimiter::per_second(super::rate_limit(config, key)),
    };
    let mut engine = Engine {
        store: &mut store,
        db,
        workers: config.stripe.workers.max(1),
        window: outbox_window(now, options),
        limit: options.limit,
        run_id,
        clock,
    };
    let result = engine.run(&transport, cancel, on_progress);
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

const CANCELLED: &str = "cancelled";

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

/// (Stripe customer, meter event name), interned: Stripe allows one request in flight per pair.
type MeterKey = u32;

struct Job {
    event: OutboxEvent,
    identifier: String,
    key: MeterKey,
}

impl Job {
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

/// What the dispatcher hears: outbox pages from the reader, answers from the workers.
enum Msg {
    /// The next events, oldest first; `last` when the outbox (or the limit) is exhausted.
    Page { events: Vec<OutboxEvent>, last: bool },
    ReadFailed(Error),
    Done(Done),
}

/// Jobs in outbox order, released so that at most one per key is out at a time; later jobs of
/// a busy key wait, in order, without holding up other keys.
struct KeyedQueue<K, T> {
    ready: VecDeque<(K, T)>,
    waiting: HashMap<K, VecDeque<T>>,
    /// Keys with a job ready or out.
    claimed: HashSet<K>,
    queued: usize,
}

impl<K: std::hash::Hash + Eq + Clone, T> KeyedQueue<K, T> {
    fn new() -> Self {
        KeyedQueue {
            ready: VecDeque::new(),
            waiting: HashMap::new(),
            claimed: HashSet::new(),
            queued: 0,
        }
    }

    fn push(&mut self, key: K, item: T) {
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
    fn release(&mut self, key: &K) {
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
struct Transport<'a> {
    client: &'a Client,
    policy: RetryPolicy,
    limiter: RateLimiter,
}

/// One run's moving parts. Three roles keep SQLite off the hot path: a reader thread pages
/// through the outbox on its own connection, this dispatcher only shuffles jobs in memory,
/// and a writer thread commits the answers in batches on the run's connection.
struct Engine<'a> {
    store: &'a mut Store,
    db: &'a Path,
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
        transport: &Transport,
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
        let reader_store = Store::open(self.db)?;
        let (window, limit, run_id, clock) = (self.window, self.limit, self.run_id, self.clock);

        let stop = AtomicBool::new(false);
        let (msg_tx, msg_rx) = mpsc::channel::<Msg>();
        let (page_tx, page_rx) = mpsc::channel::<()>();
        let (job_tx, job_rx) = mpsc::channel::<Job>();
        let (write_tx, write_rx) = mpsc::channel::<Vec<EventOutcome>>();
        let job_rx = Mutex::new(job_rx);
        let dispatcher = Dispatcher {
            database_id: &database_id,
            workers: self.workers,
            jobs: job_tx,
            page_requests: page_tx,
            writes: write_tx,
            stop: &stop,
        };
        let store = &mut *self.store;
        let (dispatched, written) = std::thread::scope(|scope| {
            // Named threads: they show up as such in top, perf and debuggers.
            let spawn = |name: &str| std::thread::Builder::new().name(name.to_string());
            let spawned = (|| {
                for _ in 0..self.workers {
                    let msg_tx = msg_tx.clone();
                    let (stop, job_rx) = (&stop, &job_rx);
                    spawn("sync-worker")
                        .spawn_scoped(scope, move || work(transport, stop, job_rx, msg_tx))?;
                }
                spawn("sync-reader").spawn_scoped(scope, move || {
                    read_outbox(reader_store, window, limit, page_rx, msg_tx)
                })?;
                spawn("sync-writer")
                    .spawn_scoped(scope, move || write_back(store, run_id, clock, write_rx))
            })();
            let writer = match spawned {
                Ok(writer) => writer,
                Err(e) => {
                    // Closing the dispatcher's channels ends the threads already started.
                    drop(dispatcher);
                    return Err(Error::Stripe(format!("cannot start a sync thread: {e}")));
                }
            };
            let dispatched = dispatcher.run(&msg_rx, cancel, &mut tally, on_progress);
            // Whatever happened, the other threads must wind down before the scope ends.
            stop.store(true, Ordering::Relaxed);
            let written = writer
                .join()
                .unwrap_or_else(|_| Err(Error::Stripe("the sync writer thread panicked".into())));
            Ok((dispatched, written))
        })?;
        written?;
        let (stopped, fatal) = dispatched?;
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
}

/// The reader: one page per request from the dispatcher, so at most a few pages are in memory.
fn read_outbox(
    store: Store,
    window: OutboxWindow,
    limit: Option<u64>,
    requests: mpsc::Receiver<()>,
    out: mpsc::Sender<Msg>,
) {
    let mut cursor: Option<OutboxCursor> = None;
    let mut loaded = 0u64;
    for () in requests {
        let want = limit.map_or(PAGE, |l| PAGE.min(l - loaded));
        let page = if want == 0 {
            Ok((Vec::new(), None))
        } else {
            store.outbox_page(&window, cursor.as_ref(), want as usize)
        };
        let msg = match page {
            Ok((events, next)) => {
                loaded += events.len() as u64;
                cursor = next.or(cursor);
                // Done when the outbox ran out or the limit is reached.
                let last = (events.len() as u64) < want || limit == Some(loaded);
                Msg::Page { events, last }
            }
            Err(error) => Msg::ReadFailed(error),
        };
        let end = !matches!(msg, Msg::Page { last: false, .. });
        if out.send(msg).is_err() || end {
            return;
        }
    }
}

/// The writer: commits answers in small batches (every `WRITE_BATCH` or `WRITE_EVERY`) and
/// keeps the lock's heartbeat fresh. Ends, after a last commit, when the dispatcher hangs up.
fn write_back(
    store: &mut Store,
    run_id: i64,
    clock: Clock,
    batches: mpsc::Receiver<Vec<EventOutcome>>,
) -> Result<()> {
    let mut pending: Vec<EventOutcome> = Vec::new();
    let (mut last_write, mut last_beat) = (Instant::now(), Instant::now());
    loop {
        let closed = match batches.recv_timeout(WRITE_EVERY) {
            Ok(batch) => {
                pending.extend(batch);
                false
            }
            Err(mpsc::RecvTimeoutError::Timeout) => false,
            Err(mpsc::RecvTimeoutError::Disconnected) => true,
        };
        let due = closed || pending.len() >= WRITE_BATCH || last_write.elapsed() >= WRITE_EVERY;
        if due && !pending.is_empty() {
            store.record_outcomes(&pending, clock.now())?;
            pending.clear();
            last_write = Instant::now();
        }
        if last_beat.elapsed() >= HEARTBEAT_EVERY {
            store.sync_heartbeat(run_id)?;
            last_beat = Instant::now();
        }
        if closed {
            return Ok(());
        }
    }
}

/// The dispatcher's ends of the channels.
struct Dispatcher<'a> {
    database_id: &'a str,
    workers: usize,
    jobs: mpsc::Sender<Job>,
    page_requests: mpsc::Sender<()>,
    writes: mpsc::Sender<Vec<EventOutcome>>,
    stop: &'a AtomicBool,
}

impl Dispatcher<'_> {
    /// Feed the workers in outbox order, one job per key out at a time; pass answers to the
    /// writer. Returns why it stopped early (if it did) and a fatal error, if any. Consumes
    /// itself so that every channel closes when it returns.
    fn run(
        self,
        inbox: &mpsc::Receiver<Msg>,
        cancel: &AtomicBool,
        tally: &mut Tally,
        on_progress: &mut dyn FnMut(&SyncProgress),
    ) -> Result<(Option<String>, Option<Error>)> {
        let mut queue: KeyedQueue<MeterKey, Job> = KeyedQueue::new();
        let mut keys: HashMap<(String, String), MeterKey> = HashMap::new();
        let (mut page_asked, mut drained, mut out) = (false, false, 0usize);
        let mut stopped: Option<String> = None;
        let mut fatal: Option<Error> = None;
        let mut last_progress = Instant::now();
        loop {
            if stopped.is_none() && cancel.load(Ordering::Relaxed) {
                stopped = Some(CANCELLED.into());
                self.stop.store(true, Ordering::Relaxed);
            }
            // Ask for the next page early, so the queue never runs dry while it is read.
            if stopped.is_none() && !drained && !page_asked && queue.len() < QUEUE_LOW {
                page_asked = self.page_requests.send(()).is_ok();
                drained = !page_asked;
            }
            // Enough jobs out that no worker waits for the dispatcher.
            while stopped.is_none() && out < self.workers * 4 {
                let Some(job) = queue.pop_ready() else { break };
                if self.jobs.send(job).is_err() {
                    return Err(Error::Stripe("the sync workers stopped unexpectedly".into()));
                }
                out += 1;
            }
            if out == 0 && (stopped.is_some() || (drained && queue.len() == 0)) {
                break;
            }
            let first = match inbox.recv_timeout(Duration::from_millis(50)) {
                Ok(msg) => msg,
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(Error::Stripe("the sync workers stopped unexpectedly".into()));
                }
            };
            let mut writes = Vec::new();
            for msg in std::iter::once(first).chain(inbox.try_iter()) {
                match msg {
                    Msg::Page { events, last } => {
                        page_asked = false;
                        drained = last;
                        for event in events {
                            let next_key = keys.len() as MeterKey;
                            let key = *keys
                                .entry((event.stripe_customer_id.clone(), event.event_name.clone()))
                                .or_insert(next_key);
                            let identifier = super::identifier(self.database_id, event.id);
                            queue.push(key, Job { event, identifier, key });
                        }
                    }
                    Msg::ReadFailed(error) => return Err(error),
                    Msg::Done(done) => {
                        out -= 1;
                        queue.release(&done.job.key);
                        let Some(reason) = settle(done, tally, &mut writes) else {
                            continue;
                        };
                        if stopped.is_none() {
                            self.stop.store(true, Ordering::Relaxed);
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
            }
            if !writes.is_empty() && self.writes.send(writes).is_err() {
                // The writer failed; its error is reported once it is joined.
                self.stop.store(true, Ordering::Relaxed);
                stopped.get_or_insert_with(|| "the database write failed".into());
            }
            if last_progress.elapsed() >= PROGRESS_EVERY {
                on_progress(&tally.progress);
                last_progress = Instant::now();
            }
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
    transport: &Transport,
    stop: &AtomicBool,
    jobs: &Mutex<mpsc::Receiver<Job>>,
    done: mpsc::Sender<Msg>,
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
            transport
                .client
                .deliver(&job.meter_event(), &transport.policy, &transport.limiter, stop)
        };
        if done.send(Msg::Done(Done { job, delivery })).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(c: &str) -> String {
        c.to_string()
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
