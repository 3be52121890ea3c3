//! Every meter's standing for one customer, from one read snapshot: `usage` from its period
//! counter (usage_records), the others from meter_counters with their groups.

use crate::db::{OptionalExtension, params};
use chrono::{DateTime, Utc};

use crate::billing::{Allowance, UsageCheck, format_ts};
use crate::config::{AtLimit, Config, IMPLICIT_METER, MeterTerms};
use crate::counters::counter_row;
use crate::{Result, Store};
use meterline_core::{GroupUsage, MeterCheck, MeteredCheck};

/// A plan's terms for a meter as billing sees them; a meter it does not name is unbilled.
pub(crate) fn allowance(terms: Option<&MeterTerms>) -> Allowance {
    terms.map_or(
        Allowance {
            included: None,
            hard_cap: false,
            overage_rate: None,
        },
        |t| Allowance {
            included: t.included,
            hard_cap: t.at_limit == AtLimit::Block,
            overage_rate: t.overage_rate,
        },
    )
}

impl Store {
    /// `customer_id`'s current period on every meter of plans.toml, in order.
    pub fn metered_check(
        &self,
        config: &Config,
        customer_id: &str,
        now: DateTime<Utc>,
    ) -> Result<MeteredCheck> {
        let meters = self.meter_checks(config, customer_id, now)?;
        MeteredCheck::new(meters)
            .ok_or_else(|| crate::Error::InvalidInput("plans.toml has no meter".into()))
    }

    /// Each meter of plans.toml, in order, for `customer_id`'s current period.
    pub fn meter_checks(
        &self,
        config: &Config,
        customer_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<MeterCheck>> {
        let snapshot = self.conn.unchecked_transaction()?;
        let usage = super::queries::check_in(&snapshot, config, customer_id, now, now)?;
        let checks = meter_checks_in(&snapshot, config, usage)?;
        snapshot.finish()?;
        Ok(checks)
    }

    /// One meter's history: `history --meter`. The `usage` meter is `history` itself; any
    /// other meter's periods read its totals from meter_counters, under the plan each period
    /// was billed under and the terms for the meter a closed period kept (migration 11).
    pub fn meter_history(
        &self,
        config: &Config,
        customer_id: &str,
        meter_id: &str,
        count: usize,
        now: DateTime<Utc>,
    ) -> Result<Vec<crate::HistoryRow>> {
        let meter = config.known_meter(meter_id)?;
        let rows = self.history(config, customer_id, count, now)?;
        if meter.id == IMPLICIT_METER {
            return Ok(rows);
        }
        let mut total = self.conn.prepare_cached(
            "SELECT used FROM meter_counters
             WHERE customer_id = ?1 AND period_start = ?2 AND meter_id = ?3 AND group_key = ''",
        )?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let period = crate::billing::Period {
                start: row.check.period_start,
                end: row.check.period_end,
            };
            let used: i64 = total
                .query_row(
                    params![customer_id, format_ts(period.start), meter.id],
                    |r| r.get(0),
                )
                .optional()?
                .unwrap_or(0);
            let kept = counter_row(&self.conn, customer_id, period)?
                .and_then(|r| r.meter_terms(config, period.end <= now));
            let terms = kept
                .as_deref()
                .or_else(|| config.plan(&row.check.plan).map(|p| &p.meters))
                .and_then(|terms| terms.get(&meter.id));
            let check = UsageCheck::compute(
                &row.check.customer,
                &row.check.plan,
                allowance(terms),
                period,
                used,
                &config.thresholds,
            );
            out.push(crate::HistoryRow {
                check,
                meter_event: (used > 0).then(|| meter.stripe_event.clone()),
            });
        }
        Ok(out)
    }

    /// Each meter of plans.toml, in order, in the period of `usage` (the `usage` meter's
    /// check, as `status` computed it: its customer, plan and period). No snapshot of its
    /// own: `status_entries` calls it inside its one read transaction. A customer whose plan
    /// is gone shows every meter as plan missing.
    pub fn meter_checks_of(&self, config: &Config, usage: &UsageCheck) -> Result<Vec<MeterCheck>> {
        meter_checks_in(&self.conn, config, usage.clone())
    }
}

/// Every meter's check in `usage`'s period: `usage` itself for the `usage` meter, the others
/// from meter_counters with their groups, all read with one query (the customer-period's
/// rows), not one per meter.
pub(crate) fn meter_checks_in(
    conn: &crate::db::Connection,
    config: &Config,
    usage: UsageCheck,
) -> Result<Vec<MeterCheck>> {
    let plan = config.plan(&usage.plan);
    let period_start = format_ts(usage.period_start);
    let period = crate::billing::Period {
        start: usage.period_start,
        end: usage.period_end,
    };
    // No ORDER BY: sorted here, bytewise on both engines. (The per-meter query ordered by
    // `group_key = '' DESC, …` was re-prepared by SQLite on every check: 46 % of one.)
    let mut found: Vec<(String, String, i64)> = conn
        .prepare_cached(
            "SELECT meter_id, group_key, used FROM meter_counters
             WHERE customer_id = ?1 AND period_start = ?2",
        )?
        .query_map(params![usage.customer, period_start], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?
        .collect::<Result<_>>()?;
    // Each meter's rows together; within them its total first, then its groups by usage,
    // most first, and by key.
    found.sort_unstable_by(|(meter_a, key_a, used_a), (meter_b, key_b, used_b)| {
        meter_a
            .cmp(meter_b)
            .then_with(|| key_b.is_empty().cmp(&key_a.is_empty()))
            .then_with(|| used_b.cmp(used_a))
            .then_with(|| key_a.cmp(key_b))
    });
    let mut checks = Vec::with_capacity(config.meters.len());
    for meter in &config.meters {
        if meter.id == IMPLICIT_METER {
            checks.push(MeterCheck {
                meter: meter.id.clone(),
                aggregation: meter.aggregation,
                check: usage.clone(),
                groups: Vec::new(),
            });
            continue;
        }
        let first = found.partition_point(|(id, _, _)| *id < meter.id);
        let rows = found[first..]
            .iter()
            .take_while(|(id, _, _)| *id == meter.id);
        let mut total = 0;
        let mut groups = Vec::new();
        for (_, key, used) in rows {
            if key.is_empty() {
                total = *used;
            } else {
                groups.push(GroupUsage {
                    key: serde_json::from_str(key).unwrap_or(serde_json::Value::Null),
                    used: *used,
                });
            }
        }
        let check = if usage.plan_missing {
            UsageCheck::plan_missing(&usage.customer, &usage.plan, period, total)
        } else {
            let terms = plan.and_then(|p| p.meters.get(&meter.id));
            UsageCheck::compute(
                &usage.customer,
                &usage.plan,
                allowance(terms),
                period,
                total,
                &config.thresholds,
            )
        };
        checks.push(MeterCheck {
            meter: meter.id.clone(),
            aggregation: meter.aggregation,
            check,
            groups,
        });
    }
    Ok(checks)
}
