//! Aggregated reports: one meter event standing for the unreported events of one customer,
//! meter and billing period (and group_by group, for `sum` formula meters), SQLite
//! migrations 8 and 10. A `sum` report carries the sum of its events' amounts; a `last` report
//! (max, unique_count, latest) the meter's value for the period when it was made, dated after
//! every earlier report of that meter and period, so the newest value is the one Stripe's
//! `last` takes, whatever order they arrive in (meters/stripe.rs).
//!
//! A report is created, identifier included (its own `ml-<UUIDv7>`, made here at packing time;
//! the events' own identifiers are not sent), with every event it covers pointing at it, in
//! one transaction and before anything is sent: a crash anywhere and a rerun resend the same
//! report under the same identifier, and its events are never regrouped. Events recorded
//! later go into the next report.

use std::collections::HashMap;

use crate::db::{Behavior, OptionalExtension, params};
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use super::meters::stripe::{EventNamed, Formula, Route, StripeMeters, named_condition};
use super::outbox::{OutboxUnit, OutboxWindow, mark_reported};
use crate::Result;
use crate::billing::{format_ts, parse_ts};

/// Resending an unanswered request is safe this long after it was first sent: Stripe keeps
/// identifiers for at least 24 hours. Past that a resend could bill twice, so it is held.
pub(crate) const IN_DOUBT_AFTER_HOURS: i64 = 23;

/// Reports waiting to go out, as a dry run and the dashboard's confirmation show them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReportPlan {
    /// Meter events a sync would send: reports made and not yet sent, plus the ones the
    /// unreported events not in a report yet would make.
    pub reports: u64,
    /// Their units.
    pub units: i64,
    /// The usage events they stand for.
    pub events: u64,
    /// The customers they belong to.
    pub customers: u64,
}

/// Reports held in doubt: sent, unanswered, and first sent more than 23 hours ago.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct InDoubt {
    pub reports: u64,
    pub events: u64,
    pub units: i64,
}

/// One held report (or, in per_event mode, one held event), for reconcile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldReport {
    pub unit: OutboxUnit,
    pub id: i64,
    pub value: i64,
}

pub(super) const REPORT_COLUMNS: &str =
    "s.id, s.customer_id, c.stripe_customer_id, s.meter_event_name,
     s.value, s.occurred_at, s.identifier, s.dimensions";

/// Reports a sync sends: unreported, not expired, not held, mapped, inside Stripe's window
/// (?1, ?2), refusals rested unless ?3 is NULL.
pub(super) const SENDABLE_REPORTS: &str = "FROM stripe_reports s INDEXED BY stripe_reports_open
     JOIN customers c ON c.id = s.customer_id
     WHERE s.reported_at IS NULL AND s.expired_at IS NULL AND s.in_doubt_at IS NULL
       AND c.stripe_customer_id IS NOT NULL
       AND s.occurred_at >= ?1 AND s.occurred_at <= ?2
       AND (s.failed_at IS NULL OR ?3 IS NULL OR s.failed_at < ?3)";

/// Unreported events of mapped customers not in any report yet, of the meters packed in
/// this mode, inside the window: what the next `pack_reports` groups (?1, ?2, ?3 as above).
fn unpacked(meters: &StripeMeters) -> String {
    format!(
        "FROM usage_events e
         JOIN customers c ON c.id = e.customer_id
         JOIN usage_records r ON r.customer_id = e.customer_id AND r.period_start = e.period_start
         WHERE e.stripe_reported_at IS NULL AND e.stripe_expired_at IS NULL
           AND e.stripe_report_id IS NULL AND e.stripe_in_doubt_at IS NULL
           AND c.stripe_customer_id IS NOT NULL
           AND e.meter_id IN ({})
           AND e.occurred_at >= ?1 AND e.occurred_at <= ?2
           AND (e.stripe_failed_at IS NULL OR ?3 IS NULL OR e.stripe_failed_at < ?3)",
        meters.packed_sql()
    )
}

/// A `sum` report stands for at most this many events; a larger group makes several, oldest
/// events first. Making a report, and marking its events reported, are each one transaction
/// that every other writer (`record`, on every host) waits for: this bounds them.
pub(crate) const MAX_REPORT_EVENTS: i64 = 10_000;

/// The sync's transactions that make reports or write back their answers commit once they
/// have written this many events, so that other writers wait for one such transaction at
/// most, never for the whole packing or a whole batch of answers.
pub(super) const EVENTS_PER_COMMIT: u64 = 2_000;

