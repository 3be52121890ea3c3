//! What reconcile reads (the units reported per customer and period) and what it records
//! (each run and its rows, for the dashboard). Migration 6.

use std::collections::HashMap;

use crate::db::{Behavior, OptionalExtension, params};
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::Result;
use crate::billing::format_ts;
use crate::meters::stripe::{EventNamed, Route, named_condition};

/// One customer × meter × period compared with Stripe. The JSON shape is a contract.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReconcileRow {
    pub customer: String,
    pub stripe_customer: String,
    /// The meterline meter.
    pub meter: String,
    pub meter_event: String,
    pub period_start: String,
    pub period_end: String,
    /// What meterline has marked reported for the period: the units (a `sum` meter), or the
    /// value of the newest report (a `last` meter).
    pub local: i64,
    /// Stripe's `aggregated_value` for the period.
    pub stripe: i64,
    /// stripe − local.
    pub drift: i64,
    /// ok, drift, pending (reported within the grace time), in_doubt (held reports Stripe's
    /// figure does not settle), resend (Stripe lacks exactly the held reports: sent again).
    pub status: String,
}

/// The last reconcile run, for the dashboard's header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReconcileRun {
    pub finished_at: String,
    pub rows: u64,
    pub drifted: u64,
    pub pending: u64,
    pub in_doubt: u64,
}

/// What the dashboard shows of reconciliation, doubt and expiry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StripeChecks {
    pub last_reconcile: Option<ReconcileRun>,
    /// Per customer: (local, Stripe, status) of the last reconcile.
    pub by_customer: HashMap<String, (i64, i64, String)>,
    /// Events held in doubt.
    pub in_doubt: u64,
    /// Unreported events close to Stripe's 35-day window.
    pub expiring: u64,
}

/// The units reported for one customer's period, and when the last of them was reported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reported {
    pub units: i64,
    pub last_at: Option<String>,
}

