//! The concurrent part of a sync: worker threads sending events, a reader thread paging
//! through the outbox, a writer thread committing answers, all around one shared board.
//!
//! Workers take the next ready job straight off the board (no dispatcher thread in between,
//! so no hand-off per event), and a job is ready only while no other job of its customer and
//! meter is out: Stripe allows one request in flight per pair. SQLite stays off the workers'
//! path: the reader and the writer have their own connections.
//!
//! Fairness: a customer with a large backlog can only go one request at a time, so its events
//! must not fill the queue ahead of everyone else's. The reader pages through the outbox in
//! time order, but once a customer has `CUSTOMER_CAP` events queued, the rest of that
//! customer's events are read on their own (from where it stood, through the customer's
//! index, `CUSTOMER_PAGE` at a time as its queue runs low) and the time-ordered pages skip it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::client::EventDelivery;
use super::keyed_queue::KeyedQueue;
use super::{Answer, Client, MeterEvent, RateLimiter, RetryPolicy};
use crate::clock::Clock;
use crate::store::{
    EventOutcome, OutboxCursor, OutboxEvent, OutboxUnit, OutboxWindow, StripeMeters,
};
use crate::{Error, Result, Store};

/// Answers are committed at least this often, or as soon as `WRITE_BATCH` are waiting.
const WRITE_EVERY: Duration = Duration::from_millis(100);
const WRITE_BATCH: usize = 256;
const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);
const PROGRESS_EVERY: Duration = Duration::from_millis(50);
/// Outbox rows read per query, and the queue depth below which the next page is read.
const PAGE: u64 = 1024;
const QUEUE_LOW: usize = 4096;
/// Events of one customer queued (or out) at most, before it is read on its own; refilled
/// by `CUSTOMER_PAGE` once down to `CUSTOMER_LOW`.
const CUSTOMER_CAP: usize = 256;
const CUSTOMER_LOW: usize = 64;
const CUSTOMER_PAGE: usize = CUSTOMER_CAP - CUSTOMER_LOW;
/// This many events in a row that exhausted their retries means Stripe is unreachable.
pub(crate) const GIVE_UP_AFTER: u32 = 3;
/// `SyncReport::stopped` of a run stopped by its cancel flag (Ctrl-C, Esc in the dashboard).
pub const CANCELLED: &str = "cancelled";

/// Counts of a running sync, reported to the caller's `on_progress` as answers come in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncProgress {
    /// Meter events the run set out to send.
    pub total: u64,
    /// Sent at least once so far.
    pub attempted: u64,
    /// Newly accepted by Stripe.
    pub accepted: u64,
    /// Stripe already had them.
    pub duplicates: u64,
    /// Refused by Stripe.
    pub failed: u64,
}

impl SyncProgress {
    /// `pass`'s counts on top of these (the passes before it), out of `total`.
    pub(crate) fn plus(&self, pass: &SyncProgress, total: u64) -> SyncProgress {
        SyncProgress {
            total,
            attempted: self.attempted + pass.attempted,
            accepted: self.accepted + pass.accepted,
            duplicates: self.duplicates + pass.duplicates,
            failed: self.failed + pass.failed,
        }
    }
}

/// What the workers share: the HTTP client, the retry policy and the rate limiter.
pub(crate) struct Transport<'a> {
    pub client: &'a Client,
    pub policy: RetryPolicy,
    pub limiter: RateLimiter,
}

/// Everything a pipeline run needs besides the two connections.
pub(crate) struct RunSpec<'a> {
    pub transport: &'a Transport<'a>,
    /// Where each meter's events go in Stripe.
    pub meters: &'a StripeMeters,
    pub workers: usize,
    pub window: OutboxWindow,
    pub limit: Option<u64>,
    pub run_id: i64,
    /// The run's clock: its start (`Clock::start`, what events are dated as sent at) moving
    /// on with real time.
    pub clock: Clock,
    /// What a job is: a usage event, or a report standing for many. A customer has only a
    /// few reports (one per meter and period), so they need no per-customer reading.
    pub unit: OutboxUnit,
    /// Test-only fault: make a thread panic.
    pub panic_hook: Option<PanicHook>,
}

/// Where a test makes the pipeline panic, to prove a panic ends the run instead of hanging it.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PanicHook {
    /// The worker taking the n-th event (1-based) panics.
    Worker(u64),
    /// The reader panics on its first page.
    Reader,
}

