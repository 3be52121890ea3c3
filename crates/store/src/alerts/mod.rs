//! Usage alerts in the database (migration 7): the crossings the record path writes and what
//! is read back of them (`crossings.rs`), their deliveries as an outbox (`outbox.rs`), and the
//! delivery runs under their lock (`runs.rs`).

mod crossings;
mod outbox;
mod runs;

use serde::Serialize;

pub(crate) use crossings::record_crossings;
pub use outbox::{AlertCounts, DueDelivery, RecentAlert};
pub use runs::AlertRun;

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
    /// The meter whose level it crossed (`usage` without `[[meters]]`).
    pub meter: String,
}

/// The columns of an [`Alert`] over `alerts a`, in [`alert_row`]'s order.
pub(crate) const ALERT_COLUMNS: &str =
    "a.id, a.customer_id, a.plan_id, a.level, a.previous_level, a.used,
     a.included, a.ratio, a.period_start, a.period_end, a.occurred_at, a.meter_id";
/// How many columns [`ALERT_COLUMNS`] has: a query's own columns come after them.
pub(crate) const ALERT_COLUMN_COUNT: usize = 12;

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
    })
}
