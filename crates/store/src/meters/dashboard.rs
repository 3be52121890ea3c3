//! The dashboard's reads of meters (migration 10), still counter-based: every meter's total
//! for the overview rows (one primary-key lookup per customer × meter in meter_counters; the
//! `usage` meter is usage_records.used), and for one customer's detail each meter's standing,
//! its largest groups (meter_counters' group rows) and its usage per day (that customer's
//! events of the period, on the watcher thread, like the detail's other reads).
//!
//! A plans.toml without `[[meters]]` has only the implicit `usage` meter: then none of this is
//! read and the dashboard is what it was before meters.

use std::collections::HashMap;

use crate::db::params;
use chrono::{DateTime, Duration, NaiveDate, Utc};

use crate::Result;
use crate::billing::{Period, UsageCheck, WarningLevel, format_ts};
use crate::config::{Aggregation, Config, Meter};
use crate::{Store, customers::get};
use meterline_core::WindowUsage;

/// How many of a meter's groups the detail lists (the rest are counted).
pub(crate) const DETAIL_GROUPS: usize = 5;

/// One meter's figures in a customer's current period, for the overview.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeterFigure {
    pub used: i64,
    /// The plan's included units of this meter; `None`: unlimited, a meter the plan does not
    /// bill, or a plan no longer in plans.toml.
    pub limit: Option<i64>,
}

impl MeterFigure {
    /// used / limit; `None` without a limit.
    pub fn ratio(&self) -> Option<f64> {
        self.limit.map(|l| {
            if l == 0 {
                1.0
            } else {
                self.used as f64 / l as f64
            }
        })
    }
}

/// The meter a row shows when none is picked: the one nearest its limit (the highest ratio
/// among the meters with a limit, the first of them on a tie); the first meter when none has
/// a limit.
pub(crate) fn nearest_limit(meters: &[MeterFigure]) -> usize {
    let mut best: Option<(usize, f64)> = None;
    for (i, ratio) in meters
        .iter()
        .enumerate()
        .filter_map(|(i, m)| Some((i, m.ratio()?)))
    {
        if best.is_none_or(|(_, b)| ratio > b) {
            best = Some((i, ratio));
        }
    }
    best.map_or(0, |(i, _)| i)
}

/// True when plans.toml names meters of its own (`[[meters]]`), false for the implicit
/// meter alone, whose figure is its period row's `used` (the database contract's copy of
/// its total, which the overview joins anyway).
pub fn has_meters(config: &Config) -> bool {
    config.implicit_meter().is_none()
}

/// Each meter's included units, per plan id, in plans.toml's meter order.
pub(crate) struct Limits {
    by_plan: HashMap<String, Vec<Option<i64>>>,
    unknown: Vec<Option<i64>>,
}

impl Limits {
    pub(crate) fn new(config: &Config) -> Limits {
        let by_plan = config
            .plans
            .iter()
            .map(|plan| {
                let limits = config
                    .meters
                    .iter()
                    .map(|m| plan.meters.get(&m.id).and_then(|t| t.included))
                    .collect();
                (plan.id.clone(), limits)
            })
            .collect();
        Limits {
            by_plan,
            unknown: vec![None; config.meters.len()],
        }
    }

    /// The figures of a customer on `plan_id` who used `used` of each meter.
    pub(crate) fn figures(&self, plan_id: &str, used: &[i64]) -> Vec<MeterFigure> {
        let limits = self.by_plan.get(plan_id).unwrap_or(&self.unknown);
        used.iter()
            .zip(limits)
            .map(|(&used, &limit)| MeterFigure { used, limit })
            .collect()
    }
}