/// The events of one customer, meter, period and group not in a report yet: what
/// `pack_reports` makes reports of.
struct Group {
    customer: String,
    period_start: String,
    period_end: String,
    meter: String,
    event_name: String,
    dimensions: Option<String>,
}

/// The events of one group (?4 customer, ?5 period, ?6 meter, ?7 dimensions) not in a report
/// yet, inside the window (?1, ?2, ?3 as `unpacked`), up to the event at (?8 time, ?9 id)
/// when ?8 is not NULL. The group's other conditions (its customer is mapped, its period
/// counted) held when it was listed.
fn group_events(meters: &StripeMeters) -> String {
    format!(
        "e.customer_id = ?4 AND e.period_start = ?5 AND e.meter_id = ?6
           AND {} IS NOT DISTINCT FROM ?7
           AND e.stripe_report_id IS NULL AND e.stripe_in_doubt_at IS NULL
           AND e.stripe_reported_at IS NULL AND e.stripe_expired_at IS NULL
           AND e.occurred_at >= ?1 AND e.occurred_at <= ?2
           AND (e.stripe_failed_at IS NULL OR ?3 IS NULL OR e.stripe_failed_at < ?3)
           AND (?8 IS NULL OR (e.occurred_at, e.id) <= (?8, ?9))",
        meters.dimensions_sql()
    )
}

/// A `last` report's value: the meter's total for the period now (its row in
/// meter_counters; 0 before any).
fn current_value(
    tx: &crate::db::Transaction,
    customer: &str,
    period_start: &str,
    meter: &str,
) -> Result<i64> {
    let value: Option<i64> = tx
        .prepare_cached(
            "SELECT used FROM meter_counters
             WHERE customer_id = ?1 AND period_start = ?2 AND meter_id = ?3 AND group_key = ''",
        )?
        .query_row(params![customer, period_start, meter], |r| r.get(0))
        .optional()?;
    Ok(value.unwrap_or(0))
}

/// A `last` report's timestamp: its latest event's, but after every earlier report of the
/// meter and period (by a second), so Stripe's `last` takes the newest value; never past the
/// period's last second (reports made after one dated there tie with it: docs/sync.md).
fn last_report_time(latest: &str, before: Option<&str>, period_end: &str) -> Result<String> {
    let stored = |text: &str| {
        parse_ts(text).map_err(|e| crate::Error::Corrupt(format!("a stored time: {e}")))
    };
    let latest = stored(latest)?;
    let mut at = latest;
    if let Some(before) = before {
        at = at.max(stored(before)? + Duration::seconds(1));
    }
    let last_second = stored(period_end)? - Duration::seconds(1);
    Ok(format_ts(at.min(last_second).max(latest)))
}

fn window_params(window: &OutboxWindow) -> (String, String, Option<String>) {
    (
        format_ts(window.not_before),
        format_ts(window.not_after),
        window.failed_before.map(format_ts),
    )
}

/// Aggregated reports (`report = "aggregate"`) and reports held in doubt; serves the Stripe
/// sync and reconcile, and `status`.
impl super::Store {
    /// Group every sendable event not yet in a report (of the meters packed in this mode:
    /// all in aggregate mode, the `last` formula ones in per_event mode) into one report per
    /// customer, meter, period and group (several for a `sum` group larger than
    /// `MAX_REPORT_EVENTS`). Each report is made with its events in one transaction, a few
    /// reports a transaction (`EVENTS_PER_COMMIT`), so that recording goes on meanwhile.
    /// Returns how many were made.
    pub fn pack_reports(
        &mut self,
        meters: &StripeMeters,
        window: &OutboxWindow,
        now: DateTime<Utc>,
    ) -> Result<u64> {
        let mut groups = self.unpacked_groups(meters, window)?.into_iter().peekable();
        let mut made = 0;
        while groups.peek().is_some() {
            let tx = self.conn.transaction_with_behavior(Behavior::Immediate)?;
            let mut events = 0;
            while let Some(group) = groups.peek()
                && events < EVENTS_PER_COMMIT
            {
                let packed = pack_report(&tx, meters, window, group, now)?;
                made += u64::from(packed > 0);
                events += packed;
                // A full report may have left more of the group for the next.
                if packed < MAX_REPORT_EVENTS as u64 {
                    groups.next();
                }
            }
            tx.commit()?;
        }
        Ok(made)
    }

