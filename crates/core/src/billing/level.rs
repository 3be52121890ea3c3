//! Warning levels and the usage check: how much of the allowance is used, what that means.

use rust_decimal::Decimal;
use serde::Serialize;

use super::Period;

/// Ratios at which a customer turns `warning` and `critical`; the hard cap is always 1.0.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Thresholds {
    pub warning: f64,
    pub critical: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            warning: 0.80,
            critical: 0.95,
        }
    }
}

/// How close a customer is to its limit, from the share of included units used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WarningLevel {
    Ok,
    Warning,
    Critical,
    HardCap,
}

impl WarningLevel {
    /// The level of a used/limit `ratio` (`None`: unlimited, always ok) under `thresholds`.
    pub fn of(ratio: Option<f64>, thresholds: &Thresholds) -> WarningLevel {
        match ratio {
            None => WarningLevel::Ok,
            Some(r) if r >= 1.0 => WarningLevel::HardCap,
            Some(r) if r >= thresholds.critical => WarningLevel::Critical,
            Some(r) if r >= thresholds.warning => WarningLevel::Warning,
            Some(_) => WarningLevel::Ok,
        }
    }

    /// The level as JSON and the alerts table spell it (`hard_cap`).
    pub fn as_str(self) -> &'static str {
        match self {
            WarningLevel::Ok => "ok",
            WarningLevel::Warning => "warning",
            WarningLevel::Critical => "critical",
            WarningLevel::HardCap => "hard_cap",
        }
    }

    /// Every level, lowest first.
    pub const ALL: [WarningLevel; 4] = [
        WarningLevel::Ok,
        WarningLevel::Warning,
        WarningLevel::Critical,
        WarningLevel::HardCap,
    ];
}

/// What a plan allows per period, in the terms billing needs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Allowance {
    /// Units included per period; `None` is unlimited.
    pub included: Option<i64>,
    /// True when the limit is a hard cap (records past it are refused).
    pub hard_cap: bool,
    /// Price per unit past the limit, for overage plans.
    pub overage_rate: Option<Decimal>,
}

impl Allowance {
    /// The share of the limit `used` is (`None`: unlimited; a limit of 0 is full).
    fn ratio(&self, used: i64) -> Option<f64> {
        self.included
            .map(|l| if l == 0 { 1.0 } else { used as f64 / l as f64 })
    }

    /// The warning level at `used`: what `UsageCheck::compute` says, without the rest of it.
    pub fn level_at(&self, used: i64, thresholds: &Thresholds) -> WarningLevel {
        WarningLevel::of(self.ratio(used), thresholds)
    }
}

/// A customer's standing in one billing period. This is the `check --json` object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UsageCheck {
    pub customer: String,
    pub plan: String,
    #[serde(serialize_with = "ser_ts")]
    pub period_start: chrono::DateTime<chrono::Utc>,
    #[serde(serialize_with = "ser_ts")]
    pub period_end: chrono::DateTime<chrono::Utc>,
    pub used: i64,
    pub limit: Option<i64>,
    pub remaining: Option<i64>,
    pub ratio: Option<f64>,
    pub level: WarningLevel,
    pub allowed: bool,
    pub overage_units: i64,
    #[serde(with = "rust_decimal::serde::str_option")]
    pub overage_rate: Option<Decimal>,
    #[serde(with = "rust_decimal::serde::str")]
    pub overage_amount: Decimal,
    /// The units past the limit that prepaid credits paid for (not in `overage_units`), and
    /// the money they took from money grants. Only present in JSON when credits paid.
    #[serde(skip_serializing_if = "is_zero")]
    pub credited_units: i64,
    #[serde(
        with = "rust_decimal::serde::str",
        skip_serializing_if = "Decimal::is_zero"
    )]
    pub credited_amount: Decimal,
    /// The customer's plan is no longer in plans.toml: no limit is known, nothing is allowed.
    /// Only present in JSON when true.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub plan_missing: bool,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

fn ser_ts<S: serde::Serializer>(
    at: &chrono::DateTime<chrono::Utc>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_str(&super::format_ts(*at))
}

impl UsageCheck {
    /// True when the overage is not one rate times its units: its units were priced at their
    /// groups' rates (`[[plans.meters.ID.rates]]`) as they were recorded.
    pub fn priced_per_group(&self) -> bool {
        self.overage_rate.is_some_and(|rate| {
            rate.checked_mul(Decimal::from(self.overage_units)) != Some(self.overage_amount)
        })
    }

    /// The share of the limit used, in tenths of a percent rounded down (`None`: unlimited):
    /// exact, from the integers, so 99.96 % is 999 and 1000 means the limit is reached.
    pub fn per_mille(&self) -> Option<i64> {
        let limit = self.limit?;
        if limit <= 0 {
            return Some(1000);
        }
        let tenths = i128::from(self.used.max(0))
            .checked_mul(1000)
            .and_then(|n| n.checked_div(i128::from(limit)))
            .unwrap_or(i128::MAX);
        Some(i64::try_from(tenths).unwrap_or(i64::MAX))
    }

