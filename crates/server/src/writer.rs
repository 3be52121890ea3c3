//! Group commit: one thread owns the writing connection. Requests queue their events; each
//! round takes everything waiting, records it with one `record_parts` (one committed
//! transaction; each request a part, event by event or, for the drop-in routes, all or
//! nothing), and only then answers each request. Reservation calls (reserve, settle, release)
//! wait in the same queue and share one transaction per round too, each call all or nothing
//! on its own. The async runtime never touches SQLite.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::error::ApiError;
use super::metrics::{Metrics, Outcome};
use crate::clock::Clock;
use crate::store::record::{Atomicity, Part, PartOutcome};
use crate::store::{ReservationAnswer, ReservationCall};
use crate::{Config, RecordOutcome, RecordRequest, Result, Store};

/// The writer's answer to one request: its part of the round.
pub(crate) type Outcomes = std::result::Result<PartOutcome, ApiError>;

enum Work {
    Record {
        requests: Vec<RecordRequest>,
        atomicity: Atomicity,
        reply: oneshot::Sender<Outcomes>,
    },
    /// A reservation call, answered after its round's commit.
    Reservation {
        call: ReservationCall,
        reply: oneshot::Sender<CallAnswer>,
    },
    /// A token was used: update its `last_used_at` with the next commit.
    Touch(String),
}

/// The writer's answer to one reservation call.
pub(crate) type CallAnswer = std::result::Result<ReservationAnswer, ApiError>;

/// Largest number of events one round takes; the rest wait for the next round.
const MAX_ROUND_EVENTS: usize = 20_000;

#[derive(Clone)]
pub(crate) struct Writer {
    tx: SyncSender<Work>,
    metrics: Arc<Metrics>,
}

pub(crate) struct WriterThread {
    handle: JoinHandle<()>,
}

impl Writer {
    /// Start the writer on `store`; `queue` bounds the requests waiting for it.
    pub(crate) fn start(
        store: Store,
        config: Arc<Config>,
        clock: Clock,
        queue: usize,
        metrics: Arc<Metrics>,
    ) -> crate::Result<(Writer, WriterThread)> {
        let (tx, rx) = sync_channel(queue);
        let m = metrics.clone();
        let handle = std::thread::Builder::new()
            .name("meterline-writer".into())
            .spawn(move || run(store, &config, clock, rx, &m))
            .map_err(|e| crate::Error::Database(format!("cannot start the writer thread: {e}")))?;
        Ok((Writer { tx, metrics }, WriterThread { handle }))
    }

    /// Queue events, decided with `atomicity`; the receiver answers after their commit. A
    /// full queue is refused at once.
    pub(crate) fn submit(
        &self,
        requests: Vec<RecordRequest>,
        atomicity: Atomicity,
    ) -> std::result::Result<oneshot::Receiver<Outcomes>, ApiError> {
        let (reply, rx) = oneshot::channel();
        self.metrics.queue_depth.fetch_add(1, Relaxed);
        let work = Work::Record {
            requests,
            atomicity,
            reply,
        };
        match self.tx.try_send(work) {
            Ok(()) => Ok(rx),
            Err(e) => {
                self.metrics.queue_depth.fetch_sub(1, Relaxed);
                Err(match e {
                    TrySendError::Full(_) => ApiError::unavailable(
                        "queue_full",
                        "too many writes are waiting; retry after the Retry-After delay",
                    ),
                    TrySendError::Disconnected(_) => {
                        ApiError::unavailable("shutting_down", "the server is shutting down")
                    }
                })
            }
        }
    }

    /// Queue events and wait for the writer's answer: one result per event, in order, after
    /// their commit. The one write path of every route, native and compatible.
    pub(crate) async fn commit(
        &self,
        requests: Vec<RecordRequest>,
    ) -> std::result::Result<Vec<Result<RecordOutcome>>, ApiError> {
        match self.commit_as(requests, Atomicity::EachEvent).await? {
            PartOutcome::Decided(results) => Ok(results),
            // Never: only an all-or-nothing part is refused whole.
            PartOutcome::Refused(_) => Err(ApiError::from(crate::Error::Database(
                "events recorded one by one were refused whole".into(),
            ))),
        }
    }

