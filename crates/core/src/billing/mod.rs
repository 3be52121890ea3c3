//! Pure billing logic: periods, warning levels, overage. No I/O; `now` is always passed in.
#![deny(clippy::arithmetic_side_effects)]

mod level;
mod money;
mod period;
mod projection;
mod stripe_window;
pub mod window;

pub use level::{Allowance, Thresholds, UsageCheck, WarningLevel};
pub use money::{count, money, thousands};
pub(crate) use period::deserialize_ts;
pub use period::{
    Period, PeriodKind, format_ts, parse_ts, parse_unix_seconds, period_containing, periods_before,
    whole_second,
};
pub use projection::{Projection, project};
pub use stripe_window::{STRIPE_MAX_AGE_DAYS, STRIPE_MAX_FUTURE_SECS, stripe_window};
