//! The Stripe outbox: what a sync sends, one API keyed by the unit sent ([`OutboxUnit`]: a
//! usage event on its own, or an aggregate report standing for many, reports.rs), the
//! bookkeeping of each attempt written back, and the counts of events by state.

use crate::db::{Behavior, Transaction, params};
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::meters::stripe::{StripeMeters, dimension_pairs};
use super::reports::EVENTS_PER_COMMIT;
use crate::Result;
use crate::billing::{format_ts, parse_ts, stripe_window};

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

/// What a sync sends, each as one meter event; the outbox API is keyed by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxUnit {
    /// A usage event on its own (`report = "per_event"`, `sum` formula meters).
    Events,
    /// A report made by `Store::pack_reports`, standing for its events (reports.rs).
    Reports,
}

impl OutboxUnit {
    /// Every unit, in the order a sync sends them: reports first (made before the events).
    pub const ALL: [OutboxUnit; 2] = [OutboxUnit::Reports, OutboxUnit::Events];

    /// The unit's table.
    pub(super) fn table(self) -> &'static str {
        match self {
            OutboxUnit::Events => "usage_events",
            OutboxUnit::Reports => "stripe_reports",
        }
    }

    /// The prefix of its sending columns (`reported_at`, `attempts`, `error`, `failed_at`,
    /// `first_sent_at`, `in_doubt_at`): the same names, `stripe_` ones among an event's own.
    pub(super) fn prefix(self) -> &'static str {
        match self {
            OutboxUnit::Events => "stripe_",
            OutboxUnit::Reports => "",
        }
    }
}

/// A usage event (or a report) waiting to be reported, with everything needed to send it.
#[derive(Debug, Clone)]
pub struct OutboxEvent {
    pub id: i64,
    pub customer_id: String,
    pub stripe_customer_id: String,
    pub event_name: String,
    /// The meter event's value: what the event added to its meter (its amount, else its
    /// quantity), or a report's value.
    pub value: i64,
    pub occurred_at: DateTime<Utc>,
    /// The meter event identifier, stored when the event was recorded (schema.rs, migration 4).
    pub identifier: String,
    /// `group_by` values sent as payload keys, sorted by key.
    pub dimensions: Vec<(String, String)>,
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
    fn at(event: &OutboxEvent) -> OutboxCursor {
        OutboxCursor {
            occurred_at: format_ts(event.occurred_at),
            id: event.id,
        }
    }

    fn parts(&self) -> (String, i64) {
        (self.occurred_at.clone(), self.id)
    }
}

/// Pending events of one customer and meter, as a dry run lists them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutboxGroup {
    pub customer_id: String,
    pub stripe_customer_id: String,
    /// The meterline meter.
    pub meter: String,
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

/// The columns `outbox_event` reads, for usage events sent one by one.
fn event_columns(meters: &StripeMeters) -> String {
    format!(
        "e.id, e.customer_id, c.stripe_customer_id, {}, {}, e.occurred_at,
         e.stripe_identifier, {}",
        meters.event_name_sql(),
        meters.amount_sql(),
        meters.dimensions_sql()
    )
}
const PENDING: &str = "e.stripe_reported_at IS NULL AND e.stripe_expired_at IS NULL";

/// The events a sync sends, with their customer (`c`) and period counter (`r`): pending,
/// mapped, of a meter with a route, not in a report, inside Stripe's window (?1, ?2),
/// refusals rested unless ?3 is NULL. One definition for the outbox pages and the preview,
/// so both always agree.
fn sendable(meters: &StripeMeters) -> String {
    sendable_by(meters, "usage_events_outbox")
}

/// `sendable()` read through `index`.
fn sendable_by(meters: &StripeMeters, index: &str) -> String {
    format!(
        "FROM usage_events e INDEXED BY {index}
         JOIN customers c ON c.id = e.customer_id
         JOIN usage_records r ON r.customer_id = e.customer_id AND r.period_start = e.period_start
         WHERE {PENDING} AND c.stripe_customer_id IS NOT NULL AND e.stripe_report_id IS NULL
           AND e.stripe_in_doubt_at IS NULL
           AND e.meter_id IN ({})
           AND e.occurred_at >= ?1 AND e.occurred_at <= ?2
           AND (e.stripe_failed_at IS NULL OR ?3 IS NULL OR e.stripe_failed_at < ?3)",
        meters.known_sql()
    )
}

