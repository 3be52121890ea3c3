//! Numbers and dates as the dashboard writes them.

use chrono::{DateTime, Utc};

pub use crate::cli::output::thousands;

/// The real percentage, never clamped: 134 % over the limit. Whole percents, rounded down so
/// "100 %" only ever means the limit is reached.
pub fn percent(used: i64, limit: Option<i64>) -> String {
    match limit {
        None => "-".to_string(),
        Some(0) => "100 %".to_string(),
        Some(limit) => format!("{} %", i128::from(used) * 100 / i128::from(limit)),
    }
}

/// "85,000 / 100,000" or "85,000 / ∞".
pub fn used_of(used: i64, limit: Option<i64>) -> String {
    match limit {
        Some(limit) => format!("{} / {}", thousands(used), thousands(limit)),
        None => format!("{} / ∞", thousands(used)),
    }
}

pub fn minute(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

pub fn day(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d").to_string()
}

/// "2026-11-27T18:59:03Z" -> "2026-11-27 18:59" (text from the database, kept if unexpected).
pub fn stored_minute(text: &str) -> String {
    match (text.get(..10), text.get(11..16)) {
        (Some(date), Some(time)) => format!("{date} {time}"),
        _ => super::super::sanitize::sanitize(text).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn percent_is_real_and_rounded_down() {
        assert_eq!(super::percent(134_000, Some(100_000)), "134 %");
        assert_eq!(super::percent(999, Some(1000)), "99 %");
        assert_eq!(super::percent(29, Some(100)), "29 %");
        assert_eq!(super::percent(5, None), "-");
        assert_eq!(super::percent(0, Some(0)), "100 %");
    }
}