    /// Queue events that record all or none (the drop-in routes) and wait for the answer.
    pub(crate) async fn commit_all_or_nothing(
        &self,
        requests: Vec<RecordRequest>,
    ) -> std::result::Result<PartOutcome, ApiError> {
        self.commit_as(requests, Atomicity::AllOrNothing).await
    }

    async fn commit_as(&self, requests: Vec<RecordRequest>, atomicity: Atomicity) -> Outcomes {
        let answer = self.submit(requests, atomicity)?;
        answer.await.map_err(|_| {
            ApiError::unavailable("shutting_down", "the writer stopped before answering")
        })?
    }

    /// Queue a reservation call and wait for its answer, after its round's commit.
    pub(crate) async fn call(&self, call: ReservationCall) -> CallAnswer {
        let (reply, rx) = oneshot::channel();
        self.metrics.queue_depth.fetch_add(1, Relaxed);
        if let Err(e) = self.tx.try_send(Work::Reservation { call, reply }) {
            self.metrics.queue_depth.fetch_sub(1, Relaxed);
            return Err(match e {
                TrySendError::Full(_) => ApiError::unavailable(
                    "queue_full",
                    "too many writes are waiting; retry after the Retry-After delay",
                ),
                TrySendError::Disconnected(_) => {
                    ApiError::unavailable("shutting_down", "the server is shutting down")
                }
            });
        }
        rx.await.map_err(|_| {
            ApiError::unavailable("shutting_down", "the writer stopped before answering")
        })?
    }

    /// Best effort: a full queue drops the touch (it is only "last used").
    pub(crate) fn touch(&self, token_name: &str) {
        let _ = self.tx.try_send(Work::Touch(token_name.to_string()));
    }
}

impl WriterThread {
    /// Wait until every queued request has been committed and answered. All `Writer`
    /// handles must be dropped first.
    pub(crate) fn join(self) {
        let _ = self.handle.join();
    }
}

/// The work one commit round takes.
#[derive(Default)]
struct Round {
    requests: Vec<RecordRequest>,
    /// Each request's part of `requests`, and where its answer goes.
    replies: Vec<(Part, oneshot::Sender<Outcomes>)>,
    /// Reservation calls, and where each answer goes.
    calls: Vec<ReservationCall>,
    call_replies: Vec<oneshot::Sender<CallAnswer>>,
    touched: HashSet<String>,
}

impl Round {
    fn take(&mut self, work: Work, metrics: &Metrics) {
        match work {
            Work::Record {
                requests: mut events,
                atomicity,
                reply,
            } => {
                metrics.queue_depth.fetch_sub(1, Relaxed);
                let part = Part {
                    len: events.len(),
                    atomicity,
                };
                self.replies.push((part, reply));
                self.requests.append(&mut events);
            }
            Work::Reservation { call, reply } => {
                metrics.queue_depth.fetch_sub(1, Relaxed);
                self.calls.push(call);
                self.call_replies.push(reply);
            }
            Work::Touch(name) => {
                self.touched.insert(name);
            }
        }
    }

    /// Events and reservation calls taken so far.
    fn size(&self) -> usize {
        self.requests.len() + self.calls.len()
    }
}

/// The longest a round waits for its requests, as a share of the last round's time.
const FILL_SHARE: u32 = 4;
/// A round stops waiting after this long without a new request.
const FILL_GAP: Duration = Duration::from_micros(200);

impl Round {
    /// Take what is waiting; then, while requests keep coming (none `FILL_GAP` apart), wait for
    /// more until `fill_for` has passed. The clients answered by the last round send their next
    /// requests a moment after its commit: without waiting, a round took the few that had
    /// arrived and the others waited a whole round behind it (on PostgreSQL a round is ~10
    /// round trips whatever its size, so half-full rounds halved the events per second). A
    /// lone client costs at most one `FILL_GAP`.
    fn fill(&mut self, rx: &Receiver<Work>, fill_for: Duration, metrics: &Metrics) {
        let deadline = Instant::now() + fill_for;
        while self.size() < MAX_ROUND_EVENTS {
            if let Ok(work) = rx.try_recv() {
                self.take(work, metrics);
                continue;
            }
            let wait = deadline
                .saturating_duration_since(Instant::now())
                .min(FILL_GAP);
            if wait.is_zero() {
                break;
            }
            match rx.recv_timeout(wait) {
                Ok(work) => self.take(work, metrics),
                Err(_) => break,
            }
        }
    }
}