/// A stored instant in `column`, read through the one parser ([`parse_ts`]); text that is not
/// one is a corrupt column.
fn read_ts(text: &str, column: usize) -> crate::Result<DateTime<Utc>> {
    parse_ts(text).map_err(|e| crate::Error::Corrupt(format!("column {column}: {e}")))
}

/// One row of `event_columns` (or a report's columns, in the same order).
fn outbox_event(r: &crate::db::Row) -> crate::Result<OutboxEvent> {
    let at: String = r.get(5)?;
    let dimensions: Option<String> = r.get(7)?;
    Ok(OutboxEvent {
        id: r.get(0)?,
        customer_id: r.get(1)?,
        stripe_customer_id: r.get(2)?,
        event_name: r.get(3)?,
        value: r.get(4)?,
        occurred_at: read_ts(&at, 5)?,
        identifier: r.get(6)?,
        dimensions: dimension_pairs(dimensions.as_deref())
            .map_err(|e| crate::Error::Corrupt(format!("column 7: {e}")))?,
    })
}

/// The sync outbox of usage events; serves the Stripe sync (preview, pipeline, expiry) and
/// `doctor`'s counts.
impl super::Store {
    /// The next page of one customer's sendable events, oldest first, after `after` (units
    /// `Events` only: a customer has a few reports at most). Through the customer's own
    /// index: the sync reads a customer with a large backlog this way, so that it never fills
    /// the queue ahead of everyone else.
    pub fn outbox_page_of(
        &self,
        meters: &StripeMeters,
        window: &OutboxWindow,
        customer_id: &str,
        after: &OutboxCursor,
        limit: usize,
    ) -> Result<(Vec<OutboxEvent>, Option<OutboxCursor>)> {
        let sql = format!(
            "SELECT {}
             {}
               AND e.meter_id IN ({})
               AND e.customer_id = ?4 AND (e.occurred_at, e.id) > (?5, ?6)
             ORDER BY e.occurred_at, e.id
             LIMIT ?7",
            event_columns(meters),
            sendable_by(meters, "usage_events_by_customer_time"),
            meters.single_sql()
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
        page(rows.collect::<crate::Result<_>>()?)
    }

    /// The events not in a report yet that a sync would send now, grouped by customer and
    /// meter (the first `limit` events). `units` is what is sent: the sum of their amounts,
    /// or for a `last` formula meter (max, unique_count, latest) its value in the latest
    /// period, since each report carries the meter's value and never adds to it.
    pub fn outbox_groups(
        &self,
        meters: &StripeMeters,
        window: &OutboxWindow,
        limit: Option<u64>,
    ) -> Result<Vec<OutboxGroup>> {
        let sql = format!(
            "SELECT g.customer_id, g.stripe_customer_id, g.meter_id, g.event_name, g.events,
                    CASE WHEN g.meter_id IN ({last}) THEN COALESCE(
                        (SELECT m.used FROM meter_counters m
                         WHERE m.customer_id = g.customer_id AND m.period_start = g.period
                           AND m.meter_id = g.meter_id AND m.group_key = ''), 0)
                    ELSE g.units END,
                    g.first_at, g.last_at
             FROM (SELECT customer_id, stripe_customer_id, meter_id, event_name,
                          COUNT(*) AS events, SUM(amount) AS units, MAX(period_start) AS period,
                          MIN(occurred_at) AS first_at, MAX(occurred_at) AS last_at
                   FROM (SELECT e.customer_id, c.stripe_customer_id, e.meter_id,
                                {event_name} AS event_name, {amount} AS amount,
                                e.period_start, e.occurred_at
                         {sendable}
                         ORDER BY e.occurred_at, e.id
                         LIMIT ?4) AS due
                   GROUP BY customer_id, stripe_customer_id, meter_id, event_name) AS g
             ORDER BY g.customer_id, g.meter_id, g.event_name",
            last = meters.last_sql(),
            amount = meters.amount_sql(),
            event_name = meters.event_name_sql(),
            sendable = sendable(meters)
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(
            params![
                format_ts(window.not_before),
                format_ts(window.not_after),
                window.failed_before.map(format_ts),
                limit.map_or(i64::MAX, |l| l.min(i64::MAX as u64) as i64)
            ],
            |r| {
                let (first, last): (String, String) = (r.get(6)?, r.get(7)?);
                Ok(OutboxGroup {
                    customer_id: r.get(0)?,
                    stripe_customer_id: r.get(1)?,
                    meter: r.get(2)?,
                    event_name: r.get(3)?,
                    events: r.get::<_, i64>(4)? as u64,
                    units: r.get(5)?,
                    first: read_ts(&first, 6)?,
                    last: read_ts(&last, 7)?,
                })
            },
        )?;
        rows.collect::<crate::Result<_>>()
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
}

/// A page read, and the cursor just after its last job (none when empty).
fn page(jobs: Vec<OutboxEvent>) -> Result<(Vec<OutboxEvent>, Option<OutboxCursor>)> {
    let cursor = jobs.last().map(OutboxCursor::at);
    Ok((jobs, cursor))
}

/// The sendable jobs of `unit` after the cursor (?4, ?5), oldest first, at most ?6; the
/// window is ?1–?3. Events: those sent one by one (of `sum` formula meters); `INDEXED BY`:
/// without ANALYZE statistics SQLite would pick the older unreported index and sort every
/// page.
fn page_sql(unit: OutboxUnit, meters: &StripeMeters) -> String {
    match unit {
        OutboxUnit::Events => format!(
            "SELECT {}
             {}
               AND e.meter_id IN ({})
               AND (e.occurred_at, e.id) > (?4, ?5)
             ORDER BY e.occurred_at, e.id
             LIMIT ?6",
            event_columns(meters),
            sendable(meters),
            meters.single_sql()
        ),
        OutboxUnit::Reports => format!(
            "SELECT {} {}
               AND (s.occurred_at, s.id) > (?4, ?5)
             ORDER BY s.occurred_at, s.id LIMIT ?6",
            super::reports::REPORT_COLUMNS,
            super::reports::SENDABLE_REPORTS
        ),
    }
}

/// What happened to one job, written to it (and to a report's events). Returns the usage
/// events written.
fn write_outcome(
    tx: &Transaction,
    unit: OutboxUnit,
    outcome: &EventOutcome,
    at: &str,
) -> Result<u64> {
    let (table, p) = (unit.table(), unit.prefix());
    match outcome {
        EventOutcome::Delivered { id, attempts } => mark_reported(tx, unit, *id, *attempts, at),
        EventOutcome::Refused {
            id,
            attempts,
            error,
        } => {
            // A refusal is an answer: Stripe does not hold it, so it is not in doubt.
            let n = tx
                .prepare_cached(&format!(
                    "UPDATE {table} SET {p}attempts = {p}attempts + ?3, {p}error = ?4,
                         {p}failed_at = ?2, {p}first_sent_at = NULL
                     WHERE id = ?1"
                ))?
                .execute(params![id, at, attempts, error])?;
            match unit {
                OutboxUnit::Events => Ok(n as u64),
                OutboxUnit::Reports => super::reports::refuse_events(tx, *id, *attempts, error, at),
            }
        }
        EventOutcome::Undelivered {
            id,
            attempts,
            error,
        } => {
            let n = tx
                .prepare_cached(&format!(
                    "UPDATE {table} SET {p}attempts = {p}attempts + ?2, {p}error = ?3
                     WHERE id = ?1"
                ))?
                .execute(params![id, attempts, error])?;
            // A report's events stay as they are: pending, as the report is.
            Ok(if unit == OutboxUnit::Events {
                n as u64
            } else {
                0
            })
        }
    }
}

/// A job is reported at `at` (with a report, its unreported events). Returns the usage events
/// newly marked.
pub(super) fn mark_reported(
    tx: &Transaction,
    unit: OutboxUnit,
    id: i64,
    attempts: u32,
    at: &str,
) -> Result<u64> {
    let (table, p) = (unit.table(), unit.prefix());
    let n = tx
        .prepare_cached(&format!(
            "UPDATE {table} SET {p}reported_at = ?2, {p}attempts = {p}attempts + ?3,
                 {p}error = NULL, {p}failed_at = NULL, {p}in_doubt_at = NULL
             WHERE id = ?1 AND {p}reported_at IS NULL"
        ))?
        .execute(params![id, at, attempts])?;
    match unit {
        OutboxUnit::Events => Ok(n as u64),
        OutboxUnit::Reports => super::reports::report_events(tx, id, attempts, at),
    }
}

/// The outbox of either unit; serves the Stripe sync (pipeline, expiry) and reconcile.
impl super::Store {
    /// The next page of sendable `unit`s, oldest first, after `after`. Each must be dated
    /// with [`Store::mark_sent`] before it is sent.
    pub fn outbox_page(
        &self,
        unit: OutboxUnit,
        meters: &StripeMeters,
        window: &OutboxWindow,
        after: Option<&OutboxCursor>,
        limit: usize,
    ) -> Result<(Vec<OutboxEvent>, Option<OutboxCursor>)> {
        let (after_at, after_id) = after.map(OutboxCursor::parts).unwrap_or_default();
        let mut stmt = self.conn.prepare_cached(&page_sql(unit, meters))?;
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
        page(rows.collect::<crate::Result<_>>()?)
    }

    /// Date jobs as (about to be) sent at `at`, where not dated yet, before they go out: a
    /// crash after sending leaves them dated, the start of their doubt (`hold_in_doubt`).
    pub fn mark_sent(&self, unit: OutboxUnit, ids: &[i64], at: DateTime<Utc>) -> Result<()> {
        let (table, p) = (unit.table(), unit.prefix());
        let tx = self.conn.unchecked_transaction()?;
        {
            let mut mark = tx.prepare_cached(&format!(
                "UPDATE {table} SET {p}first_sent_at = ?2 WHERE id = ?1 AND {p}first_sent_at IS NULL"
            ))?;
            let at = format_ts(at);
            for id in ids {
                mark.execute(params![id, at])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Undo the dating as sent of jobs that never reached Stripe in the run that started at
    /// `run_start` (only that run's dating: an earlier run's stays).
    pub fn undate_unsent(
        &mut self,
        unit: OutboxUnit,
        ids: &[i64],
        run_start: DateTime<Utc>,
    ) -> Result<()> {
        let (table, p) = (unit.table(), unit.prefix());
        let run_start = format_ts(run_start);
        let tx = self.conn.transaction_with_behavior(Behavior::Immediate)?;
        {
            let mut undo = tx.prepare(&format!(
                "UPDATE {table} SET {p}first_sent_at = NULL
                 WHERE id = ?1 AND {p}first_sent_at = ?2 AND {p}reported_at IS NULL"
            ))?;
            for id in ids {
                undo.execute(params![id, run_start])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Write back what happened to a batch of jobs (and to every event of a report): each
    /// job with its events in one transaction, a few a transaction (`EVENTS_PER_COMMIT`),
    /// so that recording goes on meanwhile. Returns how many usage events were newly marked
    /// reported: a job answered twice counts once.
    pub fn record_outcomes(
        &mut self,
        unit: OutboxUnit,
        outcomes: &[EventOutcome],
        at: DateTime<Utc>,
    ) -> Result<u64> {
        let mut reported = 0;
        let at = format_ts(at);
        let mut rest = outcomes;
        while !rest.is_empty() {
            let tx = self.conn.transaction_with_behavior(Behavior::Immediate)?;
            let (mut written, mut taken) = (0, 0);
            for outcome in rest {
                let events = write_outcome(&tx, unit, outcome, &at)?;
                if matches!(outcome, EventOutcome::Delivered { .. }) {
                    reported += events;
                }
                written += events;
                taken += 1;
                if written >= EVENTS_PER_COMMIT {
                    break;
                }
            }
            tx.commit()?;
            rest = &rest[taken..];
        }
        Ok(reported)
    }

    /// Mark pending `unit`s whose time is before `before` expired at `at` (a report with its
    /// events; an event in a report only with it). Returns the usage events marked.
    pub fn expire(
        &mut self,
        unit: OutboxUnit,
        before: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> Result<u64> {
        match unit {
            OutboxUnit::Events => self.expire_events(before, at),
            OutboxUnit::Reports => self.expire_reports(before, at),
        }
    }

    /// Events not in a report, in small committed batches so a recording process never
    /// waits long.
    fn expire_events(&mut self, before: DateTime<Utc>, at: DateTime<Utc>) -> Result<u64> {
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
}
