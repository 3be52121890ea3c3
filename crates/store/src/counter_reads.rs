//! `status` and `members`. `status` reads the counters (meter_counters, through
//! `meters::standing::Frame`), never scans events, so it stays fast however many there are;
//! `members` adds up the customer's events of the period by member.

use std::collections::HashMap;

use crate::db::{Connection, params};
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Store;
use super::counters::used_in;
use super::customers::get;
use super::meters::standing::Frame;
use crate::billing::{Period, UsageCheck, format_ts, period_containing};
use crate::config::{Aggregation, Config, Meter};
use crate::{Error, Result};

/// One line of the dashboard / `status`: a customer and its current standing.
#[derive(Debug, Clone, Serialize)]
pub struct StatusRow {
    #[serde(flatten)]
    pub check: UsageCheck,
    pub name: String,
    pub stripe_customer_id: Option<String>,
    pub days_left: i64,
    pub unreported: i64,
    /// Every meter's check; with `[[meters]]`, `check` is the one nearest its limit.
    #[serde(skip)]
    pub meters: Vec<meterline_core::MeterCheck>,
    /// With `[[meters]]`, the id of the meter `check` is.
    #[serde(skip)]
    pub meter: Option<String>,
}

/// One period of a customer's history, with the meter its usage went under.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryRow {
    #[serde(flatten)]
    pub check: UsageCheck,
    /// The meter event name the period's usage is reported under (None: no usage).
    pub meter_event: Option<String>,
    /// The meter's `group_by` groups in the period, largest first, each with the units past
    /// `included` its events used and their money (as `check --json` lists them).
    pub groups: Vec<meterline_core::GroupUsage>,
}

/// One member's usage in a period, and its share of the customer's.
#[derive(Debug, Clone, Serialize)]
pub struct Member {
    /// None for usage recorded without a member.
    pub user_id: Option<String>,
    pub used: i64,
    pub share: f64,
}

/// A customer's standing with its members' usage, largest first.
#[derive(Debug, Clone, Serialize)]
pub struct MembersSummary {
    #[serde(flatten)]
    pub check: UsageCheck,
    pub members: Vec<Member>,
}

/// Reads of the counters; serves `status`, `members` and the dashboard (`check` and
/// `history` are in `meters::standing`).
impl Store {
    pub(super) fn used_in(&self, customer_id: &str, period: Period) -> Result<i64> {
        used_in(&self.conn, customer_id, period)
    }

    /// Every customer's current standing, most at risk first. Each row's `check` is its
    /// meter nearest the limit (the dashboard's rule), `allowed` false when any capped meter
    /// refuses.
    /// No snapshot of its own: `status_entries` calls it inside its one read transaction.
    pub fn status(&self, config: &Config, now: DateTime<Utc>) -> Result<Vec<StatusRow>> {
        let unreported = self.unreported_by_customer()?;
        let mut out = Vec::new();
        for customer in self.customers()? {
            let period = period_containing(customer.billing_anchor, config.billing.period, now);
            // A customer on a removed plan shows as "plan missing"; the others normally.
            let frame = Frame::of(config, &customer, period, None, now);
            let meters = frame.meter_checks(&self.conn)?;
            let Some((meter, check)) = nearest_its_limit(&meters) else {
                continue;
            };
            out.push(StatusRow {
                meters,
                meter: config.implicit_meter().is_none().then_some(meter),
                days_left: period.days_left(now),
                unreported: unreported.get(&customer.id).copied().unwrap_or(0),
                name: customer.name,
                stripe_customer_id: customer.stripe_customer_id,
                check,
            });
        }
        out.sort_by(|a, b| {
            // Plan missing first: those customers need attention before anyone else.
            let ratio = |r: &StatusRow| {
                if r.check.plan_missing {
                    f64::INFINITY
                } else {
                    r.check.ratio.unwrap_or(-1.0)
                }
            };
            ratio(b)
                .total_cmp(&ratio(a))
                .then_with(|| a.check.customer.cmp(&b.check.customer))
        });
        Ok(out)
    }