/// How the pipeline ended.
#[derive(Default)]
pub(crate) struct Outcome {
    pub progress: SyncProgress,
    /// Events that hit transient errors until the attempt bound (or the run stopped).
    pub undelivered: u64,
    /// Why it stopped early, if it did.
    pub stopped: Option<String>,
    /// A refused API key or a TLS failure: returned to the caller after the run is recorded.
    pub fatal: Option<Error>,
    /// Events whose request reached the server at least once.
    pub reached: u64,
    /// Why the last event that never reached the server could not connect.
    pub not_connected: Option<String>,
    /// What the writer committed to the database: the counts a failed run records.
    pub marked: SyncProgress,
    /// Usage events the writer marked reported.
    pub events_reported: u64,
    /// Jobs (event or report ids) that never reached Stripe in this run: left in the queue,
    /// stopped before their first attempt, or never connected. Their dating as sent is undone.
    pub unsent: Vec<i64>,
    /// A reader, writer or thread failure (a panic included): the run failed.
    pub error: Option<Error>,
}

impl Outcome {
    /// Take in a later pass of the same run (reports, then events).
    pub(crate) fn absorb(&mut self, pass: Outcome) {
        // Each pass is told the run's whole total.
        let total = pass.progress.total;
        self.progress = self.progress.plus(&pass.progress, total);
        self.marked = self.marked.plus(&pass.marked, total);
        self.undelivered += pass.undelivered;
        self.reached += pass.reached;
        self.events_reported += pass.events_reported;
        // `unsent` is not taken: each pass undates its own (report ids or event ids).
        self.stopped = self.stopped.take().or(pass.stopped);
        self.fatal = self.fatal.take().or(pass.fatal);
        self.not_connected = pass.not_connected.or(self.not_connected.take());
        self.error = self.error.take().or(pass.error);
    }
}

/// (Stripe customer, meter event name), interned.
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
            value: self.event.value,
            identifier: &self.identifier,
            timestamp: self.event.occurred_at.timestamp(),
            dimensions: &self.event.dimensions,
        }
    }
}

/// The shared state, under one mutex.
struct State {
    queue: KeyedQueue<MeterKey, Job>,
    keys: HashMap<(String, String), MeterKey>,
    /// The reader has been asked for a page and not answered yet.
    page_asked: bool,
    /// The outbox (or the limit) is exhausted, customers read on their own included.
    drained: bool,
    /// The time-ordered pages reached the end of the outbox (or the limit).
    pages_done: bool,
    /// Per customer id: events queued or out.
    per_customer: HashMap<String, usize>,
    /// Customers read on their own, with where their reading stands (`None`: all read).
    own: HashMap<String, Option<OutboxCursor>>,
    /// No new jobs are taken (cancelled, bad key, unreachable, or a thread failed).
    stopping: bool,
    workers_running: usize,
    /// Answers waiting for the writer, and their counts.
    writes: Vec<EventOutcome>,
    writes_tally: SyncProgress,
    outcome: Outcome,
    unreachable_streak: u32,
    /// Events handed to workers so far (for the test-only panic hook).
    taken: u64,
}

struct Board {
    state: Mutex<State>,
    /// Workers wait here for a ready job.
    work: Condvar,
    /// The reader waits here for a page request.
    reader: Condvar,
    /// The writer and the coordinator wait here.
    coordinator: Condvar,
    /// Mirrors `stopping` for retry pauses, which run outside the lock.
    stop: AtomicBool,
}

impl Board {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wait on the coordinator condition at most `timeout`.
    fn wait_coordinator<'a>(
        &self,
        state: MutexGuard<'a, State>,
        timeout: Duration,
    ) -> MutexGuard<'a, State> {
        self.coordinator
            .wait_timeout(state, timeout)
            .unwrap_or_else(|p| p.into_inner())
            .0
    }

    /// Stop taking new jobs and wake everyone so they notice.
    fn halt(&self, state: &mut State, reason: String) {
        if !state.stopping {
            state.stopping = true;
            state.outcome.stopped.get_or_insert(reason);
        }
        self.stop.store(true, Ordering::Relaxed);
        self.work.notify_all();
        self.reader.notify_all();
        self.coordinator.notify_all();
    }

    /// Ask the reader for the next page early, so the queue never runs dry while it is read:
    /// a time-ordered page when the queue is short, or more of a customer read on its own
    /// once its events run low.
    fn want_page(&self, state: &mut State) {
        if state.stopping || state.drained || state.page_asked {
            return;
        }
        if (!state.pages_done && state.queue.len() < QUEUE_LOW) || state.needs_refill() {
            state.page_asked = true;
            self.reader.notify_one();
        }
    }
}