    /// The groups of the sendable events not in a report yet.
    fn unpacked_groups(&self, meters: &StripeMeters, window: &OutboxWindow) -> Result<Vec<Group>> {
        let (from, to, rested) = window_params(window);
        let mut stmt = self.conn.prepare(&format!(
            "SELECT e.customer_id, e.period_start, r.period_end, e.meter_id, {} AS event_name,
                    {} AS dims
             {}
             GROUP BY e.customer_id, e.period_start, r.period_end, e.meter_id, event_name, dims",
            meters.event_name_sql(),
            meters.dimensions_sql(),
            unpacked(meters)
        ))?;
        let rows = stmt.query_map(params![from, to, rested], |r| {
            Ok(Group {
                customer: r.get(0)?,
                period_start: r.get(1)?,
                period_end: r.get(2)?,
                meter: r.get(3)?,
                event_name: r.get(4)?,
                dimensions: r.get(5)?,
            })
        })?;
        rows.collect()
    }

    /// The reports made and waiting to be sent (by this run's packing or an earlier run's).
    pub fn made_reports(&self, window: &OutboxWindow) -> Result<ReportPlan> {
        let (from, to, rested) = window_params(window);
        let (reports, units, events, customers): (i64, i64, i64, i64) = self.conn.query_row(
            &format!(
                "SELECT COUNT(*), COALESCE(SUM(s.value), 0), COALESCE(SUM(s.events), 0),
                        COUNT(DISTINCT s.customer_id) {SENDABLE_REPORTS}"
            ),
            params![from, to, rested],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )?;
        Ok(ReportPlan {
            customers: customers as u64,
            reports: reports as u64,
            units,
            events: events as u64,
        })
    }

    /// What a sync would send now: reports made and waiting plus those it would make (of the
    /// meters packed in this mode: a `sum` group in reports of `MAX_REPORT_EVENTS`). A `last`
    /// report's units are the meter's value.
    pub fn report_plan(&self, meters: &StripeMeters, window: &OutboxWindow) -> Result<ReportPlan> {
        let made = self.made_reports(window)?;
        let (from, to, rested) = window_params(window);
        let unpacked = unpacked(meters);
        let (new, new_units, new_events): (i64, i64, i64) = self.conn.query_row(
            &format!(
                "SELECT COALESCE(SUM(reports), 0), COALESCE(SUM(units), 0), COALESCE(SUM(n), 0)
                 FROM (
                     SELECT CASE WHEN e.meter_id IN ({last}) THEN 1
                            ELSE (COUNT(*) + {MAX_REPORT_EVENTS} - 1) / {MAX_REPORT_EVENTS}
                            END AS reports,
                            CASE WHEN e.meter_id IN ({last}) THEN COALESCE(
                                (SELECT m.used FROM meter_counters m
                                 WHERE m.customer_id = e.customer_id
                                   AND m.period_start = e.period_start
                                   AND m.meter_id = e.meter_id AND m.group_key = ''), 0)
                            ELSE SUM({amount}) END AS units,
                            COUNT(*) AS n
                     {unpacked}
                     GROUP BY e.customer_id, e.period_start, e.meter_id, {}) AS groups",
                meters.dimensions_sql(),
                last = meters.last_sql(),
                amount = meters.amount_sql(),
            ),
            params![from, to, rested],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        let customers: i64 = self.conn.query_row(
            &format!(
                "SELECT COUNT(*) FROM (SELECT s.customer_id {SENDABLE_REPORTS}
                                       UNION SELECT e.customer_id {unpacked}) AS sendable"
            ),
            params![from, to, rested],
            |r| r.get(0),
        )?;
        Ok(ReportPlan {
            customers: customers as u64,
            reports: made.reports + new as u64,
            units: made.units + new_units,
            events: made.events + new_events as u64,
        })
    }