    fn unreported_by_customer(&self) -> Result<HashMap<String, i64>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT customer_id, COUNT(*) FROM usage_events
             WHERE stripe_reported_at IS NULL AND stripe_expired_at IS NULL
             GROUP BY customer_id",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<crate::Result<_>>()
    }

    /// Per-member usage of an organisation account on the default meter in the current
    /// period, largest first. A default meter that is not a total of members' shares (max,
    /// latest, unique_count) lists no members.
    pub fn members(
        &self,
        config: &Config,
        customer_id: &str,
        now: DateTime<Utc>,
    ) -> Result<MembersSummary> {
        let snapshot = self.conn.unchecked_transaction()?;
        let summary = members_in(&snapshot, config, customer_id, now)?;
        snapshot.finish()?;
        Ok(summary)
    }

    /// Per-member usage of one meter in the current period, largest first: `members --meter`.
    /// A `sum` or `count` meter adds up what each member's events added to it (the
    /// customer's events of the period, by the index on their time). The other aggregations
    /// are not shares of a total: refused.
    pub fn meter_members(
        &self,
        config: &Config,
        customer_id: &str,
        meter_id: &str,
        now: DateTime<Utc>,
    ) -> Result<MembersSummary> {
        let meter = config.known_meter(meter_id)?;
        if !is_shared(meter) {
            return Err(Error::InvalidInput(format!(
                "meter \"{}\" is {}: members are shown for sum and count meters, whose \
                 total is the members' shares",
                meter.id,
                meter.aggregation.as_str()
            )));
        }
        let snapshot = self.conn.unchecked_transaction()?;
        let summary = meter_members_in(&snapshot, config, customer_id, meter, now)?;
        snapshot.finish()?;
        Ok(summary)
    }
}

/// `Store::members` on `conn`, inside the caller's read transaction.
pub(crate) fn members_in(
    conn: &Connection,
    config: &Config,
    customer_id: &str,
    now: DateTime<Utc>,
) -> Result<MembersSummary> {
    let meter = config.default_meter();
    if is_shared(meter) {
        return meter_members_in(conn, config, customer_id, meter, now);
    }
    let customer = get(conn, customer_id)?;
    let frame = Frame::read(conn, config, &customer, now, now)?;
    let used = frame.total(conn, &meter.id)?;
    Ok(MembersSummary {
        check: frame.check(meter, used),
        members: Vec::new(),
    })
}

/// What each member's events added to `meter` (a sum or count meter) this period.
fn meter_members_in(
    conn: &Connection,
    config: &Config,
    customer_id: &str,
    meter: &Meter,
    now: DateTime<Utc>,
) -> Result<MembersSummary> {
    let customer = get(conn, customer_id)?;
    let frame = Frame::read(conn, config, &customer, now, now)?;
    let check = frame.check(meter, frame.total(conn, &meter.id)?);
    let rows = conn
        .prepare_cached(
            "SELECT user_id, CAST(SUM(COALESCE(amount, quantity)) AS BIGINT) AS used
             FROM usage_events
             WHERE customer_id = ?1 AND occurred_at >= ?2 AND occurred_at < ?3
               AND meter_id = ?4 AND user_id IS NOT NULL
             GROUP BY user_id ORDER BY used DESC, user_id",
        )?
        .query_map(
            params![
                customer_id,
                format_ts(check.period_start),
                format_ts(check.period_end),
                meter.id
            ],
            |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)),
        )?
        .collect::<Result<Vec<_>>>()?;
    Ok(MembersSummary::of(check, rows))
}

/// A meter whose total is the sum of what each event added: members have shares of it.
fn is_shared(meter: &Meter) -> bool {
    matches!(meter.aggregation, Aggregation::Sum | Aggregation::Count)
}

impl MembersSummary {
    /// `check` with its members' usage (largest first), and what no member was named for.
    fn of(check: UsageCheck, rows: Vec<(String, i64)>) -> MembersSummary {
        let share = |used: i64| {
            if check.used == 0 {
                0.0
            } else {
                used as f64 / check.used as f64
            }
        };
        let attributed: i64 = rows.iter().map(|(_, used)| used).sum();
        let mut members: Vec<Member> = rows
            .into_iter()
            .map(|(user_id, used)| Member {
                user_id: Some(user_id),
                used,
                share: share(used),
            })
            .collect();
        if check.used > attributed {
            members.push(Member {
                user_id: None,
                used: check.used - attributed,
                share: share(check.used - attributed),
            });
        }
        MembersSummary { check, members }
    }
}

/// The meter with the highest ratio (the first on a tie; an unlimited meter only when none
/// has a limit) and its check, with `allowed` over every meter.
fn nearest_its_limit(meters: &[meterline_core::MeterCheck]) -> Option<(String, UsageCheck)> {
    let mut nearest = meters.first()?;
    for m in meters {
        if m.check.ratio.unwrap_or(-1.0) > nearest.check.ratio.unwrap_or(-1.0) {
            nearest = m;
        }
    }
    let mut check = nearest.check.clone();
    check.allowed = meters.iter().all(|m| m.check.allowed);
    Some((nearest.meter.clone(), check))
}