/// Run the pipeline to the end: the outbox drained, or stopped early. A failure of a thread
/// (a panic included) stops the run and comes back in `Outcome::error`, with what was done.
pub(crate) fn run(
    store: &mut Store,
    reader_store: Store,
    spec: &RunSpec,
    cancel: &AtomicBool,
    on_progress: &mut dyn FnMut(&SyncProgress),
    total: u64,
) -> Outcome {
    let board = Board {
        state: Mutex::new(State {
            queue: KeyedQueue::new(),
            keys: HashMap::new(),
            page_asked: false,
            drained: false,
            pages_done: false,
            per_customer: HashMap::new(),
            own: HashMap::new(),
            stopping: false,
            workers_running: spec.workers,
            writes: Vec::new(),
            writes_tally: SyncProgress::default(),
            outcome: Outcome {
                progress: SyncProgress {
                    total,
                    ..SyncProgress::default()
                },
                ..Outcome::default()
            },
            unreachable_streak: 0,
            taken: 0,
        }),
        work: Condvar::new(),
        reader: Condvar::new(),
        coordinator: Condvar::new(),
        stop: AtomicBool::new(false),
    };
    board.want_page(&mut board.lock());
    std::thread::scope(|scope| {
        // Named threads: they show up as such in top, perf and debuggers.
        let spawn = |name: &str| std::thread::Builder::new().name(name.to_string());
        let board = &board;
        let mut started = 0;
        let mut spawn_error = None;
        for _ in 0..spec.workers {
            let body = move || guarded(board, "a sync worker", || work(board, spec));
            match spawn("sync-worker").spawn_scoped(scope, body) {
                Ok(_) => started += 1,
                Err(e) => spawn_error = Some(e),
            }
        }
        let reader = spawn("sync-reader")
            .spawn_scoped(scope, move || {
                guarded(board, "the outbox reader", || {
                    read(board, &reader_store, spec)
                })
            })
            .map_err(|e| spawn_error = Some(e))
            .is_ok();
        let writer = spawn("sync-writer")
            .spawn_scoped(scope, move || {
                guarded(board, "the database writer", || write(board, store, spec))
            })
            .map_err(|e| spawn_error = Some(e))
            .is_ok();
        {
            let mut state = board.lock();
            // Workers that started may already have finished (an empty outbox): only take
            // off the ones that never started.
            state.workers_running -= spec.workers - started;
            if let Some(e) = spawn_error {
                state.outcome.error =
                    Some(Error::Stripe(format!("cannot start a sync thread: {e}")));
                board.halt(&mut state, "a sync thread could not start".into());
            }
            if !reader || !writer {
                // Without them nothing can finish: let the workers run dry.
                state.drained = true;
            }
        }
        coordinate(board, cancel, on_progress);
    });
    let state = board.into_inner_state();
    let mut outcome = state.outcome;
    outcome
        .unsent
        .extend(state.queue.into_items().into_iter().map(|job| job.event.id));
    outcome
}

/// Run a thread's body; a panic in it becomes the run's error and stops the run, so nobody
/// waits for the dead thread (its own guards, like `Running`, have already run by then).
fn guarded(board: &Board, who: &str, body: impl FnOnce()) {
    let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) else {
        return;
    };
    let why = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into());
    let mut state = board.lock();
    state
        .outcome
        .error
        .get_or_insert_with(|| Error::Stripe(format!("{who} failed unexpectedly (panic: {why})")));
    // A dead reader will not read again, a dead writer will not write: the others wind down.
    state.drained = true;
    board.halt(&mut state, format!("{who} failed unexpectedly"));
}

/// Counts a worker as running until it ends, however it ends (a panic included).
struct Running<'a>(&'a Board);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.workers_running -= 1;
        // Whoever is still waiting for work may be done too.
        self.0.work.notify_all();
        self.0.coordinator.notify_all();
    }
}

