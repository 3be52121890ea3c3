//! Read paths. All of them read the counters (`usage_records`, `usage_members`), never scan
//! events, so they stay fast however many events there are.

use std::collections::HashMap;

use crate::db::{Connection, params};
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use super::Store;
use super::counters::{CounterRow, counter_row, used_in};
use super::customers::{Customer, get, plan_of};
use crate::billing::{Period, UsageCheck, format_ts, period_containing, periods_before};
use crate::config::{Aggregation, Config, IMPLICIT_METER, Plan};
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

/// Reads of the counters; serves `check`, `status`, `history`, `members` and serve's
/// `GET` routes.
impl Store {
    /// The customer's standing in the current period.
    pub fn check(
        &self,
        config: &Config,
        customer_id: &str,
        now: DateTime<Utc>,
    ) -> Result<UsageCheck> {
        // One read transaction: the customer and its counter come from the same snapshot (a
        // plan change cannot fall between them), and the file is locked once, not twice.
        let snapshot = self.conn.unchecked_transaction()?;
        let check = check_in(&snapshot, config, customer_id, now, now)?;
        snapshot.finish()?;
        Ok(check)
    }

    pub(super) fn used_in(&self, customer_id: &str, period: Period) -> Result<i64> {
        used_in(&self.conn, customer_id, period)
    }

