//! `status --json` and `GET /v1/status`: every customer's check, with what a script watching
//! the whole account needs beside it: days left, the highest alert sent, the Stripe side.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Store;
use crate::billing::UsageCheck;
use crate::{Config, Result};
use meterline_core::MeterCheck;

/// One customer, most at risk first (the order of [`Store::status`]).
#[derive(Debug, Clone, Serialize)]
pub struct StatusEntry {
    #[serde(flatten)]
    pub check: UsageCheck,
    /// The highest level alerted in the current period (absent when none was).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alerted_level: Option<String>,
    pub days_left: i64,
    pub stripe: StripeStanding,
    /// Every meter of plans.toml in the current period, as `check --json` lists them.
    pub meters: Vec<MeterCheck>,
}

/// A customer's usage events on the Stripe side, counted as text `status` and the dashboard
/// count them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StripeStanding {
    /// Still to deliver (failed ones included, expired ones not).
    pub unreported: i64,
    pub failed: i64,
    /// Past Stripe's 35-day window: they can never go out.
    pub expired: i64,
    /// Sent over 23 hours ago and never answered: `meterline reconcile` settles them.
    pub in_doubt: i64,
    /// Unreported and close to Stripe's window (`[stripe] expiry_warning_days`): sync soon.
    pub expiring: i64,
}

/// The status snapshot; serves `status --json` and `GET /v1/status`.
impl Store {
    /// Every customer's entry, all read from one snapshot.
    pub fn status_entries(&self, config: &Config, now: DateTime<Utc>) -> Result<Vec<StatusEntry>> {
        let snapshot = self.conn.unchecked_transaction()?;
        let rows = self.status(config, now)?;
        let checks: Vec<&UsageCheck> = rows.iter().map(|r| &r.check).collect();
        let alerted = self.alerted_levels(&checks)?;
        let backlog = self.stripe_backlog(now)?;
        let in_doubt = self.in_doubt_by_customer()?;
        let expiring = self.expiring_by_customer(now, config.stripe.expiry_warning_days)?;
        snapshot.finish()?;
        let count = |map: &std::collections::HashMap<String, i64>, id: &str| {
            map.get(id).copied().unwrap_or(0)
        };
        Ok(rows
            .into_iter()
            .zip(alerted)
            .map(|(row, alerted_level)| {
                let id = row.check.customer.as_str();
                let b = backlog.get(id).copied().unwrap_or_default();
                let stripe = StripeStanding {
                    unreported: b.unreported,
                    failed: b.failed,
                    expired: b.expired,
                    in_doubt: count(&in_doubt, id),
                    expiring: count(&expiring, id),
                };
                StatusEntry {
                    alerted_level,
                    days_left: row.days_left,
                    stripe,
                    check: row.check,
                    meters: row.meters,
                }
            })
            .collect())
    }
}