impl State {
    /// Customers read on their own whose queue runs low, with where to go on from.
    fn refills(&self) -> Vec<(String, OutboxCursor)> {
        self.own
            .iter()
            .filter(|(customer, cursor)| cursor.is_some() && self.runs_low(customer))
            .filter_map(|(customer, cursor)| Some((customer.clone(), cursor.clone()?)))
            .collect()
    }

    fn needs_refill(&self) -> bool {
        self.own
            .iter()
            .any(|(customer, cursor)| cursor.is_some() && self.runs_low(customer))
    }

    fn runs_low(&self, customer: &str) -> bool {
        self.per_customer.get(customer).copied().unwrap_or(0) <= CUSTOMER_LOW
    }

    /// Queue one event read from the outbox.
    fn push(&mut self, event: OutboxEvent) {
        let next_key = self.keys.len() as MeterKey;
        let key = *self
            .keys
            .entry((event.stripe_customer_id.clone(), event.event_name.clone()))
            .or_insert(next_key);
        *self
            .per_customer
            .entry(event.customer_id.clone())
            .or_default() += 1;
        let identifier = event.identifier.clone();
        self.queue.push(
            key,
            Job {
                event,
                identifier,
                key,
            },
        );
    }

    /// An event from a time-ordered page: queued, unless its customer is (or now becomes)
    /// read on its own. `fair`: false under `--limit`, which sends strictly oldest first.
    fn admit(&mut self, event: OutboxEvent, fair: bool) {
        if self.own.contains_key(&event.customer_id) {
            return;
        }
        let queued = self.per_customer.get(&event.customer_id).copied();
        if fair && queued.unwrap_or(0) >= CUSTOMER_CAP {
            let from = OutboxCursor::before(&event);
            self.own.insert(event.customer_id, Some(from));
            return;
        }
        self.push(event);
    }

    /// A job of `customer` is done.
    fn finished(&mut self, customer: &str) {
        if let Some(n) = self.per_customer.get_mut(customer) {
            *n -= 1;
            if *n == 0 {
                self.per_customer.remove(customer);
            }
        }
    }
}

impl Board {
    fn into_inner_state(self) -> State {
        self.state.into_inner().unwrap_or_else(|p| p.into_inner())
    }
}

/// The caller's thread: watch for cancel, report progress, wait for the workers to finish,
/// then release the reader and the writer (which flushes the last answers).
fn coordinate(board: &Board, cancel: &AtomicBool, on_progress: &mut dyn FnMut(&SyncProgress)) {
    let mut last_progress = Instant::now();
    let mut state = board.lock();
    loop {
        if cancel.load(Ordering::Relaxed) && !state.stopping {
            board.halt(&mut state, CANCELLED.into());
        }
        if state.workers_running == 0 {
            // Everything sent is settled: the reader and writer may finish.
            state.stopping = true;
            board.reader.notify_all();
            board.coordinator.notify_all();
            return;
        }
        if last_progress.elapsed() >= PROGRESS_EVERY {
            let progress = state.outcome.progress.clone();
            drop(state);
            on_progress(&progress);
            last_progress = Instant::now();
            state = board.lock();
            continue;
        }
        state = board.wait_coordinator(state, PROGRESS_EVERY);
    }
}

/// A worker: take the next ready job, deliver it (retries included), settle the answer.
fn work(board: &Board, spec: &RunSpec) {
    let _running = Running(board);
    let transport = spec.transport;
    let mut state = board.lock();
    loop {
        if state.stopping {
            break;
        }
        if let Some(job) = state.queue.pop_ready() {
            board.want_page(&mut state);
            state.taken += 1;
            let panic_now = spec.panic_hook == Some(PanicHook::Worker(state.taken));
            drop(state);
            if panic_now {
                panic!("test fault: worker panic on event {}", job.event.id);
            }
            let delivery = match unnamed(&job.event.event_name) {
                Some(held) => held,
                None => transport.client.deliver(
                    &job.meter_event(),
                    &transport.policy,
                    &transport.limiter,
                    &board.stop,
                ),
            };
            state = board.lock();
            state.queue.release(&job.key);
            state.finished(&job.event.customer_id);
            settle(board, &mut state, &job, delivery);
            board.want_page(&mut state);
            continue;
        }
        if state.drained && state.queue.len() == 0 {
            break;
        }
        state = board.work.wait(state).unwrap_or_else(|p| p.into_inner());
    }
}