    /// Every customer's current standing, most at risk first.
    /// With `[[meters]]`, each row's `check` is its meter nearest the limit (the dashboard's
    /// rule), `allowed` false when any capped meter refuses.
    pub fn status(&self, config: &Config, now: DateTime<Utc>) -> Result<Vec<StatusRow>> {
        // Every current period started within the last 31 days.
        let since = format_ts(now.checked_sub_signed(Duration::days(32)).unwrap_or(now));
        let mut used: HashMap<(String, String), i64> = HashMap::new();
        let mut stmt = self.conn.prepare_cached(
            "SELECT customer_id, period_start, used FROM usage_records WHERE period_start >= ?1",
        )?;
        let mut rows = stmt.query([since])?;
        while let Some(r) = rows.next()? {
            used.insert((r.get(0)?, r.get(1)?), r.get(2)?);
        }
        let unreported = self.unreported_by_customer()?;
        let mut out = Vec::new();
        for customer in self.customers()? {
            let period = period_containing(customer.billing_anchor, config.billing.period, now);
            let key = (customer.id.clone(), format_ts(period.start));
            let used = used.get(&key).copied().unwrap_or(0);
            // A customer on a removed plan shows as "plan missing"; the others normally.
            let usage = match plan_of(config, &customer) {
                Ok(plan) => current_check(config, &customer, plan, period, used),
                Err(_) => UsageCheck::plan_missing(&customer.id, &customer.plan_id, period, used),
            };
            let meters = self.meter_checks_of(config, &usage)?;
            let (meter, check) = match nearest_its_limit(&meters) {
                Some((meter, check)) if config.explicit_meters => (Some(meter), check),
                _ => (None, usage),
            };
            out.push(StatusRow {
                meters,
                meter,
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

    /// The last `count` periods, oldest first, including periods without usage.
    pub fn history(
        &self,
        config: &Config,
        customer_id: &str,
        count: usize,
        now: DateTime<Utc>,
    ) -> Result<Vec<HistoryRow>> {
        let customer = get(&self.conn, customer_id)?;
        let periods = periods_before(customer.billing_anchor, config.billing.period, now, count);
        let mut out = Vec::with_capacity(periods.len());
        for period in periods {
            let row = counter_row(&self.conn, &customer.id, period)?;
            let meter_event = row.as_ref().map(|r| r.meter_event.clone());
            let check = standing(config, &customer, period, row, now);
            out.push(HistoryRow { check, meter_event });
        }
        Ok(out)
    }

    /// Per-member usage of an organisation account in the current period, largest first.
    pub fn members(
        &self,
        config: &Config,
        customer_id: &str,
        now: DateTime<Utc>,
    ) -> Result<MembersSummary> {
        let check = standing_in(&self.conn, config, customer_id, now, now)?;
        let mut stmt = self.conn.prepare_cached(
            "SELECT user_id, used FROM usage_members
             WHERE customer_id = ?1 AND period_start = ?2
             ORDER BY used DESC, user_id",
        )?;
        let rows = stmt
            .query_map(params![customer_id, format_ts(check.period_start)], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
            })?
            .collect::<Result<Vec<_>>>()?;
        Ok(MembersSummary::of(check, rows))
    }

    /// Per-member usage of one meter in the current period, largest first: `members --meter`.
    /// `usage` is `members` itself; a `sum` or `count` meter adds up what each member's events
    /// added to it (the customer's events of the period, by the index on their time). The
    /// other aggregations are not shares of a total: refused.
    pub fn meter_members(
        &self,
        config: &Config,
        customer_id: &str,
        meter_id: &str,
        now: DateTime<Utc>,
    ) -> Result<MembersSummary> {
        let meter = config.known_meter(meter_id)?;
        if meter.id == IMPLICIT_METER {
            return self.members(config, customer_id, now);
        }
        if !matches!(meter.aggregation, Aggregation::Sum | Aggregation::Count) {
            return Err(Error::InvalidInput(format!(
                "meter \"{}\" is {}: members are shown for sum and count meters, whose \
                 total is the members' shares",
                meter.id,
                meter.aggregation.as_str()
            )));
        }
        let snapshot = self.conn.unchecked_transaction()?;
        let usage = check_in(&snapshot, config, customer_id, now, now)?;
        let check = super::meter_reads::meter_checks_in(&snapshot, config, usage)?
            .into_iter()
            .find(|m| m.meter == meter.id)
            .map(|m| m.check)
            .ok_or(Error::NoRows)?;
        let rows = snapshot
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
        snapshot.finish()?;
        Ok(MembersSummary::of(check, rows))
    }
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

/// The customer's standing in the period containing `at`, on any connection (the record path
/// asks inside its transaction). A customer whose current plan is gone is an error here: a
/// caller asking "may they use more?" must not get an answer without terms.
pub(super) fn check_in(
    conn: &Connection,
    config: &Config,
    customer_id: &str,
    at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<UsageCheck> {
    let check = standing_in(conn, config, customer_id, at, now)?;
    if check.plan_missing {
        return Err(Error::PlanMissing {
            customer: check.customer,
            plan: check.plan,
        });
    }
    Ok(check)
}

/// Like `check_in`, but a missing plan is a state of the answer (for views), not an error.
fn standing_in(
    conn: &Connection,
    config: &Config,
    customer_id: &str,
    at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<UsageCheck> {
    let customer = get(conn, customer_id)?;
    let period = period_containing(customer.billing_anchor, config.billing.period, at);
    let row = counter_row(conn, &customer.id, period)?;
    Ok(standing(config, &customer, period, row, now))
}

/// The standing in one period: a closed period reads the terms it was billed under; the
/// current one (and a closed one without kept terms) follows plans.toml.
fn standing(
    config: &Config,
    customer: &Customer,
    period: Period,
    row: Option<CounterRow>,
    now: DateTime<Utc>,
) -> UsageCheck {
    let closed = period.end <= now;
    let (used, plan_id, kept) = match row {
        Some(r) => (r.used, r.plan_id, r.terms.filter(|_| closed)),
        None => (0, customer.plan_id.clone(), None),
    };
    // The current period is billed under the customer's plan at its end.
    let plan_id = if closed {
        plan_id
    } else {
        customer.plan_id.clone()
    };
    let allowance = kept.or_else(|| config.plan(&plan_id).map(|p| p.allowance()));
    match allowance {
        Some(allowance) => UsageCheck::compute(
            &customer.id,
            &plan_id,
            allowance,
            period,
            used,
            &config.thresholds,
        ),
        None => UsageCheck::plan_missing(&customer.id, &plan_id, period, used),
    }
}

/// The current period's standing under the customer's plan.
fn current_check(
    config: &Config,
    customer: &Customer,
    plan: &Plan,
    period: Period,
    used: i64,
) -> UsageCheck {
    UsageCheck::compute(
        &customer.id,
        &plan.id,
        plan.allowance(),
        period,
        used,
        &config.thresholds,
    )
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
