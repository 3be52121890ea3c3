//! Pure billing logic: periods, warning levels, overage. No I/O; `now` is always passed in.
#![deny(clippy::arithmetic_side_effects)]

mod level;
mod money;
mod period;
mod projection;

pub use level::{Allowance, Thresholds, UsageCheck, WarningLevel};
pub use money::{money, thousands};
pub use period::{Period, PeriodKind, format_ts, period_containing, periods_before};
pub use projection::{Projection, project};