/// A job whose event name is no Stripe event name (a `stripe_event` pattern filled with a
/// group's value, or left unfilled by an event without one) is never sent: it is refused here,
/// so it stays unreported and failed with the reason, which `status`, `doctor` and the
/// dashboard show (docs/sync.md, "Prices per model").
fn unnamed(name: &str) -> Option<EventDelivery> {
    if crate::config::is_stripe_event_name(name) {
        return None;
    }
    let why = if name.contains('{') {
        "its event has no value for a placeholder of the meter's stripe_event"
    } else {
        "a group's value fills the meter's stripe_event with characters Stripe does not take \
         (letters, digits, '_', '-', '.', ':'; at most 100)"
    };
    Some(EventDelivery {
        answer: Answer::Refused {
            message: format!("held, not sent: \"{name}\" is no Stripe event name; {why}"),
        },
        attempts: 0,
        reached: false,
    })
}

/// Count one finished event and queue its write-back; stop the run when it must stop.
fn settle(board: &Board, state: &mut State, job: &Job, delivery: EventDelivery) {
    let id = job.event.id;
    let attempts = delivery.attempts;
    // The same counts for the run's progress and for what waits to be written.
    let tally = |state: &mut State, count: fn(&mut SyncProgress)| {
        count(&mut state.outcome.progress);
        count(&mut state.writes_tally);
    };
    if attempts > 0 {
        tally(state, |p| p.attempted += 1);
    }
    if delivery.reached {
        state.outcome.reached += 1;
    } else if !matches!(delivery.answer, Answer::Fatal { .. }) {
        // Never got to Stripe: not in doubt. (A TLS failure may have; it stays dated.)
        state.outcome.unsent.push(id);
    }
    let mut halt = None;
    match delivery.answer {
        Answer::Accepted { replayed } => {
            if replayed {
                tally(state, |p| p.duplicates += 1);
            } else {
                tally(state, |p| p.accepted += 1);
            }
            state.unreachable_streak = 0;
            state.writes.push(EventOutcome::Delivered { id, attempts });
        }
        Answer::Duplicate => {
            tally(state, |p| p.duplicates += 1);
            state.unreachable_streak = 0;
            state.writes.push(EventOutcome::Delivered { id, attempts });
        }
        Answer::Refused { message } => {
            tally(state, |p| p.failed += 1);
            state.unreachable_streak = 0;
            state.writes.push(EventOutcome::Refused {
                id,
                attempts,
                error: message,
            });
        }
        Answer::Transient { message, .. } | Answer::NotConnected { message } => {
            if !delivery.reached {
                state.outcome.not_connected = Some(message.clone());
            }
            state.outcome.undelivered += 1;
            state.unreachable_streak += 1;
            if state.unreachable_streak >= GIVE_UP_AFTER {
                halt = Some(format!(
                    "gave up: {GIVE_UP_AFTER} events in a row could not be delivered after all \
                     retries (last error: {message})"
                ));
            }
            state.writes.push(EventOutcome::Undelivered {
                id,
                attempts,
                error: message,
            });
        }
        Answer::Unauthorized { message } => {
            state.outcome.undelivered += 1;
            if state.outcome.fatal.is_none() && !state.stopping {
                state.outcome.fatal = Some(Error::StripeConfig(format!(
                    "Stripe refused the API key ({message}); check STRIPE_API_KEY (a secret key \
                     sk_... or a restricted key with write access to meter events). Nothing \
                     more was sent"
                )));
            }
            halt = Some(format!("Stripe refused the API key ({message})"));
        }
        Answer::Fatal { message } => {
            state.outcome.undelivered += 1;
            if state.outcome.fatal.is_none() && !state.stopping {
                state.outcome.fatal = Some(Error::StripeConfig(format!(
                    "the connection to Stripe cannot be trusted ({message}); check the API base \
                     and the machine's certificates and clock. Nothing more was sent"
                )));
            }
            halt = Some(message);
        }
        Answer::NotSent => {}
    }
    if let Some(reason) = halt {
        board.halt(state, reason);
    }
    if state.writes.len() >= WRITE_BATCH {
        board.coordinator.notify_all();
    }
}