/// The overview's extra columns with `[[meters]]`, one per meter: a primary-key lookup of its
/// total in the joined period, and the index of its column in the result row. Parameters
/// from ?2 on are the meter ids; `first_column` is the index the first of them gets.
pub(crate) fn overview_columns(
    config: &Config,
    first_column: usize,
) -> (String, Vec<String>, Vec<usize>) {
    let mut sql = String::new();
    let mut ids = Vec::new();
    let mut columns = Vec::with_capacity(config.meters.len());
    if !has_meters(config) {
        return (sql, ids, columns);
    }
    for meter in &config.meters {
        ids.push(meter.id.clone());
        sql.push_str(&format!(
            ",\n (SELECT m.used FROM meter_counters m WHERE m.customer_id = c.id
                 AND m.period_start = r.period_start AND m.meter_id = ?{} AND m.group_key = '')",
            ids.len() + 1
        ));
        columns.push(first_column + ids.len() - 1);
    }
    (sql, ids, columns)
}

/// One group of a meter in the detail: its values in `group_by` order (`None`: the event
/// did not carry it), its usage this period, and the units past `included` its events used
/// with their money (at the group's rate when each was recorded).
#[derive(Debug, Clone, PartialEq)]
pub struct GroupRow {
    pub values: Vec<Option<String>>,
    pub used: i64,
    pub overage_units: i64,
    pub overage_amount: rust_decimal::Decimal,
}

/// One meter in the customer detail.
#[derive(Debug, Clone, PartialEq)]
pub struct MeterDetail {
    /// The meter's id in plans.toml.
    pub meter: String,
    pub name: String,
    pub aggregation: Aggregation,
    /// Its `group_by` dimensions.
    pub group_by: Vec<String>,
    /// Its standing this period under the plan's terms for it (unlimited when the plan does
    /// not bill it).
    pub check: UsageCheck,
    /// Per day of the period, from its first day to today, zeros included: the meter's own
    /// aggregation over that day's events (sum or count of the day, its max, its latest
    /// value, its distinct values).
    pub daily: Vec<(NaiveDate, i64)>,
    /// The largest groups, largest first (then by key), at most five (`DETAIL_GROUPS`).
    pub groups: Vec<GroupRow>,
    /// Groups beyond those listed.
    pub more_groups: usize,
}

/// A limited meter's windows (`[[plans.meters.ID.limits]]`) now, for the detail: what
/// `check --json` shows.
#[derive(Debug, Clone, PartialEq)]
pub struct MeterWindows {
    /// The meter's id in plans.toml.
    pub meter: String,
    pub name: String,
    pub windows: Vec<WindowUsage>,
}

/// A customer's fullest window over all its meters, for the overview's Window column and its
/// sort.
#[derive(Debug, Clone, PartialEq)]
pub struct TightestWindow {
    /// The meter's id.
    pub meter: String,
    /// "5h", "7d".
    pub window: String,
    pub used: i64,
    pub limit: i64,
    pub level: WarningLevel,
    /// The next instant one of the customer's windows moves with no new event: the soonest
    /// a sliding window frees up or a fixed one resets (`None`: nothing to free up).
    pub moves_at: Option<DateTime<Utc>>,
}

impl TightestWindow {
    /// used / limit (a limit is never 0: plans.toml refuses it).
    pub fn ratio(&self) -> f64 {
        self.used as f64 / self.limit.max(1) as f64
    }

    /// The fullest of `meters`' windows; the first of equal ones.
    fn of(meters: &[MeterWindows]) -> Option<TightestWindow> {
        let windows = || meters.iter().flat_map(|m| &m.windows);
        let moves_at = windows()
            .filter_map(|w| w.frees_at.as_deref().or(w.resets_at.as_deref()))
            .filter_map(|at| crate::billing::parse_ts(at).ok())
            .min();
        let mut tightest: Option<TightestWindow> = None;
        for m in meters {
            for w in &m.windows {
                let candidate = TightestWindow {
                    meter: m.meter.clone(),
                    window: w.window.clone(),
                    used: w.used,
                    limit: w.limit,
                    level: w.level,
                    moves_at,
                };
                if tightest
                    .as_ref()
                    .is_none_or(|t| candidate.ratio() > t.ratio())
                {
                    tightest = Some(candidate);
                }
            }
        }
        tightest
    }
}