/// Reconcile's records and the checks drawn from them; serves `meterline reconcile`, the
/// dashboard and `doctor`.
impl super::Store {
    /// Units marked reported for a customer's period on a `sum` formula meter
    /// (`period_start` as stored): its reported events' amounts (`only` those of one Stripe
    /// event name, for a pattern meter).
    pub fn reported_units(
        &self,
        customer_id: &str,
        period_start: &str,
        route: &Route,
        only: Option<&EventNamed>,
    ) -> Result<Reported> {
        let (named, name) = named_condition(only, 4);
        let meter = &route.meter;
        let (units, last_at): (i64, Option<String>) = self.conn.query_row(
            &format!(
                "SELECT COALESCE(SUM({}), 0),
                        MAX(e.stripe_reported_at)
                 FROM usage_events e
                 WHERE e.customer_id = ?1 AND e.period_start = ?2 AND e.meter_id = ?3
                   AND e.stripe_reported_at IS NOT NULL AND {named}",
                route.amount_sql()
            ),
            params![customer_id, period_start, meter, name],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok(Reported { units, last_at })
    }

    /// What Stripe's `last` should show for a customer's period on a `last` formula meter:
    /// the value of its newest reported report (by timestamp, then id; 0 before any), and
    /// when the last of its reports was reported.
    pub fn reported_value(
        &self,
        customer_id: &str,
        period_start: &str,
        meter: &str,
    ) -> Result<Reported> {
        let newest: Option<i64> = self
            .conn
            .query_row(
                "SELECT value FROM stripe_reports
                 WHERE customer_id = ?1 AND period_start = ?2 AND meter_id = ?3
                   AND reported_at IS NOT NULL
                 ORDER BY occurred_at DESC, id DESC LIMIT 1",
                params![customer_id, period_start, meter],
                |r| r.get(0),
            )
            .optional()?;
        let last_at: Option<String> = self.conn.query_row(
            "SELECT MAX(reported_at) FROM stripe_reports
             WHERE customer_id = ?1 AND period_start = ?2 AND meter_id = ?3",
            params![customer_id, period_start, meter],
            |r| r.get(0),
        )?;
        Ok(Reported {
            units: newest.unwrap_or(0),
            last_at,
        })
    }

    /// True when a customer's period has events on `meter` (reported or not).
    pub fn period_has_events(
        &self,
        customer_id: &str,
        period_start: &str,
        meter: &str,
    ) -> Result<bool> {
        self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM usage_events INDEXED BY usage_events_by_customer_time
                            WHERE customer_id = ?1 AND period_start = ?2 AND meter_id = ?3)",
            params![customer_id, period_start, meter],
            |r| r.get(0),
        )
    }

    /// The meter event name a customer's period was counted under, if it has usage.
    pub fn period_meter(&self, customer_id: &str, period_start: &str) -> Result<Option<String>> {
        self.conn
            .query_row(
                "SELECT meter_event_name FROM usage_records
                 WHERE customer_id = ?1 AND period_start = ?2",
                params![customer_id, period_start],
                |r| r.get(0),
            )
            .optional()
    }

    /// Record a reconcile run and its rows; returns its id.
    pub fn record_reconcile(
        &mut self,
        started_at: DateTime<Utc>,
        finished_at: DateTime<Utc>,
        rows: &[ReconcileRow],
    ) -> Result<i64> {
        let count = |status: &str| rows.iter().filter(|r| r.status == status).count() as i64;
        let tx = self.conn.transaction_with_behavior(Behavior::Immediate)?;
        let id: i64 = tx.query_row(
            "INSERT INTO reconcile_runs (started_at, finished_at, rows, drifted, pending, in_doubt)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING id",
            params![
                format_ts(started_at),
                format_ts(finished_at),
                rows.len() as i64,
                count("drift"),
                count("pending"),
                count("in_doubt")
            ],
            |r| r.get(0),
        )?;
        {
            let mut insert = tx.prepare(
                "INSERT INTO reconcile_rows (run_id, customer_id, meter_event_name,
                     period_start, period_end, local, stripe, status, meter_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT (run_id, customer_id, meter_event_name) DO UPDATE SET
                     period_start = excluded.period_start, period_end = excluded.period_end,
                     local = excluded.local, stripe = excluded.stripe,
                     status = excluded.status, meter_id = excluded.meter_id",
            )?;
            for row in rows {
                insert.execute(params![
                    id,
                    row.customer,
                    row.meter_event,
                    row.period_start,
                    row.period_end,
                    row.local,
                    row.stripe,
                    row.status,
                    row.meter
                ])?;
            }
        }
        tx.commit()?;
        Ok(id)
    }

    /// The most recent reconcile run.
    pub fn last_reconcile(&self) -> Result<Option<ReconcileRun>> {
        self.conn
            .query_row(
                "SELECT finished_at, rows, drifted, pending, in_doubt FROM reconcile_runs
                 ORDER BY id DESC LIMIT 1",
                [],
                |r| {
                    Ok(ReconcileRun {
                        finished_at: r.get(0)?,
                        rows: r.get::<_, i64>(1)? as u64,
                        drifted: r.get::<_, i64>(2)? as u64,
                        pending: r.get::<_, i64>(3)? as u64,
                        in_doubt: r.get::<_, i64>(4)? as u64,
                    })
                },
            )
            .optional()
    }

    /// Everything `StripeChecks` holds, at `now`, with expiry warnings `days` ahead.
    pub fn stripe_checks(&self, now: DateTime<Utc>, days: u32) -> Result<StripeChecks> {
        Ok(StripeChecks {
            last_reconcile: self.last_reconcile()?,
            by_customer: self.last_reconcile_by_customer()?,
            in_doubt: self.in_doubt()?.events,
            expiring: self.count_expiring(now, days)?,
        })
    }

    /// Per customer, the last reconcile's figures (local, Stripe, status) summed over its
    /// meters, for the dashboard: drifted customers are marked, the detail shows Stripe's.
    pub fn last_reconcile_by_customer(&self) -> Result<HashMap<String, (i64, i64, String)>> {
        let mut stmt = self.conn.prepare(
            "SELECT customer_id, SUM(local), SUM(stripe),
                    MAX(CASE status WHEN 'drift' THEN 3 WHEN 'in_doubt' THEN 2
                                    WHEN 'pending' THEN 1 ELSE 0 END)
             FROM reconcile_rows WHERE run_id = (SELECT MAX(id) FROM reconcile_runs)
             GROUP BY customer_id",
        )?;
        let rows = stmt.query_map([], |r| {
            let status = match r.get::<_, i64>(3)? {
                3 => "drift",
                2 => "in_doubt",
                1 => "pending",
                _ => "ok",
            };
            Ok((r.get(0)?, (r.get(1)?, r.get(2)?, status.to_string())))
        })?;
        rows.collect::<crate::Result<_>>()
    }
}