    /// `expire` of reports: those whose latest event is past Stripe's window, with their
    /// events (which the events' own expiry leaves to this), in one transaction.
    pub(super) fn expire_reports(
        &mut self,
        before: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> Result<u64> {
        let tx = self.conn.transaction_with_behavior(Behavior::Immediate)?;
        let (before, at) = (format_ts(before), format_ts(at));
        let events = tx.execute(
            "UPDATE usage_events SET stripe_expired_at = ?2
             WHERE stripe_reported_at IS NULL AND stripe_expired_at IS NULL
               AND stripe_report_id IN (SELECT id FROM stripe_reports
                    WHERE reported_at IS NULL AND expired_at IS NULL AND occurred_at < ?1)",
            params![before, at],
        )?;
        tx.execute(
            "UPDATE stripe_reports SET expired_at = ?2
             WHERE reported_at IS NULL AND expired_at IS NULL AND occurred_at < ?1",
            params![before, at],
        )?;
        tx.commit()?;
        Ok(events as u64)
    }

    /// Hold every unreported `sum` report first sent more than 23 hours before `now` and
    /// still unanswered: a resend could be billed twice. (A `last` report is never held: sent
    /// twice, it carries the same value at the same time, which Stripe's `last` counts once.)
    /// Returns how many were newly held.
    pub fn hold_in_doubt(&mut self, now: DateTime<Utc>) -> Result<u64> {
        let since = format_ts(now - Duration::hours(IN_DOUBT_AFTER_HOURS));
        let reports = self.conn.execute(
            "UPDATE stripe_reports SET in_doubt_at = ?2
             WHERE reported_at IS NULL AND expired_at IS NULL AND in_doubt_at IS NULL
               AND formula = 'sum'
               AND first_sent_at IS NOT NULL AND first_sent_at < ?1",
            params![since, format_ts(now)],
        )?;
        // Events sent on their own (per_event mode), through the outbox index.
        let events = self.conn.execute(
            "UPDATE usage_events SET stripe_in_doubt_at = ?2
             WHERE id IN (SELECT id FROM usage_events INDEXED BY usage_events_outbox
                          WHERE stripe_reported_at IS NULL AND stripe_expired_at IS NULL
                            AND stripe_in_doubt_at IS NULL AND stripe_report_id IS NULL
                            AND stripe_first_sent_at IS NOT NULL AND stripe_first_sent_at < ?1)",
            params![since, format_ts(now)],
        )?;
        Ok((reports + events) as u64)
    }

    /// Unreported, unexpired events within `days` of Stripe's 35-day window at `now`: sync
    /// them soon or the usage is lost. Failed and unmapped ones count too; held ones as well.
    pub fn count_expiring(&self, now: DateTime<Utc>, days: u32) -> Result<u64> {
        Ok(self.expiring_by_customer(now, days)?.values().sum::<i64>() as u64)
    }

    /// `count_expiring`, per customer.
    pub(super) fn expiring_by_customer(
        &self,
        now: DateTime<Utc>,
        days: u32,
    ) -> Result<HashMap<String, i64>> {
        let (oldest, _) = crate::billing::stripe_window(now);
        let mut stmt = self.conn.prepare_cached(
            "SELECT customer_id, COUNT(*) FROM usage_events INDEXED BY usage_events_outbox
             WHERE stripe_reported_at IS NULL AND stripe_expired_at IS NULL
               AND occurred_at >= ?1 AND occurred_at < ?2
             GROUP BY customer_id",
        )?;
        let rows = stmt.query_map(
            params![
                format_ts(oldest),
                format_ts(oldest + Duration::days(i64::from(days)))
            ],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        rows.collect::<crate::Result<_>>()
    }

    /// Per customer: the usage events held in doubt, in reports or (per_event) alone.
    pub(super) fn in_doubt_by_customer(&self) -> Result<HashMap<String, i64>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT customer_id, SUM(events) FROM stripe_reports
             WHERE in_doubt_at IS NOT NULL AND reported_at IS NULL
             GROUP BY customer_id
             UNION ALL
             SELECT customer_id, COUNT(*) FROM usage_events INDEXED BY usage_events_outbox
             WHERE stripe_reported_at IS NULL AND stripe_expired_at IS NULL
               AND stripe_in_doubt_at IS NOT NULL
             GROUP BY customer_id",
        )?;
        let mut held: HashMap<String, i64> = HashMap::new();
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            *held.entry(r.get(0)?).or_default() += r.get::<_, i64>(1)?;
        }
        Ok(held)
    }

    /// Reports held in doubt, all customers.
    pub fn in_doubt(&self) -> Result<InDoubt> {
        let (reports, events, units): (i64, i64, i64) = self.conn.query_row(
            "SELECT COUNT(*), COALESCE(SUM(events), 0), COALESCE(SUM(value), 0)
             FROM stripe_reports WHERE in_doubt_at IS NOT NULL AND reported_at IS NULL",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        let (single, single_units): (i64, i64) = self.conn.query_row(
            "SELECT COUNT(*), COALESCE(SUM(COALESCE(amount, quantity)), 0)
             FROM usage_events INDEXED BY usage_events_outbox
             WHERE stripe_reported_at IS NULL AND stripe_expired_at IS NULL
               AND stripe_in_doubt_at IS NOT NULL",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok(InDoubt {
            reports: reports as u64,
            events: (events + single) as u64,
            units: units + single_units,
        })
    }

    /// The held reports (and per_event events) of one customer's period on one meter (`only`
    /// those of one Stripe event name, for a pattern meter).
    pub fn held_reports(
        &self,
        customer_id: &str,
        period_start: &str,
        route: &Route,
        only: Option<&EventNamed>,
    ) -> Result<Vec<HeldReport>> {
        let (named, name) = named_condition(only, 4);
        let meter = &route.meter;
        // A report keeps the name it was sent to.
        let report_named = match only {
            Some(_) => "meter_event_name = ?4",
            None => "'' = ?4",
        };
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT id, value, 0 FROM stripe_reports
             WHERE customer_id = ?1 AND period_start = ?2 AND meter_id = ?3
               AND in_doubt_at IS NOT NULL AND reported_at IS NULL AND {report_named}
             UNION ALL
             SELECT e.id, {amount}, 1 FROM usage_events e
             WHERE e.customer_id = ?1 AND e.period_start = ?2 AND e.meter_id = ?3
               AND e.stripe_in_doubt_at IS NOT NULL AND e.stripe_reported_at IS NULL
               AND {named}
             ORDER BY 3, 1",
            amount = route.amount_sql()
        ))?;
        let rows = stmt.query_map(params![customer_id, period_start, meter, name], |r| {
            Ok(HeldReport {
                id: r.get(0)?,
                value: r.get(1)?,
                unit: match r.get::<_, bool>(2)? {
                    true => OutboxUnit::Events,
                    false => OutboxUnit::Reports,
                },
            })
        })?;
        rows.collect::<crate::Result<_>>()
    }

    /// Reconcile found a held report in Stripe's total: reported.
    pub fn settle_held_reported(&mut self, held: &[HeldReport], at: DateTime<Utc>) -> Result<()> {
        let at = format_ts(at);
        let tx = self.conn.transaction_with_behavior(Behavior::Immediate)?;
        for h in held {
            mark_reported(&tx, h.unit, h.id, 0, &at)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Reconcile found Stripe short by exactly the held reports: Stripe never got them, so
    /// the next sync sends them again (and dates them afresh).
    pub fn release_held(&mut self, held: &[HeldReport]) -> Result<()> {
        let tx = self.conn.transaction_with_behavior(Behavior::Immediate)?;
        for h in held {
            let (table, p) = (h.unit.table(), h.unit.prefix());
            tx.execute(
                &format!(
                    "UPDATE {table} SET {p}in_doubt_at = NULL, {p}first_sent_at = NULL
                     WHERE id = ?1 AND {p}reported_at IS NULL"
                ),
                [h.id],
            )?;
        }
        tx.commit()?;
        Ok(())
    }
}

/// Make one report of `g`'s events as they are now, under the writers' lock (a `sum` report of
/// its oldest `MAX_REPORT_EVENTS`), and point them at it. Returns the events it took: 0 when
/// the group has none left.
fn pack_report(
    tx: &crate::db::Transaction,
    meters: &StripeMeters,
    window: &OutboxWindow,
    g: &Group,
    now: DateTime<Utc>,
) -> Result<u64> {
    let (from, to, rested) = window_params(window);
    // Through the customer's index: one pass over its events, not over the outbox.
    let table = "usage_events AS e INDEXED BY usage_events_by_customer_time";
    let group = group_events(meters);
    let formula = meters.route(&g.meter).map_or(Formula::Sum, |r| r.formula);
    // ?1–?7: the group's events (`group_events`); what follows is each statement's own.
    let group_params: [&dyn crate::db::Param; 7] = [
        &from,
        &to,
        &rested,
        &g.customer,
        &g.period_start,
        &g.meter,
        &g.dimensions,
    ];
    let no_bound = (None::<String>, None::<i64>);
    let (last_at, last_id) = match formula {
        Formula::Sum => tx
            .prepare_cached(&format!(
                "SELECT e.occurred_at, e.id FROM {table} WHERE {group}
                 ORDER BY e.occurred_at, e.id LIMIT 1 OFFSET ?10"
            ))?
            .query_row(
                joined(
                    &group_params,
                    &[&no_bound.0, &no_bound.1, &(MAX_REPORT_EVENTS - 1)],
                )
                .as_slice(),
                |r| Ok((Some(r.get::<_, String>(0)?), Some(r.get::<_, i64>(1)?))),
            )
            .optional()?
            .unwrap_or(no_bound),
        Formula::Last => no_bound,
    };
    let bound = joined(&group_params, &[&last_at, &last_id]);
    let (amounts, events, latest): (Option<i64>, i64, Option<String>) = tx
        .prepare_cached(&format!(
            "SELECT SUM({}), COUNT(*), MAX(e.occurred_at) FROM {table} WHERE {group}",
            meters.amount_sql()
        ))?
        .query_row(bound.as_slice(), |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    let Some(latest) = latest.filter(|_| events > 0) else {
        return Ok(0);
    };
    let (value, occurred_at) = match formula {
        Formula::Sum => (amounts.unwrap_or(0), latest),
        Formula::Last => {
            let before: Option<String> = tx
                .prepare_cached(
                    "SELECT MAX(occurred_at) FROM stripe_reports
                     WHERE customer_id = ?1 AND period_start = ?2 AND meter_id = ?3",
                )?
                .query_row(params![g.customer, g.period_start, g.meter], |r| r.get(0))?;
            (
                current_value(tx, &g.customer, &g.period_start, &g.meter)?,
                last_report_time(&latest, before.as_deref(), &g.period_end)?,
            )
        }
    };
    let id: i64 = tx.query_row(
        "INSERT INTO stripe_reports (customer_id, period_start, meter_event_name, value,
             events, occurred_at, identifier, created_at, meter_id, dimensions, formula)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) RETURNING id",
        params![
            g.customer,
            g.period_start,
            g.event_name,
            value,
            events,
            occurred_at,
            format!("ml-{}", uuid::Uuid::now_v7()),
            format_ts(now),
            g.meter,
            g.dimensions,
            formula.as_str()
        ],
        |r| r.get(0),
    )?;
    tx.prepare_cached(&format!(
        "UPDATE {table} SET stripe_report_id = ?10 WHERE {group}"
    ))?
    .execute(joined(&group_params, &[&last_at, &last_id, &id]).as_slice())?;
    Ok(events as u64)
}