/// The meter reads of the dashboard (migration 10's meters); serves the tui.
impl Store {
    /// Every window `plan` puts on `customer_id`'s meters at `now` in `period` (the current
    /// one), in plans.toml's meter order; nothing for a plan without windows, read or not.
    pub(crate) fn meter_windows(
        &self,
        config: &Config,
        (customer_id, plan): (&str, &str),
        period: Period,
        now: DateTime<Utc>,
    ) -> Result<Vec<MeterWindows>> {
        let Some(terms) = config.plan(plan).map(|p| &p.meters) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for meter in &config.meters {
            if terms.get(&meter.id).is_none_or(|t| t.limits.is_empty()) {
                continue;
            }
            let at = (customer_id, meter.id.as_str());
            let windows = crate::windows::meter_windows(&self.conn, config, plan, at, period, now)?;
            out.push(MeterWindows {
                meter: meter.id.clone(),
                name: meter.name.clone(),
                windows,
            });
        }
        Ok(out)
    }

    /// The customer's fullest window now (`None` on a plan without windows).
    pub(crate) fn tightest_window(
        &self,
        config: &Config,
        customer: (&str, &str),
        period: Period,
        now: DateTime<Utc>,
    ) -> Result<Option<TightestWindow>> {
        Ok(TightestWindow::of(
            &self.meter_windows(config, customer, period, now)?,
        ))
    }

    /// Each meter's total in `customer_id`'s current period (`period`), in plans.toml's
    /// order.
    pub(crate) fn meter_totals(
        &self,
        config: &Config,
        customer_id: &str,
        period: Period,
    ) -> Result<Vec<i64>> {
        let start = format_ts(period.start);
        let mut stmt = self.conn.prepare_cached(
            "SELECT used FROM meter_counters
             WHERE customer_id = ?1 AND period_start = ?2 AND meter_id = ?3 AND group_key = ''",
        )?;
        let mut out = Vec::with_capacity(config.meters.len());
        for meter in &config.meters {
            let mut rows = stmt.query(params![customer_id, start, meter.id])?;
            out.push(match rows.next()? {
                Some(r) => r.get(0)?,
                None => 0,
            });
        }
        Ok(out)
    }

    /// Every meter of plans.toml for the detail of `customer_id`, in the period of `usage`
    /// (its default meter's standing). Inside the detail's read transaction.
    pub(crate) fn meter_details(
        &self,
        config: &Config,
        customer_id: &str,
        usage: &UsageCheck,
        now: DateTime<Utc>,
    ) -> Result<Vec<MeterDetail>> {
        if !has_meters(config) {
            return Ok(Vec::new());
        }
        let customer = get(&self.conn, customer_id)?;
        let period = Period {
            start: usage.period_start,
            end: usage.period_end,
        };
        let frame = crate::meters::standing::Frame::of(config, &customer, period, None, now);
        // Priced and grouped as `check` reads them (one query for every meter's rows).
        let checks = frame.meter_checks(&self.conn)?;
        let days = period_days(period, now);
        let mut out = Vec::with_capacity(config.meters.len());
        for (meter, check) in config.meters.iter().zip(checks) {
            let by_day = self.meter_by_day(meter, customer_id, period)?;
            let daily = days
                .iter()
                .map(|d| {
                    let key = d.format("%Y-%m-%d").to_string();
                    (*d, by_day.get(&key).copied().unwrap_or(0))
                })
                .collect();
            let more_groups = check.groups.len().saturating_sub(DETAIL_GROUPS);
            let groups = check
                .groups
                .into_iter()
                .take(DETAIL_GROUPS)
                .map(|g| GroupRow {
                    values: group_values(meter, &g.values()),
                    used: g.used,
                    overage_units: g.overage_units,
                    overage_amount: g.overage_amount,
                })
                .collect();
            out.push(MeterDetail {
                meter: meter.id.clone(),
                name: meter.name.clone(),
                aggregation: meter.aggregation,
                group_by: meter.group_by.clone(),
                check: check.check,
                daily,
                groups,
                more_groups,
            });
        }
        Ok(out)
    }