/// The reader: one round per request (a time-ordered page and the refills of customers read
/// on their own), so at most a few pages are in memory.
fn read(board: &Board, store: &Store, spec: &RunSpec) {
    let mut cursor: Option<OutboxCursor> = None;
    let mut loaded = 0u64;
    let fair = spec.limit.is_none() && spec.unit == OutboxUnit::Events;
    loop {
        let mut state = board.lock();
        while !state.page_asked && !state.stopping {
            state = board.reader.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        if state.stopping {
            return;
        }
        let want_page = !state.pages_done && state.queue.len() < QUEUE_LOW;
        let refills = state.refills();
        drop(state);
        if spec.panic_hook == Some(PanicHook::Reader) {
            panic!("test fault: reader panic");
        }
        let want = spec.limit.map_or(PAGE, |l| PAGE.min(l - loaded));
        let page = match (want_page, want) {
            (false, _) => Ok(None),
            (true, 0) => Ok(Some((Vec::new(), None))),
            (true, _) => store
                .outbox_page(
                    spec.unit,
                    spec.meters,
                    &spec.window,
                    cursor.as_ref(),
                    want as usize,
                )
                .map(Some),
        };
        let refilled: Result<Vec<_>> = refills
            .into_iter()
            .map(|(customer, from)| {
                let page = store.outbox_page_of(
                    spec.meters,
                    &spec.window,
                    &customer,
                    &from,
                    CUSTOMER_PAGE,
                )?;
                Ok((customer, page))
            })
            .collect();
        // Date what is about to go out, in one transaction.
        let page = page.and_then(|page| {
            let refilled = refilled?;
            let ids: Vec<i64> = page
                .iter()
                .flat_map(|(jobs, _)| jobs)
                .chain(refilled.iter().flat_map(|(_, (jobs, _))| jobs))
                .map(|job| job.id)
                .collect();
            // The run's start: `Store::undate_unsent` undoes exactly this run's dating.
            store.mark_sent(spec.unit, &ids, spec.clock.start())?;
            Ok((page, refilled))
        });
        let mut state = board.lock();
        state.page_asked = false;
        match page {
            Ok((page, refilled)) => {
                if let Some((events, next)) = page {
                    loaded += events.len() as u64;
                    cursor = next.or(cursor);
                    // Done when the outbox ran out or the limit is reached.
                    state.pages_done = (events.len() as u64) < want || spec.limit == Some(loaded);
                    for event in events {
                        state.admit(event, fair);
                    }
                }
                for (customer, (events, next)) in refilled {
                    let more = events.len() == CUSTOMER_PAGE;
                    for event in events {
                        state.push(event);
                    }
                    if let Some(own) = state.own.get_mut(&customer) {
                        *own = if more { next } else { None };
                    }
                }
                state.drained = state.pages_done && state.own.values().all(Option::is_none);
                board.want_page(&mut state);
            }
            Err(error) => {
                state.outcome.error.get_or_insert(error);
                state.drained = true;
                board.halt(&mut state, "reading the outbox failed".into());
            }
        }
        board.work.notify_all();
        if state.drained {
            return;
        }
    }
}

/// The writer: commits answers in small batches and keeps the lock's heartbeat fresh. Ends,
/// after a last commit, once the workers are done.
fn write(board: &Board, store: &mut Store, spec: &RunSpec) {
    let mut last_beat = Instant::now();
    loop {
        let mut state = board.lock();
        let deadline = Instant::now() + WRITE_EVERY;
        while state.writes.len() < WRITE_BATCH && state.workers_running > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state = board.wait_coordinator(state, left);
        }
        let batch = std::mem::take(&mut state.writes);
        let tally = std::mem::take(&mut state.writes_tally);
        let finished = state.workers_running == 0;
        drop(state);
        let mut result = Ok(());
        let mut reported = 0;
        if !batch.is_empty() {
            result = store
                .record_outcomes(spec.unit, &batch, spec.clock.now())
                .map(|n| reported = n);
        }
        if result.is_ok() && last_beat.elapsed() >= HEARTBEAT_EVERY {
            result = store.sync_heartbeat(spec.run_id);
            last_beat = Instant::now();
        }
        if let Err(error) = result {
            let mut state = board.lock();
            state.outcome.error.get_or_insert(error);
            board.halt(&mut state, "writing to the database failed".into());
            return;
        }
        if !batch.is_empty() {
            let mut state = board.lock();
            state.outcome.events_reported += reported;
            let marked = &mut state.outcome.marked;
            marked.attempted += tally.attempted;
            marked.accepted += tally.accepted;
            marked.duplicates += tally.duplicates;
            marked.failed += tally.failed;
        }
        if finished {
            return;
        }
    }
}