/// `first`'s parameters, then `more`.
fn joined<'a>(
    first: &[&'a dyn crate::db::Param],
    more: &[&'a dyn crate::db::Param],
) -> Vec<&'a dyn crate::db::Param> {
    first.iter().chain(more).copied().collect()
}

/// A delivered report's unreported events are reported at `at`; returns how many.
pub(super) fn report_events(
    tx: &crate::db::Transaction,
    id: i64,
    attempts: u32,
    at: &str,
) -> Result<u64> {
    let events = tx
        .prepare_cached(
            "UPDATE usage_events SET stripe_reported_at = ?2,
                 stripe_attempts = stripe_attempts + ?3, stripe_error = NULL,
                 stripe_failed_at = NULL
             WHERE stripe_report_id = ?1 AND stripe_reported_at IS NULL",
        )?
        .execute(params![id, at, attempts])?;
    Ok(events as u64)
}

/// A refused report's unreported events carry its refusal; returns how many.
pub(super) fn refuse_events(
    tx: &crate::db::Transaction,
    id: i64,
    attempts: u32,
    error: &str,
    at: &str,
) -> Result<u64> {
    let events = tx
        .prepare_cached(
            "UPDATE usage_events SET stripe_attempts = stripe_attempts + ?3,
                 stripe_error = ?4, stripe_failed_at = ?2
             WHERE stripe_report_id = ?1 AND stripe_reported_at IS NULL",
        )?
        .execute(params![id, at, attempts, error])?;
    Ok(events as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_last_report_is_dated_after_the_earlier_ones_within_its_period() {
        let end = "2026-12-01T00:00:00Z";
        // Its latest event's time when that is the newest.
        assert_eq!(
            last_report_time("2026-11-20T10:00:00Z", Some("2026-11-19T00:00:00Z"), end).unwrap(),
            "2026-11-20T10:00:00Z"
        );
        // A late event: a second after the earlier report.
        assert_eq!(
            last_report_time("2026-11-10T10:00:00Z", Some("2026-11-19T00:00:00Z"), end).unwrap(),
            "2026-11-19T00:00:01Z"
        );
        // Never past the period's last second.
        assert_eq!(
            last_report_time("2026-11-10T10:00:00Z", Some("2026-11-30T23:59:59Z"), end).unwrap(),
            "2026-11-30T23:59:59Z"
        );
        assert_eq!(
            last_report_time("2026-11-10T10:00:00Z", None, end).unwrap(),
            "2026-11-10T10:00:00Z"
        );
    }
}
