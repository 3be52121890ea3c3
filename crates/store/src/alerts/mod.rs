//! Alerts in the database (migration 7): the crossings the record path writes and what
//! is read back of them (`crossings.rs`), the credit crossings (migration 17,
//! `credit_crossings.rs`), their deliveries as an outbox (`outbox.rs`), and the delivery runs
//! under their lock (`runs.rs`).

mod credit_crossings;
mod crossings;
mod outbox;
mod runs;

use serde::Serialize;

pub(crate) use credit_crossings::{
    around_credit_change, rearm_credit_alerts, record_credit_crossings,
};
pub(crate) use crossings::{Crossing, record_crossings};
pub use outbox::{AlertCounts, DueDelivery, RecentAlert};
pub use runs::AlertRun;

/// One level crossed (or, with `threshold`, a credit alert): the alert as stored and as
/// delivered (the payload is built from it).
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
    /// The meter whose level it crossed (`usage` without `[[meters]]`; empty for a credit
    /// alert).
    pub meter: String,
    /// A credit alert's `credits_below` (0 for `credits.exhausted`); `None` for a level
    /// crossing.
    pub threshold: Option<String>,
    /// A credit alert's available money credits after the crossing.
    pub available: Option<String>,
    /// A window limit's crossing: the limit ("5h sliding"); empty for the period's.
    pub window: String,
}

/// The columns of an [`Alert`] over `alerts a`, in [`alert_row`]'s order.
pub(crate) const ALERT_COLUMNS: &str =
    "a.id, a.customer_id, a.plan_id, a.level, a.previous_level, a.used,
     a.included, a.ratio, a.period_start, a.period_end, a.occurred_at,
     COALESCE(a.meter_id, ''), a.threshold, a.available, a.window_limit";
/// How many columns [`ALERT_COLUMNS`] has: a query's own columns come after them.
pub(crate) const ALERT_COLUMN_COUNT: usize = 15;

pub(crate) fn alert_row(r: &crate::db::Row) -> crate::Result<Alert> {
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
        meter: r.get(11)?,
        threshold: r.get(12)?,
        available: r.get(13)?,
        window: r.get(14)?,
    })
}