    /// The standing of `used` units in `period` under `allowance` (the `check --json` object).
    pub fn compute(
        customer: &str,
        plan: &str,
        allowance: Allowance,
        period: Period,
        used: i64,
        thresholds: &Thresholds,
    ) -> UsageCheck {
        let limit = allowance.included;
        let ratio = allowance.ratio(used);
        let over = limit.map_or(0, |l| used.saturating_sub(l).max(0));
        let (overage_units, overage_amount) = match allowance.overage_rate {
            // Bounded by plans.toml validation; checked anyway, so no data can make it panic.
            Some(rate) if !allowance.hard_cap => (
                over,
                rate.checked_mul(Decimal::from(over))
                    .unwrap_or(Decimal::MAX),
            ),
            _ => (0, Decimal::ZERO),
        };
        UsageCheck {
            customer: customer.to_string(),
            plan: plan.to_string(),
            period_start: period.start,
            period_end: period.end,
            used,
            limit,
            remaining: limit.map(|l| l.saturating_sub(used).max(0)),
            ratio,
            level: WarningLevel::of(ratio, thresholds),
            allowed: !(allowance.hard_cap && limit.is_some_and(|l| used >= l)),
            overage_units,
            overage_rate: if allowance.hard_cap {
                None
            } else {
                allowance.overage_rate
            },
            overage_amount: overage_amount.normalize(),
            credited_units: 0,
            credited_amount: Decimal::ZERO,
            plan_missing: false,
        }
    }

    /// The standing of a customer whose plan was removed from plans.toml: usage is known,
    /// terms are not, so nothing more may be recorded until the plan is back or changed.
    pub fn plan_missing(customer: &str, plan: &str, period: Period, used: i64) -> UsageCheck {
        let unlimited = Allowance {
            included: None,
            hard_cap: false,
            overage_rate: None,
        };
        UsageCheck {
            allowed: false,
            plan_missing: true,
            ..UsageCheck::compute(
                customer,
                plan,
                unlimited,
                period,
                used,
                &Thresholds::default(),
            )
        }
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use std::str::FromStr;

    fn period() -> Period {
        Period {
            start: Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap(),
            end: Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap(),
        }
    }

    fn check(included: Option<i64>, hard_cap: bool, rate: Option<&str>, used: i64) -> UsageCheck {
        let allowance = Allowance {
            included,
            hard_cap,
            overage_rate: rate.map(|r| Decimal::from_str(r).unwrap()),
        };
        UsageCheck::compute("c", "p", allowance, period(), used, &Thresholds::default())
    }

    #[test]
    fn levels_change_exactly_at_the_thresholds() {
        let t = Thresholds::default();
        assert_eq!(WarningLevel::of(Some(0.7999), &t), WarningLevel::Ok);
        assert_eq!(WarningLevel::of(Some(0.80), &t), WarningLevel::Warning);
        assert_eq!(WarningLevel::of(Some(0.9499), &t), WarningLevel::Warning);
        assert_eq!(WarningLevel::of(Some(0.95), &t), WarningLevel::Critical);
        assert_eq!(WarningLevel::of(Some(1.0), &t), WarningLevel::HardCap);
        assert_eq!(WarningLevel::of(Some(1.34), &t), WarningLevel::HardCap);
        assert_eq!(WarningLevel::of(None, &t), WarningLevel::Ok);
        assert_eq!(
            check(Some(1000), true, None, 800).level,
            WarningLevel::Warning
        );
        assert_eq!(
            check(Some(1000), true, None, 950).level,
            WarningLevel::Critical
        );
    }

    #[test]
    fn hard_cap_blocks_at_the_limit() {
        let c = check(Some(1000), true, None, 999);
        assert!(c.allowed);
        assert_eq!(c.remaining, Some(1));
        let c = check(Some(1000), true, None, 1000);
        assert!(!c.allowed);
        assert_eq!(c.level, WarningLevel::HardCap);
        assert_eq!(c.overage_units, 0);
    }

    #[test]
    fn overage_is_exact() {
        let c = check(Some(100_000), false, Some("0.015"), 134_000);
        assert!(c.allowed);
        assert_eq!(c.overage_units, 34_000);
        assert_eq!(c.overage_amount, Decimal::from_str("510").unwrap());
        assert_eq!(c.ratio, Some(1.34));
        let c = check(Some(10), false, Some("0.1"), 13);
        assert_eq!(c.overage_amount.to_string(), "0.3");
    }

    #[test]
    fn the_share_used_rounds_down_so_the_limit_shows_only_when_reached() {
        assert_eq!(
            check(Some(10_000), true, None, 9_996).per_mille(),
            Some(999)
        );
        assert_eq!(
            check(Some(10_000), true, None, 10_000).per_mille(),
            Some(1000)
        );
        assert_eq!(check(Some(3), false, None, 1).per_mille(), Some(333));
        assert_eq!(check(Some(100), false, None, 134).per_mille(), Some(1340));
        assert_eq!(check(Some(0), false, None, 0).per_mille(), Some(1000));
        assert_eq!(check(None, false, None, 5).per_mille(), None);
    }

    #[test]
    fn unlimited_plans_have_no_ratio() {
        let c = check(None, false, None, 5_000_000);
        assert_eq!((c.limit, c.remaining, c.ratio), (None, None, None));
        assert!(c.allowed);
        assert_eq!(c.level, WarningLevel::Ok);
    }
}
