//! The crossings: one alert per customer × period × meter × level, written inside the record and
//! set-plan transactions (the only place that knows the counter before and after), with a
//! delivery row per matching `[[alerts]]` entry; and the highest level alerted, for status.

use std::collections::HashMap;

use crate::db::{Connection, params};
use chrono::{DateTime, Utc};

use crate::Result;
use crate::billing::{Period, UsageCheck, WarningLevel, format_ts};
use crate::config::Config;

/// Inside the caller's transaction: write one alert per level in (`before`, `after.level`]
/// that this customer's period has not had yet, and a delivery row for every `[[alerts]]`
/// entry that wants it. Costs nothing unless the level went up.
#[allow(clippy::too_many_arguments)]
pub(crate) fn record_crossings(
    conn: &Connection,
    config: &Config,
    meter: &str,
    before: WarningLevel,
    after: &UsageCheck,
    period: Period,
    now: DateTime<Utc>,
) -> Result<()> {
    let crossing = Crossing {
        customer: &after.customer,
        plan: &after.plan,
        meter,
        window: None,
        before,
        after: after.level,
        used: after.used,
        limit: after.limit,
        ratio: after.ratio,
        span: period,
    };
    crossing.record(conn, config, now)
}

/// A rise of a customer's level on a meter: over its period, or over one of its window
/// limits (`window`: the limit; `span` is then the window, or for a sliding one the instant
/// of the crossing and when the usage before it has all left).
pub(crate) struct Crossing<'a> {
    pub customer: &'a str,
    pub plan: &'a str,
    pub meter: &'a str,
    pub window: Option<&'a crate::config::Limit>,
    pub before: WarningLevel,
    pub after: WarningLevel,
    pub used: i64,
    pub limit: Option<i64>,
    pub ratio: Option<f64>,
    pub span: Period,
}

impl Crossing<'_> {
    /// Write one alert per level crossed that its period (or window, or crossing instant)
    /// has not had yet, with a delivery row for every `[[alerts]]` entry that wants it.
    pub(crate) fn record(
        &self,
        conn: &Connection,
        config: &Config,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let window = self.window.map(|w| w.name()).unwrap_or_default();
        for level in meterline_core::alerts::levels_crossed(self.before, self.after) {
            let id = meterline_core::alerts::new_id();
            let inserted = conn
                .prepare_cached(
                    "INSERT INTO alerts (id, customer_id, plan_id, period_start, period_end, level,
                         previous_level, used, included, ratio, occurred_at, meter_id, window_limit)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
                     ON CONFLICT (customer_id, period_start, meter_id, level, window_limit)
                     DO NOTHING",
                )?
                .execute(params![
                    id,
                    self.customer,
                    self.plan,
                    format_ts(self.span.start),
                    format_ts(self.span.end),
                    level.as_str(),
                    self.before.as_str(),
                    self.used,
                    self.limit,
                    self.ratio,
                    format_ts(now),
                    self.meter,
                    window
                ])?;
            if inserted == 0 {
                continue; // Already had it: exactly one alert per level.
            }
            let wanted = |rule: &&crate::config::AlertRule| match self.window {
                None => rule.matches(self.plan, level),
                Some(w) => rule.matches_window(self.plan, level, w.window_secs),
            };
            for rule in config.alerts.iter().filter(wanted) {
                conn.prepare_cached(
                    "INSERT INTO alert_deliveries (alert_id, target) VALUES (?1, ?2)
                     ON CONFLICT DO NOTHING",
                )?
                .execute(params![id, rule.target.key()])?;
            }
        }
        Ok(())
    }
}

/// The alerts as recorded; serves `status` (the highest level alerted beside each check).
impl crate::Store {
    /// The highest level alerted in each check's period, in the checks' order: one scan of
    /// the alerts of the periods shown, not one query per customer.
    pub(crate) fn alerted_levels(&self, checks: &[&UsageCheck]) -> Result<Vec<Option<String>>> {
        let Some(since) = checks.iter().map(|c| c.period_start).min() else {
            return Ok(Vec::new());
        };
        let mut highest: HashMap<(String, String), WarningLevel> = HashMap::new();
        let mut stmt = self.conn.prepare_cached(
            // The period's level crossings only: a credit alert has no meter, a window's
            // names its limit.
            "SELECT customer_id, period_start, level FROM alerts
             WHERE period_start >= ?1 AND meter_id IS NOT NULL AND window_limit = ''",
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
        Ok(checks
            .iter()
            .map(|c| {
                highest
                    .get(&(c.customer.clone(), format_ts(c.period_start)))
                    .map(|l| l.as_str().to_string())
            })
            .collect())
    }
}
