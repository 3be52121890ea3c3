//! The delivery outbox: one row per alert × destination, due rows read oldest alert first,
//! each attempt's result written back at once, and counts by state.

use crate::db::params;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{ALERT_COLUMN_COUNT, ALERT_COLUMNS, Alert, alert_row};
use crate::Result;
use crate::billing::format_ts;

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

/// The WHERE clause (over `alert_deliveries d`) of the due deliveries, and its parameters.
fn due_filter(
    now_unix: i64,
    targets: &[String],
    configured: bool,
) -> (String, Vec<crate::db::OwnedValue>) {
    let not = if configured { "" } else { "NOT" };
    // Postgres has no empty `IN ()`: with no targets, none are in and all are not.
    let in_targets = match (targets.is_empty(), configured) {
        (true, true) => "1 = 0".to_owned(),
        (true, false) => "1 = 1".to_owned(),
        (false, _) => format!(
            "d.target {not} IN ({})",
            vec!["?"; targets.len()].join(", ")
        ),
    };
    let params = std::iter::once(now_unix.into())
        .chain(targets.iter().map(|t| t.clone().into()))
        .collect();
    (
        format!("d.state = 'pending' AND d.next_attempt <= ? AND {in_targets}"),
        params,
    )
}

/// The delivery outbox; serves alert delivery (the alerts crate, `serve`) and the dashboard's
/// counts and recent alerts.
impl crate::Store {
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
        let rows = stmt.query_map(&params, |r| {
            Ok(DueDelivery {
                alert: alert_row(r)?,
                target: r.get(ALERT_COLUMN_COUNT)?,
                attempts: r.get(ALERT_COLUMN_COUNT + 1)?,
            })
        })?;
        rows.collect::<crate::Result<_>>()
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
            &params,
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
                 state = CASE WHEN ?4 IS NULL THEN 'failed' ELSE 'pending' END,
                 next_attempt = COALESCE(?4, next_attempt)
             WHERE alert_id = ?1 AND target = ?2 AND state = 'pending'",
            params![alert_id, target, error, next_attempt],
        )?;
        Ok(())
    }

    /// How many deliveries are pending, delivered and failed.
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
                pending: r.get::<_, i64>(ALERT_COLUMN_COUNT)? as u64,
                delivered: r.get::<_, i64>(ALERT_COLUMN_COUNT + 1)? as u64,
                failed: r.get::<_, i64>(ALERT_COLUMN_COUNT + 2)? as u64,
            })
        })?;
        rows.collect::<crate::Result<_>>()
    }
}