    /// The meter's aggregation over each day's events of the period, by day ("YYYY-MM-DD").
    /// One range of the customer's events (the by-customer-and-time index), as the
    /// single-meter chart reads it.
    fn meter_by_day(
        &self,
        meter: &Meter,
        customer_id: &str,
        period: Period,
    ) -> Result<HashMap<String, i64>> {
        const EVENTS: &str = "FROM usage_events
             WHERE customer_id = ?1 AND occurred_at >= ?2 AND occurred_at < ?3 AND meter_id = ?4";
        // Each event's value on its meter is `amount` (NULL: its quantity).
        let sql = match meter.aggregation {
            Aggregation::Sum | Aggregation::Count => format!(
                "SELECT substr(occurred_at, 1, 10), SUM(COALESCE(amount, quantity)) {EVENTS}
                 GROUP BY 1"
            ),
            Aggregation::Max => format!(
                "SELECT substr(occurred_at, 1, 10), MAX(COALESCE(amount, quantity)) {EVENTS}
                 GROUP BY 1"
            ),
            // The day's latest event by time, ties by id.
            Aggregation::Latest => format!(
                "SELECT day, value FROM
                     (SELECT substr(occurred_at, 1, 10) AS day, COALESCE(amount, quantity) AS value,
                             ROW_NUMBER() OVER (PARTITION BY substr(occurred_at, 1, 10)
                                                ORDER BY occurred_at DESC, id DESC) AS nth
                      {EVENTS}) AS ranked
                 WHERE nth = 1"
            ),
            Aggregation::UniqueCount => format!(
                "SELECT substr(occurred_at, 1, 10), COUNT(DISTINCT json_extract(properties, ?5))
                 {EVENTS} GROUP BY 1"
            ),
        };
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let start = format_ts(period.start);
        let end = format_ts(period.end);
        let map = |r: &crate::db::Row| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?));
        let rows = if meter.aggregation == Aggregation::UniqueCount {
            // A JSON path naming the property as one key, dots and dashes included.
            let path = format!("$.\"{}\"", meter.property.as_deref().unwrap_or_default());
            stmt.query_map(params![customer_id, start, end, meter.id, path], map)?
                .collect::<crate::Result<_>>()?
        } else {
            stmt.query_map(params![customer_id, start, end, meter.id], map)?
                .collect::<crate::Result<_>>()?
        };
        Ok(rows)
    }
}

/// A group key (`{"model":"small"}`) as its values in `group_by` order.
fn group_values(meter: &Meter, key: &serde_json::Value) -> Vec<Option<String>> {
    let empty = serde_json::Map::new();
    let object = key.as_object().unwrap_or(&empty);
    meter
        .group_by
        .iter()
        .map(|dim| match object.get(dim) {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(serde_json::Value::Null) | None => None,
            Some(other) => Some(other.to_string()),
        })
        .collect()
}

/// The days of `period` from its first to today (or its last, for a past period).
pub(crate) fn period_days(period: Period, now: DateTime<Utc>) -> Vec<NaiveDate> {
    let last = now.min(period.end - Duration::seconds(1)).date_naive();
    period
        .start
        .date_naive()
        .iter_days()
        .take_while(|d| *d <= last)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{MeterFigure, nearest_limit};

    fn figure(used: i64, limit: Option<i64>) -> MeterFigure {
        MeterFigure { used, limit }
    }

    #[test]
    fn the_meter_nearest_its_limit_is_shown_and_unlimited_ones_only_without_a_limit() {
        let meters = [
            figure(900, None),
            figure(50, Some(100)),
            figure(90, Some(100)),
            figure(90, Some(100)),
        ];
        // The highest ratio; the first of equal ones.
        assert_eq!(nearest_limit(&meters), 2);
        // A zero limit is reached at once.
        assert_eq!(
            nearest_limit(&[figure(0, Some(1000)), figure(0, Some(0))]),
            1
        );
        // Over the limit counts as nearest.
        assert_eq!(
            nearest_limit(&[figure(99, Some(100)), figure(300, Some(200))]),
            1
        );
        // Nothing limited: the first meter (the default one).
        assert_eq!(nearest_limit(&[figure(5, None), figure(900, None)]), 0);
        assert_eq!(nearest_limit(&[]), 0);
    }
}