fn run(mut store: Store, config: &Config, clock: Clock, rx: Receiver<Work>, metrics: &Metrics) {
    let mut last_round = Duration::ZERO;
    loop {
        // Block for the first piece of work; the channel closes when every sender is gone.
        let first = match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(work) => work,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let mut round = Round::default();
        round.take(first, metrics);
        // Everything else already waiting joins this round, and what comes right after.
        round.fill(&rx, last_round / FILL_SHARE, metrics);
        let Round {
            requests,
            replies,
            calls,
            call_replies,
            touched,
        } = round;
        let now = clock.now();
        if !touched.is_empty() {
            let names: Vec<String> = touched.into_iter().collect();
            let _ = store.touch_tokens(&names, now);
        }
        // A round of reservation calls fills as one of events does: by its length.
        let started = Instant::now();
        if !calls.is_empty() {
            reservation_round(&mut store, config, &calls, call_replies, now);
        }
        if requests.is_empty() {
            last_round = started.elapsed();
            continue;
        }
        // A panic inside a round (a bug) rolls that round back and fails its requests; the
        // writer carries on, so one bad event cannot stop every later write.
        let parts: Vec<Part> = replies.iter().map(|(part, _)| *part).collect();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            store.record_parts(config, &requests, &parts, now)
        }))
        .unwrap_or_else(|_| {
            Err(crate::Error::Database(
                "the writer panicked; round rolled back".into(),
            ))
        });
        last_round = started.elapsed();
        metrics.commit_seconds.observe(last_round.as_secs_f64());
        metrics.batch_size.observe(requests.len() as f64);
        match outcome {
            Ok(outcomes) => {
                let mut requests = requests.iter();
                for ((part, reply), outcome) in replies.into_iter().zip(outcomes) {
                    let events = requests.by_ref().take(part.len);
                    count_events(metrics, config, events, &outcome);
                    let _ = reply.send(Ok(outcome));
                }
            }
            Err(e) => {
                // Nothing of this round was committed (or, on a commit whose answer was
                // lost, perhaps all of it: `outcome_unknown`): every request gets the same
                // error.
                let e = ApiError::from(e);
                for (_, reply) in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// One transaction for a round's reservation calls, then each call's answer. A panic (a
/// bug) rolls the round back and fails its calls, as for events.
fn reservation_round(
    store: &mut Store,
    config: &Config,
    calls: &[ReservationCall],
    replies: Vec<oneshot::Sender<CallAnswer>>,
    now: chrono::DateTime<chrono::Utc>,
) {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        store.reservation_calls(config, calls, now)
    }))
    .unwrap_or_else(|_| {
        Err(crate::Error::Database(
            "the writer panicked; round rolled back".into(),
        ))
    });
    match outcome {
        Ok(answers) => {
            for (reply, answer) in replies.into_iter().zip(answers) {
                let _ = reply.send(answer.map_err(ApiError::from));
            }
        }
        Err(e) => {
            let e = ApiError::from(e);
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

/// Each event of one part in the metrics: a refused part's events are all invalid.
fn count_events<'r>(
    metrics: &Metrics,
    config: &Config,
    requests: impl Iterator<Item = &'r RecordRequest>,
    outcome: &PartOutcome,
) {
    let default_meter = config.default_meter().id.as_str();
    for (i, request) in requests.enumerate() {
        let outcome = match outcome {
            PartOutcome::Refused(_) => Outcome::Invalid,
            PartOutcome::Decided(results) => match results.get(i) {
                Some(Ok(o)) if o.recorded => Outcome::Recorded,
                Some(Ok(o)) if o.duplicate => Outcome::Duplicate,
                Some(Ok(_)) => Outcome::Refused,
                _ => Outcome::Invalid,
            },
        };
        metrics.event(request.meter.as_deref().unwrap_or(default_meter), outcome);
    }
}
