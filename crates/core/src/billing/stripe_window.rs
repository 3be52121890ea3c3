//! Stripe's policy on meter event dates: how old and how far ahead an event may be.

use chrono::{DateTime, Duration, Utc};

/// Stripe accepts meter events from 35 days in the past ...
pub const STRIPE_MAX_AGE_DAYS: i64 = 35;
/// ... to 5 minutes in the future.
pub const STRIPE_MAX_FUTURE_SECS: i64 = 300;

/// The (oldest, newest) occurred_at Stripe accepts at `now`.
// chrono's `DateTime ± Duration` only overflows near year 262,000; `now` is a clock reading.
#[allow(clippy::arithmetic_side_effects)]
pub fn stripe_window(now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    (
        now - Duration::days(STRIPE_MAX_AGE_DAYS),
        now + Duration::seconds(STRIPE_MAX_FUTURE_SECS),
    )
}
