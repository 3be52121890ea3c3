//! When a customer's current pace reaches its limit: pure maths over a [`UsageCheck`].

use chrono::{DateTime, Duration, Utc};

use super::UsageCheck;

/// When the current pace reaches the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Projection {
    Unlimited,
    AlreadyReached,
    /// No usage yet, or the pace does not reach the limit before the period ends.
    NotThisPeriod,
    On(DateTime<Utc>),
}

/// At the pace of `used` over the elapsed part of the period, when is the limit reached?
pub fn project(check: &UsageCheck, now: DateTime<Utc>) -> Projection {
    let Some(limit) = check.limit else {
        return Projection::Unlimited;
    };
    if check.used >= limit {
        return Projection::AlreadyReached;
    }
    let elapsed = now
        .min(check.period_end)
        .signed_duration_since(check.period_start)
        .num_seconds();
    if check.used <= 0 || elapsed <= 0 {
        return Projection::NotThisPeriod;
    }
    // Integer maths: seconds needed for the whole limit at the observed rate. A slow pace
    // can put that date past anything a calendar holds (10,000,000 included, 1 used in 30
    // days): every step is checked, and a date out of reach is simply not this period.
    let needed = i128::from(limit)
        .saturating_mul(i128::from(elapsed))
        .checked_div(i128::from(check.used))
        .unwrap_or(i128::MAX);
    let at = i64::try_from(needed)
        .ok()
        .and_then(Duration::try_seconds)
        .and_then(|d| check.period_start.checked_add_signed(d));
    match at {
        Some(at) if at < check.period_end => Projection::On(at),
        _ => Projection::NotThisPeriod,
    }
}
