//! Stripe reporting state of usage events: the outbox of unreported events, the bookkeeping
//! of each attempt, the sync lock and the record of sync runs.

use chrono::{DateTime, Duration, Utc};
use rusqlite::{OptionalExtension, TransactionBehavior, params};
use serde::Serialize;

use crate::billing::format_ts;
use crate::{Error, Result};

/// Stripe accepts meter events from 35 days in the past ...
pub const STRIPE_MAX_AGE_DAYS: i64 = 35;
/// ... to 5 minutes in the future.
pub const STRIPE_MAX_FUTURE_SECS: i64 = 300;

/// The (oldest, newest) occurred_at Stripe accepts at `now`.
pub fn stripe_window(now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    (
        now - Duration::days(STRIPE_MAX_AGE_DAYS),
        now + Duration::seconds(STRIPE_MAX_FUTURE_SECS),
    )
}

/// Where an event stands with Stripe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StripeState {
    Reported,
    Pending,
    Failed,
    Expired,
    Unmapped,
}

impl super::Store {
    /// Demo data: usage of mapped customers older than two hours counts as reported a few
    /// minutes after it happened; a few recent events of one customer failed. Returns how many
    /// events remain unreported.
    pub fn settle_demo_reporting(
        &mut self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> crate::Result<u64> {
        let cutoff = crate::billing::format_ts(now - chrono::Duration::hours(2));
        let tx = self.conn.transaction()?;
        tx.execute(
            "UPDATE usage_events
             SET stripe_reported_at = strftime('%Y-%m-%dT%H:%M:%SZ', occurred_at, '+4 minutes'),
                 stripe_attempts = 1
             WHERE occurred_at < ?1 AND customer_id IN
                 (SELECT id FROM customers WHERE stripe_customer_id IS NOT NULL)",
            [&cutoff],
        )?;
        tx.execute(
            "UPDATE usage_events
             SET stripe_attempts = 1,
                 stripe_error = 'No such customer: ''' || (SELECT stripe_customer_id FROM customers c
                                WHERE c.id = usage_events.customer_id) || '''',
                 stripe_failed_at = ?1
             WHERE id IN (SELECT e.id FROM usage_events e JOIN customers c ON c.id = e.customer_id
                          WHERE e.stripe_reported_at IS NULL AND c.stripe_customer_id IS NOT NULL
                          ORDER BY c.id LIMIT 3)",
            [crate::billing::format_ts(now)],
        )?;
        let unreported: i64 = tx.query_row(
            "SELECT COUNT(*) FROM usage_events WHERE stripe_reported_at IS NULL",
            [],
            |r| r.get(0),
        )?;
        tx.commit()?;
        Ok(unreported as u64)
    }
}

/// A usage event waiting to be reported, with everything needed to send it.
#[derive(Debug, Clone)]
pub struct OutboxEvent {
    pub id: i64,
    pub customer_id: String,
    pub stripe_customer_id: String,
    pub event_name: String,
    pub quantity: i64,
    pub occurred_at: DateTime<Utc>,
    /// The meter event identifier, stored when the event was recorded (schema.rs, migration 4).
    pub identifier: String,
}

/// Which pending events a sync may send now.
#[derive(Debug, Clone, Copy)]
pub struct OutboxWindow {
    /// Older events are past Stripe's 35-day window.
    pub not_before: DateTime<Utc>,
    /// Newer events are too far in the future for Stripe.
    pub not_after: DateTime<Utc>,
    /// Events that Stripe refused are retried once their last refusal is older than this;
    /// `None` retries all of them now.
    pub failed_before: Option<DateTime<Utc>>,
}

/// Where the previous outbox page ended (events are read oldest first).
#[derive(Debug, Clone)]
pub struct OutboxCursor {
    occurred_at: String,
    id: i64,
}

impl OutboxCursor {
    /// The position just before `event`: a page read after it starts with `event`.
    pub fn before(event: &OutboxEvent) -> OutboxCursor {
        OutboxCursor {
            occurred_at: format_ts(event.occurred_at),
            id: event.id - 1,
        }
    }

    /// The position of `event`: a page read after it starts after it.
    pub(super) fn at(event: &OutboxEvent) -> OutboxCursor {
        OutboxCursor {
            occurred_at: format_ts(event.occurred_at),
            id: event.id,
        }
    }

    pub(super) fn parts(&self) -> (String, i64) {
        (self.occurred_at.clone(), self.id)
    }
}

/// Pending events of one customer and meter, as a dry run lists them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutboxGroup {
    pub customer_id: String,
    pub stripe_customer_id: String,
    pub event_name: String,
    pub events: u64,
    pub units: i64,
    pub first: DateTime<Utc>,
    pub last: DateTime<Utc>,
}

/// What happened to one event in a sync, written back in batches.
#[derive(Debug, Clone)]
pub enum EventOutcome {
    /// Stripe has it (accepted now, or recognised as sent before).
    Delivered { id: i64, attempts: u32 },
    /// Stripe refused it for good (a 4xx other than auth and rate limits).
    Refused {
        id: i64,
        attempts: u32,
        error: String,
    },
    /// Transient errors until the attempt bound: it stays pending, not failed.
    Undelivered {
        id: i64,
        attempts: u32,
        error: String,
    },
}

/// Counts by Stripe state, for the dashboard and `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StripeCounts {
    /// Not yet reported and not expired (includes failed, unmapped and future ones).
    pub unreported: u64,
    /// Unreported events that Stripe refused on their last attempt.
    pub failed: u64,
    /// Unreported events of customers without a Stripe customer id.
    pub unmapped: u64,
    /// Past Stripe's 35-day window: kept, never sent.
    pub expired: u64,
    /// Unreported events that a sync at `now` would send.
    pub deliverable: u64,
}

/// One sync run as recorded in `sync_runs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SyncRun {
    pub id: i64,
    pub started_at: String,
    pub finished_at: Option<String>,
    /// running, completed, incomplete, cancelled, aborted or interrupted.
    pub outcome: String,
    pub attempted: u64,
    pub accepted: u64,
    pub duplicates: u64,
    pub failed: u64,
    pub expired: u64,
    pub unmapped: u64,
    pub remaining: u64,
    pub error: Option<String>,
}

/// Who holds the sync lock: a process on a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockHolder {
    pub host: String,
    pub pid: u32,
}

impl LockHolder {
    pub fn this_process() -> LockHolder {
        LockHolder {
            host: host_name(),
            pid: std::process::id(),
        }
    }
}

/// A lock whose heartbeat is older than this belongs to a dead or hung sync.
pub const LOCK_STALE_AFTER_SECS: i64 = 60;

const EVENT_COLUMNS: &str =
    "e.id, e.customer_id, c.stripe_customer_id, r.meter_event_name, e.quantity, e.occurred_at,
     e.stripe_identifier";
const PENDING: &str = "e.stripe_reported_at IS NULL AND e.stripe_expired_at IS NULL";

/// The events a sync sends, with their customer (`c`) and period counter (`r`): pending,
/// mapped, inside Stripe's window (?1, ?2), refusals rested unless ?3 is NULL. One definition
/// for the outbox pages and the preview, so both always agree.
fn sendable() -> String {
    sendable_by("usage_events_outbox")
}

/// `sendable()` read through `index`.
fn sendable_by(index: &str) -> String {
    format!(
        "FROM usage_events e INDEXED BY {index}
         JOIN customers c ON c.id = e.customer_id
         JOIN usage_records r ON r.customer_id = e.customer_id AND r.period_start = e.period_start
         WHERE {PENDING} AND c.stripe_customer_id IS NOT NULL AND e.stripe_report_id IS NULL
           AND e.stripe_in_doubt_at IS NULL
           AND e.occurred_at >= ?1 AND e.occurred_at <= ?2
           AND (e.stripe_failed_at IS NULL OR ?3 IS NULL OR e.stripe_failed_at < ?3)"
    )
}

fn parse_ts(text: &str, column: usize) -> rusqlite::Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(
                column,
                rusqlite::types::Type::Text,
                Box::new(e),
            )
        })
}

/// One row of `EVENT_COLUMNS`.
pub(super) fn outbox_event(r: &rusqlite::Row) -> rusqlite::Result<OutboxEvent> {
    let at: String = r.get(5)?;
    Ok(OutboxEvent {
        id: r.get(0)?,
        customer_id: r.get(1)?,
        stripe_customer_id: r.get(2)?,
        event_name: r.get(3)?,
        quantity: r.get(4)?,
        occurred_at: parse_ts(&at, 5)?,
        identifier: r.get(6)?,
    })
}

pub(super) fn unix_now() -> i64 {
    Utc::now().timestamp()
}

impl super::Store {
    /// The random id this database got at migration time; part of every Stripe identifier.
    pub fn database_id(&self) -> Result<String> {
        Ok(self.conn.query_row(
            "SELECT value FROM meterline_meta WHERE key = 'database_id'",
            [],
            |r| r.get(0),
        )?)
    }

    /// The next page of sendable events, oldest first, after `after`. `INDEXED BY`: without
    /// ANALYZE statistics SQLite would pick the older unreported index and sort every page.
    pub fn outbox_page(
        &self,
        window: &OutboxWindow,
        after: Option<&OutboxCursor>,
        limit: usize,
    ) -> Result<(Vec<OutboxEvent>, Option<OutboxCursor>)> {
        let (after_at, after_id) = after
            .map(|c| (c.occurred_at.clone(), c.id))
            .unwrap_or_default();
        let sql = format!(
            "SELECT {EVENT_COLUMNS}
             {}
               AND (e.occurred_at, e.id) > (?4, ?5)
             ORDER BY e.occurred_at, e.id
             LIMIT ?6",
            sendable()
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(
            params![
                format_ts(window.not_before),
                format_ts(window.not_after),
                window.failed_before.map(format_ts),
                after_at,
                after_id,
                limit as i64
            ],
            outbox_event,
        )?;
        let events: Vec<OutboxEvent> = rows.collect::<rusqlite::Result<_>>()?;
        let cursor = events.last().map(|e| OutboxCursor {
            occurred_at: format_ts(e.occurred_at),
            id: e.id,
        });
        Ok((events, cursor))
    }

    /// The next page of one customer's sendable events, oldest first, after `after`. Through
    /// the customer's own index: the sync reads a customer with a large backlog this way, so
    /// that it never fills the queue ahead of everyone else.
    pub fn outbox_page_of(
        &self,
        window: &OutboxWindow,
        customer_id: &str,
        after: &OutboxCursor,
        limit: usize,
    ) -> Result<(Vec<OutboxEvent>, Option<OutboxCursor>)> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS}
             {}
               AND e.customer_id = ?4 AND (e.occurred_at, e.id) > (?5, ?6)
             ORDER BY e.occurred_at, e.id
             LIMIT ?7",
            sendable_by("usage_events_by_customer_time")
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(
            params![
                format_ts(window.not_before),
                format_ts(window.not_after),
                window.failed_before.map(format_ts),
                customer_id,
                after.occurred_at,
                after.id,
                limit as i64
            ],
            outbox_event,
        )?;
        let events: Vec<OutboxEvent> = rows.collect::<rusqlite::Result<_>>()?;
        let cursor = events.last().map(|e| OutboxCursor {
            occurred_at: format_ts(e.occurred_at),
            id: e.id,
        });
        Ok((events, cursor))
    }

    /// What a sync would send now, grouped by customer and meter (the first `limit` events).
    pub fn outbox_groups(
        &self,
        window: &OutboxWindow,
        limit: Option<u64>,
    ) -> Result<Vec<OutboxGroup>> {
        let sql = format!(
            "SELECT customer_id, stripe_customer_id, meter_event_name, COUNT(*), SUM(quantity),
                    MIN(occurred_at), MAX(occurred_at)
             FROM (SELECT e.customer_id, c.stripe_customer_id, r.meter_event_name, e.quantity,
                          e.occurred_at
                   {}
                   ORDER BY e.occurred_at, e.id
                   LIMIT ?4)
             GROUP BY customer_id, meter_event_name
             ORDER BY customer_id, meter_event_name",
            sendable()
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(
            params![
                format_ts(window.not_before),
                format_ts(window.not_after),
                window.failed_before.map(format_ts),
                limit.map_or(-1, |l| l.min(i64::MAX as u64) as i64)
            ],
            |r| {
                let (first, last): (String, String) = (r.get(5)?, r.get(6)?);
                Ok(OutboxGroup {
                    customer_id: r.get(0)?,
                    stripe_customer_id: r.get(1)?,
                    event_name: r.get(2)?,
                    events: r.get::<_, i64>(3)? as u64,
                    units: r.get(4)?,
                    first: parse_ts(&first, 5)?,
                    last: parse_ts(&last, 6)?,
                })
            },
        )?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Mark pending events older than `before` as expired, in small committed batches so a
    /// recording process never waits long. Returns how many were marked.
    pub fn expire_events(&mut self, before: DateTime<Utc>, at: DateTime<Utc>) -> Result<u64> {
        let mut total = 0;
        loop {
            let changed = self.conn.execute(
                "UPDATE usage_events SET stripe_expired_at = ?2
                 WHERE id IN (SELECT id FROM usage_events
                              WHERE stripe_reported_at IS NULL AND stripe_expired_at IS NULL
                                AND stripe_report_id IS NULL AND occurred_at < ?1
                              LIMIT 500)",
                params![format_ts(before), format_ts(at)],
            )?;
            total += changed as u64;
            if changed < 500 {
                return Ok(total);
            }
        }
    }

    /// Write back what happened to a batch of events, in one transaction. Returns how many
    /// were newly marked reported.
    pub fn record_outcomes(&mut self, outcomes: &[EventOutcome], at: DateTime<Utc>) -> Result<u64> {
        let mut reported = 0;
        let at = format_ts(at);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        for outcome in outcomes {
            match outcome {
                EventOutcome::Delivered { id, attempts } => {
                    let n = tx
                        .prepare_cached(
                            "UPDATE usage_events SET stripe_reported_at = ?2,
                                 stripe_attempts = stripe_attempts + ?3,
                                 stripe_error = NULL, stripe_failed_at = NULL
                             WHERE id = ?1 AND stripe_reported_at IS NULL",
                        )?
                        .execute(params![id, at, attempts])?;
                    reported += n as u64;
                    n
                }
                EventOutcome::Refused {
                    id,
                    attempts,
                    error,
                } => tx
                    .prepare_cached(
                        "UPDATE usage_events SET stripe_attempts = stripe_attempts + ?3,
                             stripe_error = ?4, stripe_failed_at = ?2, stripe_first_sent_at = NULL
                         WHERE id = ?1",
                    )?
                    .execute(params![id, at, attempts, error])?,
                EventOutcome::Undelivered {
                    id,
                    attempts,
                    error,
                } => tx
                    .prepare_cached(
                        "UPDATE usage_events SET stripe_attempts = stripe_attempts + ?2,
                             stripe_error = ?3
                         WHERE id = ?1",
                    )?
                    .execute(params![id, attempts, error])?,
            };
        }
        tx.commit()?;
        Ok(reported)
    }

    /// Counts of events by Stripe state; `now` decides which pending events are sendable.
    pub fn stripe_counts(&self, now: DateTime<Utc>) -> Result<StripeCounts> {
        let window = stripe_window(now);
        let (unreported, failed, unmapped, deliverable): (i64, i64, i64, i64) =
            self.conn.query_row(
                &format!(
                    "SELECT COUNT(*),
                        COUNT(e.stripe_failed_at),
                        COUNT(*) FILTER (WHERE c.stripe_customer_id IS NULL),
                        COUNT(*) FILTER (WHERE c.stripe_customer_id IS NOT NULL
                                          AND e.stripe_failed_at IS NULL
                                          AND e.occurred_at >= ?1 AND e.occurred_at <= ?2)
                 FROM usage_events e JOIN customers c ON c.id = e.customer_id
                 WHERE {PENDING}"
                ),
                params![format_ts(window.0), format_ts(window.1)],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )?;
        let expired: i64 = self.conn.query_row(
            "SELECT COUNT(*) FROM usage_events WHERE stripe_expired_at IS NOT NULL",
            [],
            |r| r.get(0),
        )?;
        Ok(StripeCounts {
            unreported: unreported as u64,
            failed: failed as u64,
            unmapped: unmapped as u64,
            expired: expired as u64,
            deliverable: deliverable as u64,
        })
    }

    /// Pending events that are too old for Stripe (a sync would mark them expired).
    pub fn count_expirable(&self, before: DateTime<Utc>) -> Result<u64> {
        let n: i64 = self.conn.query_row(
            "SELECT COUNT(*) FROM usage_events
             WHERE stripe_reported_at IS NULL AND stripe_expired_at IS NULL AND occurred_at < ?1",
            [format_ts(before)],
            |r| r.get(0),
        )?;
        Ok(n as u64)
    }

    /// Pending events of customers without a Stripe customer id.
    pub fn count_unmapped(&self) -> Result<u64> {
        let n: i64 = self.conn.query_row(
            &format!(
                "SELECT COUNT(*) FROM usage_events e JOIN customers c ON c.id = e.customer_id
                 WHERE {PENDING} AND c.stripe_customer_id IS NULL"
            ),
            [],
            |r| r.get(0),
        )?;
        Ok(n as u64)
    }

    /// Pending events of mapped customers dated after `after` (too far in the future to send).
    pub fn count_future(&self, after: DateTime<Utc>) -> Result<u64> {
        let n: i64 = self.conn.query_row(
            &format!(
                "SELECT COUNT(*) FROM usage_events e JOIN customers c ON c.id = e.customer_id
                 WHERE {PENDING} AND c.stripe_customer_id IS NOT NULL AND e.occurred_at > ?1"
            ),
            [format_ts(after)],
            |r| r.get(0),
        )?;
        Ok(n as u64)
    }

    /// Pending events that Stripe refused and that are resting until `failed_before`.
    pub fn count_failed_resting(&self, window: &OutboxWindow) -> Result<u64> {
        let Some(before) = window.failed_before else {
            return Ok(0);
        };
        let n: i64 = self.conn.query_row(
            &format!(
                "SELECT COUNT(*) FROM usage_events e JOIN customers c ON c.id = e.customer_id
                 WHERE {PENDING} AND c.stripe_customer_id IS NOT NULL
                   AND e.stripe_failed_at >= ?1"
            ),
            [format_ts(before)],
            |r| r.get(0),
        )?;
        Ok(n as u64)
    }

    /// Take the sync lock and open a run record. A lock held by a live process is refused with
    /// a message naming it; a lock left by a dead process (kill -9, crash, reboot) is taken
    /// over and its run marked `interrupted`.
    pub fn begin_sync_run(
        &mut self,
        holder: &LockHolder,
        started_at: DateTime<Utc>,
    ) -> Result<i64> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let current: Option<(i64, String, u32, String, i64)> = tx
            .query_row(
                "SELECT run_id, host, pid, acquired_at, heartbeat FROM sync_lock WHERE id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .optional()?;
        if let Some((run_id, host, pid, acquired_at, heartbeat)) = current {
            let other = LockHolder { host, pid };
            if lock_is_live(&other, heartbeat) {
                return Err(Error::SyncRunning(format!(
                    "another sync is already running (pid {} on {}, started {acquired_at}); \
                     it holds the database's sync lock, so this one sends nothing. \
                     Wait for it to finish and run again",
                    other.pid, other.host
                )));
            }
            tx.execute(
                "UPDATE sync_runs SET outcome = 'interrupted',
                     error = 'the process stopped without finishing (killed or crashed); \
                              the next run completed its work'
                 WHERE id = ?1 AND finished_at IS NULL",
                [run_id],
            )?;
            tx.execute("DELETE FROM sync_lock WHERE id = 1", [])?;
        }
        let run_id: i64 = tx.query_row(
            "INSERT INTO sync_runs (started_at, outcome) VALUES (?1, 'running') RETURNING id",
            [format_ts(started_at)],
            |r| r.get(0),
        )?;
        tx.execute(
            "INSERT INTO sync_lock (id, run_id, host, pid, acquired_at, heartbeat)
             VALUES (1, ?1, ?2, ?3, ?4, ?5)",
            params![
                run_id,
                holder.host,
                holder.pid,
                format_ts(started_at),
                unix_now()
            ],
        )?;
        tx.commit()?;
        Ok(run_id)
    }

    /// Tell other processes this run is alive.
    pub fn sync_heartbeat(&self, run_id: i64) -> Result<()> {
        self.conn.execute(
            "UPDATE sync_lock SET heartbeat = ?2 WHERE id = 1 AND run_id = ?1",
            params![run_id, unix_now()],
        )?;
        Ok(())
    }

    /// Close the run record and release the lock, in one transaction.
    pub fn finish_sync_run(&mut self, run: &SyncRun) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "UPDATE sync_runs SET finished_at = ?2, outcome = ?3, attempted = ?4, accepted = ?5,
                 duplicates = ?6, failed = ?7, expired = ?8, unmapped = ?9, remaining = ?10,
                 error = ?11
             WHERE id = ?1",
            params![
                run.id,
                run.finished_at,
                run.outcome,
                run.attempted as i64,
                run.accepted as i64,
                run.duplicates as i64,
                run.failed as i64,
                run.expired as i64,
                run.unmapped as i64,
                run.remaining as i64,
                run.error
            ],
        )?;
        tx.execute(
            "DELETE FROM sync_lock WHERE id = 1 AND run_id = ?1",
            [run.id],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The most recent sync run, finished or not.
    pub fn last_sync_run(&self) -> Result<Option<SyncRun>> {
        Ok(self
            .conn
            .query_row(
                "SELECT id, started_at, finished_at, outcome, attempted, accepted, duplicates,
                        failed, expired, unmapped, remaining, error
                 FROM sync_runs ORDER BY id DESC LIMIT 1",
                [],
                |r| {
                    let count = |i: usize| r.get::<_, i64>(i).map(|n| n as u64);
                    Ok(SyncRun {
                        id: r.get(0)?,
                        started_at: r.get(1)?,
                        finished_at: r.get(2)?,
                        outcome: r.get(3)?,
                        attempted: count(4)?,
                        accepted: count(5)?,
                        duplicates: count(6)?,
                        failed: count(7)?,
                        expired: count(8)?,
                        unmapped: count(9)?,
                        remaining: count(10)?,
                        error: r.get(11)?,
                    })
                },
            )
            .optional()?)
    }
}

/// A lock is live while its heartbeat is fresh and, when the holder is on this host, its
/// process still exists. A process killed with -9 frees the lock at once on the same host.
pub(super) fn lock_is_live(holder: &LockHolder, heartbeat: i64) -> bool {
    if unix_now() - heartbeat > LOCK_STALE_AFTER_SECS {
        return false;
    }
    if holder.host == host_name() {
        return process_alive(holder.pid).unwrap_or(true);
    }
    true
}

/// `Some(alive)` where /proc tells (Linux); `None` elsewhere, and the heartbeat decides.
fn process_alive(pid: u32) -> Option<bool> {
    if !std::path::Path::new("/proc/self/stat").exists() {
        return None;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // A zombie (killed, not yet reaped by its parent) holds nothing.
        Ok(stat) => Some(
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next())
                .is_some_and(|state| state != 'Z' && state != 'X'),
        ),
        Err(_) => Some(false),
    }
}

pub(super) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_string())
}
