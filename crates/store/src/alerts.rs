//! Usage alerts in the database: the crossings the record path writes, their deliveries (an
//! outbox), the delivery lock and the record of delivery runs.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::billing::{Period, UsageCheck, WarningLevel, format_ts};
use crate::config::Config;
use crate::lock::{LockHolder, RunLock};
use crate::{Error, Result};

/// One level crossed: the alert as stored and as delivered (the payload is built from it).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    pub id: String,
    pub customer: String,
    pub plan: String,
    pub level: String,
    pub previous_level: String,
    pub used: i64,
    pub limit: Option<i64>,
    pub ratio: Option<f64>,
    pub period_start: String,
    pub period_end: String,
    pub occurred_at: String,
}

/// A delivery that is due, with its alert.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    pub alert: Alert,
    pub target: String,
    /// Attempts made before this one.
    pub attempts: u32,
}

/// How many deliveries are in each state (the dashboard header, `alerts --json`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct AlertCounts {
    pub pending: u64,
    pub delivered: u64,
    pub failed: u64,
}

/// A recent alert and how its deliveries stand (the dashboard's panel).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecentAlert {
    pub alert: Alert,
    pub pending: u64,
    pub delivered: u64,
    pub failed: u64,
}

/// What a delivery run did, closed into `alert_runs`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AlertRun {
    pub id: i64,
    pub outcome: String,
    pub attempted: u64,
    pub delivered: u64,
    pub retrying: u64,
    pub failed: u64,
}

const ALERT_COLUMNS: &str = "a.id, a.customer_id, a.plan_id, a.level, a.previous_level, a.used,
     a.included, a.ratio, a.period_start, a.period_end, a.occurred_at";

fn alert_row(r: &rusqlite::Row) -> rusqlite::Result<Alert> {
    Ok(Alert {
        id: r.get(0)?,
        customer: r.get(1)?,
        plan: r.get(2)?,
        level: r.get(3)?,
        previous_level: r.get(4)?,
        used: r.get(5)?,
        limit: r.get(6)?,
        ratio: r.get(7)?,
        period_start: r.get(8)?,
        period_end: r.get(9)?,
        occurred_at: r.get(10)?,
    })
}

/// The WHERE clause (over `alert_deliveries d`) of the due deliveries, and its parameters.
fn due_filter(
    now_unix: i64,
    targets: &[String],
    configured: bool,
) -> (String, Vec<rusqlite::types::Value>) {
    let placeholders = vec!["?"; targets.len()].join(", ");
    let not = if configured { "" } else { "NOT" };
    let params = std::iter::once(now_unix.into())
        .chain(targets.iter().map(|t| t.clone().into()))
        .collect();
    (
        format!(
            "d.state = 'pending' AND d.next_attempt <= ? AND d.target {not} IN ({placeholders})"
        ),
        params,
    )
}

/// Inside the caller's transaction: write one alert per level in (`before`, `after.level`]
/// that this customer's period has not had yet, and a delivery row for every `[[alerts]]`
/// entry that wants it. Costs nothing unless the level went up.
pub(super) fn record_crossings(
    conn: &Connection,
    config: &Config,
    before: WarningLevel,
    after: &UsageCheck,
    period: Period,
    now: DateTime<Utc>,
) -> Result<()> {
    for level in meterline_core::alerts::levels_crossed(before, after.level) {
        let id = meterline_core::alerts::new_id();
        let inserted = conn
            .prepare_cached(
                "INSERT INTO alerts (id, customer_id, plan_id, period_start, period_end, level,
                     previous_level, used, included, ratio, occurred_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                 ON CONFLICT (customer_id, period_start, level) DO NOTHING",
            )?
            .execute(params![
                id,
                after.customer,
                after.plan,
                format_ts(period.start),
                format_ts(period.end),
                level.as_str(),
                before.as_str(),
                after.used,
                after.limit,
                after.ratio,
                format_ts(now)
            ])?;
        if inserted == 0 {
            continue; // This period already had it: exactly one alert per level.
        }
        for rule in config
            .alerts
            .iter()
            .filter(|r| r.matches(&after.plan, level))
        {
            conn.prepare_cached(
                "INSERT INTO alert_deliveries (alert_id, target) VALUES (?1, ?2)
                 ON CONFLICT DO NOTHING",
            )?
            .execute(params![id, rule.target.key()])?;
        }
    }
    Ok(())
}

