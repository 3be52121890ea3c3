//! Read paths. All of them read the counters (`usage_records`, `usage_members`), never scan
//! events, so they stay fast however many events there are.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::Store;
use super::customers::{Customer, get, plan_of};
use crate::Result;
use crate::billing::{Period, UsageCheck, format_ts, period_containing, periods_before};
use crate::config::Config;

/// One line of the dashboard / `status`: a customer and its current standing.
#[derive(Debug, Clone, Serialize)]
pub struct StatusRow {
    #[serde(flatten)]
    pub check: UsageCheck,
    pub name: String,
    pub stripe_customer_id: Option<String>,
    pub days_left: i64,
    pub unreported: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct HistoryRow {
    #[serde(flatten)]
    pub check: UsageCheck,
    /// The meter event name the period's usage is reported under (None: no usage).
    pub meter_event: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Member {
    /// None for usage recorded without a member.
    pub user_id: Option<String>,
    pub used: i64,
    pub share: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct MembersSummary {
    #[serde(flatten)]
    pub check: UsageCheck,
    pub members: Vec<Member>,
}

impl Store {
    /// The customer's standing in the current period.
    pub fn check(
        &self,
        config: &Config,
        customer_id: &str,
        now: DateTime<Utc>,
    ) -> Result<UsageCheck> {
        self.check_at(config, customer_id, now)
    }

    /// The customer's standing in the period containing `at`.
    pub fn check_at(
        &self,
        config: &Config,
        customer_id: &str,
        at: DateTime<Utc>,
    ) -> Result<UsageCheck> {
        check_in(&self.conn, config, customer_id, at)
    }

    pub(super) fn used_in(&self, customer_id: &str, period: Period) -> Result<i64> {
        used_in(&self.conn, customer_id, period)
    }

    /// Every customer's current standing, most at risk first.
    pub fn status(&self, config: &Config, now: DateTime<Utc>) -> Result<Vec<StatusRow>> {
        // Every current period started within the last 31 days.
        let since = format_ts(now - Duration::days(32));
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
            let check = check_of(
                config,
                &customer,
                period,
                used.get(&key).copied().unwrap_or(0),
            )?;
            out.push(StatusRow {
                days_left: period.days_left(now),
                unreported: unreported.get(&customer.id).copied().unwrap_or(0),
                name: customer.name,
                stripe_customer_id: customer.stripe_customer_id,
                check,
            });
        }
        out.sort_by(|a, b| {
            let ratio = |r: &StatusRow| r.check.ratio.unwrap_or(-1.0);
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
        Ok(rows.collect::<rusqlite::Result<_>>()?)
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
        let mut stmt = self.conn.prepare_cached(
            "SELECT used, plan_id, meter_event_name FROM usage_records
             WHERE customer_id = ?1 AND period_start = ?2",
        )?;
        let mut out = Vec::with_capacity(periods.len());
        for period in periods {
            let row: Option<(i64, String, String)> = stmt
                .query_row(params![customer.id, format_ts(period.start)], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .optional()?;
            let (used, plan_id, meter_event) = match row {
                Some((used, plan, meter)) => (used, plan, Some(meter)),
                None => (0, customer.plan_id.clone(), None),
            };
            // A plan since removed from plans.toml still shows, as unlimited.
            let allowance = config.plan(&plan_id).map_or(
                crate::billing::Allowance {
                    included: None,
                    hard_cap: false,
                    overage_rate: None,
                },
                |plan| plan.allowance(),
            );
            let check = UsageCheck::compute(
                &customer.id,
                &plan_id,
                allowance,
                period,
                used,
                &config.thresholds,
            );
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
        let check = self.check(config, customer_id, now)?;
        let mut stmt = self.conn.prepare_cached(
            "SELECT user_id, used FROM usage_members
             WHERE customer_id = ?1 AND period_start = ?2
             ORDER BY used DESC, user_id",
        )?;
        let rows = stmt.query_map(params![customer_id, format_ts(check.period_start)], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
        })?;
        let share = |used: i64| {
            if check.used == 0 {
                0.0
            } else {
                used as f64 / check.used as f64
            }
        };
        let mut members = Vec::new();
        let mut attributed = 0;
        for row in rows {
            let (user_id, used) = row?;
            attributed += used;
            members.push(Member {
                user_id: Some(user_id),
                used,
                share: share(used),
            });
        }
        if check.used > attributed {
            members.push(Member {
                user_id: None,
                used: check.used - attributed,
                share: share(check.used - attributed),
            });
        }
        Ok(MembersSummary { check, members })
    }
}

/// The customer's standing in the period containing `at`, on any connection (the record path
/// asks inside its transaction).
pub(super) fn check_in(
    conn: &Connection,
    config: &Config,
    customer_id: &str,
    at: DateTime<Utc>,
) -> Result<UsageCheck> {
    let customer = get(conn, customer_id)?;
    let period = period_containing(customer.billing_anchor, config.billing.period, at);
    let used = used_in(conn, &customer.id, period)?;
    check_of(config, &customer, period, used)
}

fn used_in(conn: &Connection, customer_id: &str, period: Period) -> Result<i64> {
    Ok(conn
        .prepare_cached(
            "SELECT used FROM usage_records WHERE customer_id = ?1 AND period_start = ?2",
        )?
        .query_row(params![customer_id, format_ts(period.start)], |r| r.get(0))
        .optional()?
        .unwrap_or(0))
}

fn check_of(config: &Config, customer: &Customer, period: Period, used: i64) -> Result<UsageCheck> {
    let plan = plan_of(config, customer)?;
    Ok(UsageCheck::compute(
        &customer.id,
        &plan.id,
        plan.allowance(),
        period,
        used,
        &config.thresholds,
    ))
}