const ALERT_LOCK: RunLock = RunLock {
    lock: "alert_lock",
    runs: "alert_runs",
    mark_interrupted: "UPDATE alert_runs SET outcome = 'interrupted'
         WHERE id = ?1 AND finished_at IS NULL",
};

impl super::Store {
    /// Pending deliveries due at `now_unix`, oldest alert first: to `targets` only, or (with
    /// `configured` false) to every destination *not* in `targets`.
    pub fn due_alert_deliveries(
        &self,
        now_unix: i64,
        targets: &[String],
        configured: bool,
        limit: usize,
    ) -> Result<Vec<DueDelivery>> {
        let (filter, params) = due_filter(now_unix, targets, configured);
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {ALERT_COLUMNS}, d.target, d.attempts
             FROM alert_deliveries d JOIN alerts a ON a.id = d.alert_id
             WHERE {filter} ORDER BY a.occurred_at, a.id LIMIT {limit}"
        ))?;
        let rows = stmt.query_map(rusqlite::params_from_iter(params), |r| {
            Ok(DueDelivery {
                alert: alert_row(r)?,
                target: r.get(11)?,
                attempts: r.get(12)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// How many `due_alert_deliveries` would list, without reading them.
    pub fn count_due_alert_deliveries(
        &self,
        now_unix: i64,
        targets: &[String],
        configured: bool,
    ) -> Result<u64> {
        let (filter, params) = due_filter(now_unix, targets, configured);
        let n: i64 = self.conn.query_row(
            &format!("SELECT COUNT(*) FROM alert_deliveries d WHERE {filter}"),
            rusqlite::params_from_iter(params),
            |r| r.get(0),
        )?;
        Ok(n as u64)
    }

    /// A 2xx (or exit 0): delivered for good.
    pub fn alert_delivered(&self, alert_id: &str, target: &str, at: DateTime<Utc>) -> Result<()> {
        self.conn.execute(
            "UPDATE alert_deliveries SET state = 'delivered', attempts = attempts + 1,
                 delivered_at = ?3, last_error = NULL
             WHERE alert_id = ?1 AND target = ?2 AND state = 'pending'",
            params![alert_id, target, format_ts(at)],
        )?;
        Ok(())
    }

    /// A failed attempt: retried from `next_attempt` (Unix seconds), or failed for good when
    /// `next_attempt` is `None`.
    pub fn alert_attempt_failed(
        &self,
        alert_id: &str,
        target: &str,
        error: &str,
        next_attempt: Option<i64>,
    ) -> Result<()> {
        self.conn.execute(
            "UPDATE alert_deliveries SET attempts = attempts + 1, last_error = ?3,
                 state = IIF(?4 IS NULL, 'failed', 'pending'),
                 next_attempt = COALESCE(?4, next_attempt)
             WHERE alert_id = ?1 AND target = ?2 AND state = 'pending'",
            params![alert_id, target, error, next_attempt],
        )?;
        Ok(())
    }

    pub fn alert_counts(&self) -> Result<AlertCounts> {
        let mut counts = AlertCounts::default();
        let mut stmt = self
            .conn
            .prepare_cached("SELECT state, COUNT(*) FROM alert_deliveries GROUP BY state")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        for row in rows {
            let (state, n) = row?;
            let n = n as u64;
            match state.as_str() {
                "pending" => counts.pending = n,
                "delivered" => counts.delivered = n,
                _ => counts.failed = n,
            }
        }
        Ok(counts)
    }

    /// Every alert, oldest first (tests and exports).
    pub fn alerts(&self) -> Result<Vec<Alert>> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {ALERT_COLUMNS} FROM alerts a ORDER BY a.occurred_at, a.id"
        ))?;
        let rows = stmt.query_map([], alert_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The `limit` latest alerts, newest first, with their delivery counts.
    pub fn recent_alerts(&self, limit: usize) -> Result<Vec<RecentAlert>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {ALERT_COLUMNS},
                 (SELECT COUNT(*) FROM alert_deliveries d WHERE d.alert_id = a.id AND d.state = 'pending'),
                 (SELECT COUNT(*) FROM alert_deliveries d WHERE d.alert_id = a.id AND d.state = 'delivered'),
                 (SELECT COUNT(*) FROM alert_deliveries d WHERE d.alert_id = a.id AND d.state = 'failed')
             FROM alerts a INDEXED BY alerts_by_time ORDER BY a.occurred_at DESC, a.id DESC LIMIT ?1"
        ))?;
        let rows = stmt.query_map([limit as i64], |r| {
            Ok(RecentAlert {
                alert: alert_row(r)?,
                pending: r.get::<_, i64>(11)? as u64,
                delivered: r.get::<_, i64>(12)? as u64,
                failed: r.get::<_, i64>(13)? as u64,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The highest level alerted in the period starting at `period_start`, if any.
    pub fn alerted_level(&self, customer: &str, period_start: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT level FROM alerts WHERE customer_id = ?1 AND period_start = ?2
                 ORDER BY CASE level WHEN 'hard_cap' THEN 3 WHEN 'critical' THEN 2 ELSE 1 END DESC
                 LIMIT 1",
            )?
            .query_row(params![customer, period_start], |r| r.get(0))
            .optional()?)
    }

    /// The highest level alerted in each row's period, in the rows' order: one scan of the
    /// alerts of the periods shown, not one query per customer.
    pub(super) fn alerted_levels(&self, rows: &[super::StatusRow]) -> Result<Vec<Option<String>>> {
        let Some(since) = rows.iter().map(|r| r.check.period_start).min() else {
            return Ok(Vec::new());
        };
        let mut highest: HashMap<(String, String), WarningLevel> = HashMap::new();
        let mut stmt = self.conn.prepare_cached(
            "SELECT customer_id, period_start, level FROM alerts WHERE period_start >= ?1",
        )?;
        let mut found = stmt.query([format_ts(since)])?;
        while let Some(r) = found.next()? {
            let level: String = r.get(2)?;
            let level = match level.as_str() {
                "hard_cap" => WarningLevel::HardCap,
                "critical" => WarningLevel::Critical,
                _ => WarningLevel::Warning,
            };
            let entry = highest.entry((r.get(0)?, r.get(1)?)).or_insert(level);
            *entry = (*entry).max(level);
        }
        Ok(rows
            .iter()
            .map(|r| {
                highest
                    .get(&(r.check.customer.clone(), format_ts(r.check.period_start)))
                    .map(|l| l.as_str().to_string())
            })
            .collect())
    }

    /// Take the delivery lock and open a run record; as `begin_sync_run`, a lock left by a
    /// dead process is taken over.
    pub fn begin_alert_run(
        &mut self,
        holder: &LockHolder,
        started_at: DateTime<Utc>,
    ) -> Result<i64> {
        ALERT_LOCK
            .begin(&mut self.conn, holder, started_at)?
            .map_err(|(other, acquired_at)| {
                Error::AlertsRunning(format!(
                    "another alert delivery is already running (pid {} on {}, started \
                     {acquired_at}); it holds the database's alerts lock, so this one sends \
                     nothing. Wait for it to finish and run again",
                    other.pid, other.host
                ))
            })
    }

    pub fn alert_heartbeat(&self, run_id: i64) -> Result<()> {
        ALERT_LOCK.heartbeat(&self.conn, run_id)
    }

    /// Close the run record and release the lock, in one transaction.
    pub fn finish_alert_run(&mut self, run: &AlertRun, at: DateTime<Utc>) -> Result<()> {
        ALERT_LOCK.finish(&mut self.conn, run.id, |conn| {
            conn.execute(
                "UPDATE alert_runs SET finished_at = ?2, outcome = ?3, attempted = ?4,
                     delivered = ?5, retrying = ?6, failed = ?7
                 WHERE id = ?1",
                params![
                    run.id,
                    format_ts(at),
                    run.outcome,
                    run.attempted as i64,
                    run.delivered as i64,
                    run.retrying as i64,
                    run.failed as i64
                ],
            )?;
            Ok(())
        })
    }
}
